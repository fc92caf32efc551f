import Database from 'better-sqlite3';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { SNIPPET_MAX_CHARS, snippetMaker } from '../app/search/snippet.js';
import { MAX_QUERY_WORDS, SearchQueryError, fts5Match, parseSearchQuery } from '../db/search-query.js';
import { foldText, searchText, wordsOf } from '../db/search-text.js';
import { registerSearchFunctions } from '../db/sqlite/search-index.js';
import { anyChar, anyText, SPECIAL_STRINGS } from './helpers/fuzz-inputs.js';

// The engines themselves are exercised through HTTP on both dialects in search.test.ts; these
// are the pure parts, fuzzed harder than a database round trip allows.

const wellFormed = (s: string) => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** FTS5 as the store sets it up, with the function its triggers call. */
function fts5() {
  const db = new Database(':memory:');
  registerSearchFunctions(db);
  db.exec(`create virtual table search_index using fts5(body, content='', contentless_delete=1, tokenize="unicode61 remove_diacritics 2 categories 'L* N* Co M*'")`);
  return db;
}

describe('parseSearchQuery', () => {
  it('reads words, quoted phrases and prefixes', () => {
    expect(parseSearchQuery('  Hello   "big world"  pre*  "open phrase')).toEqual({
      terms: [
        { words: ['Hello'], prefix: false },
        { words: ['big', 'world'], prefix: false },
        { words: ['pre'], prefix: true },
        { words: ['open', 'phrase'], prefix: false },
      ],
    });
    expect(parseSearchQuery('"new yo"* e-mail')).toEqual({
      terms: [
        { words: ['new', 'yo'], prefix: true },
        { words: ['e', 'mail'], prefix: false },
      ],
    });
  });

  it('makes every CJK character a word of its own, never a prefix', () => {
    expect(parseSearchQuery('今天天气* 用Python')).toEqual({
      terms: [
        { words: ['今', '天', '天', '气'], prefix: false },
        { words: ['用', 'Python'], prefix: false },
      ],
    });
  });

  it('drops what holds no word, repeats, and prefixes of one letter', () => {
    expect(parseSearchQuery('!!! 🎉 "" * a* foo foo')).toEqual({
      terms: [
        { words: ['a'], prefix: false },
        { words: ['foo'], prefix: false },
      ],
    });
    expect(parseSearchQuery('"?!" (…)')).toEqual({ terms: [] });
  });

  it('takes NUL and lone surrogates as the replacement character the stores write', () => {
    expect(parseSearchQuery('a\u0000b \ud800x')).toEqual({ terms: [{ words: ['a', 'b'], prefix: false }, { words: ['x'], prefix: false }] });
  });

  it(`refuses more than ${MAX_QUERY_WORDS} words`, () => {
    expect(() => parseSearchQuery(Array.from({ length: MAX_QUERY_WORDS + 1 }, (_, i) => `w${i}`).join(' '))).toThrow(SearchQueryError);
    expect(() => parseSearchQuery('天'.repeat(MAX_QUERY_WORDS + 1))).toThrow(SearchQueryError);
    expect(parseSearchQuery(Array.from({ length: MAX_QUERY_WORDS }, (_, i) => `w${i}`).join(' ')).terms).toHaveLength(MAX_QUERY_WORDS);
  });

  it('never throws anything else, and what it gives FTS5 always parses', () => {
    const db = fts5();
    db.prepare('insert into search_index(rowid, body) values (1, chat_proxy_search_text(?))').run('some text to match against, "quoted" and * starred');
    const match = db.prepare('select rowid from search_index where search_index match ?');
    const operators = fc.constantFrom(...SPECIAL_STRINGS, '"', '*', 'OR', 'AND', 'NOT', 'NEAR(', ')', '^', ':', '+', '-', "'", '\\', '{', '}', 'body:', '"*', '*"');
    const input = fc.oneof(anyText, fc.array(fc.oneof(operators, fc.string({ unit: anyChar, maxLength: 6 })), { maxLength: 12 }).map((p) => p.join(' ')));
    fc.assert(
      fc.property(input, (text) => {
        let query;
        try {
          query = parseSearchQuery(text);
        } catch (err) {
          expect(err).toBeInstanceOf(SearchQueryError);
          return;
        }
        for (const term of query.terms) {
          expect(term.words.length).toBeGreaterThan(0);
          for (const word of term.words) expect(wordsOf(word)).toEqual([word]);
        }
        if (query.terms.length) expect(() => match.all(fts5Match(query))).not.toThrow();
      }),
      { numRuns: 2000 },
    );
  });
});

describe('the SQLite index text', () => {
  it('folds the letters unaccent folds and spaces CJK characters apart', () => {
    expect(searchText('Łódź straße 用Python写')).toBe('Lódź strasse  用 Python 写 ');
    expect(foldText('ŁÓDŹ Straße NAÏVE ＡＢＣ')).toBe('lodz strasse naive abc');
  });

  it('never cuts a surrogate pair when it keeps the first 100 000 characters', () => {
    const text = `${'a'.repeat(99_999)}😀tail`;
    expect(wellFormed(searchText(text))).toBe(true);
    expect(searchText(text).endsWith('a')).toBe(true);
  });
});

describe('snippets', () => {
  const make = (q: string, text: string) => snippetMaker(parseSearchQuery(q))(text);
  const marked = ({ snippet, highlights }: { snippet: string; highlights: [number, number][] }) => highlights.map(([a, b]) => snippet.slice(a, b));

  it('highlights whole words, phrases and prefixes as the index matches them', () => {
    expect(marked(make('cat', 'A cat, a Cat, concatenate, CAT.'))).toEqual(['cat', 'Cat', 'CAT']);
    expect(marked(make('cat*', 'A cat, catalogue, concatenate'))).toEqual(['cat', 'catalogue']);
    expect(marked(make('"new york"', 'New  York, new\nyork, new jersey'))).toEqual(['New York', 'new york']);
    expect(marked(make('strasse lodz', 'Straße in Łódź'))).toEqual(['Straße', 'Łódź']);
    expect(marked(make('天气', '今天天气很好'))).toEqual(['天气']);
    expect(marked(make('python', '我用Python写'))).toEqual(['Python']);
  });

  it('collapses white space, marks cuts with an ellipsis and keeps the match inside', () => {
    const text = `${'lorem '.repeat(100)}\n\n  the\tmatch  here\n${'ipsum '.repeat(100)}`;
    const s = make('match', text);
    expect(s.snippet.length).toBeLessThanOrEqual(SNIPPET_MAX_CHARS);
    expect(s.snippet).toMatch(/^….*lorem the match here ipsum.*…$/);
    expect(marked(s)).toEqual(['match']);
  });

  it('prefers the window where most of the query meets', () => {
    const text = `alpha ${'x '.repeat(200)} alpha beta gamma ${'y '.repeat(200)}`;
    const s = make('alpha beta gamma', text);
    expect(marked(s)).toEqual(['alpha', 'beta', 'gamma']);
  });

  it('never cuts between the halves of a surrogate pair, nor a character from its marks', () => {
    for (let pad = 0; pad < 4; pad++) {
      for (const run of ['😀', '👩‍👩‍👧', 'e\u0301', '🇫🇷']) {
        const text = `${'a'.repeat(pad)}${run.repeat(120)} needle ${run.repeat(120)}`;
        const { snippet } = make('needle', text);
        expect(wellFormed(snippet), `${pad} ${run}`).toBe(true);
        expect(/^…?\u0301/.test(snippet), `${pad} ${run}`).toBe(false);
        expect(/^…?\u200d|\u200d…?$/.test(snippet), `${pad} ${run}`).toBe(false);
      }
    }
  });

  it('begins at the start, unmarked, when the match is not found in the text', () => {
    expect(make('absent', 'Some text without it')).toEqual({ snippet: 'Some text without it', highlights: [] });
  });

  it('is plain, well-formed text of at most 200 characters whose ranges hold matches, for any text and query', () => {
    const word = fc.constantFrom('cat', 'café', '天', '天气', 'naïve', 'Łódź', 'x', '😀', 'e\u0301');
    const text = fc.array(fc.oneof(word, fc.string({ unit: anyChar, maxLength: 8 }), fc.constantFrom(' ', '\n', '\t', '  ')), { maxLength: 400 }).map((p) => p.join(''));
    const query = fc.array(fc.oneof(word, fc.string({ unit: anyChar, maxLength: 4 })), { minLength: 1, maxLength: 4 }).map((p) => p.join(' '));
    fc.assert(
      fc.property(text, query, (t, q) => {
        let parsed;
        try {
          parsed = parseSearchQuery(q);
        } catch {
          return;
        }
        const clean = (t as unknown as { toWellFormed(): string }).toWellFormed();
        const s = snippetMaker(parsed)(clean);
        expect(s.snippet.length).toBeLessThanOrEqual(SNIPPET_MAX_CHARS);
        expect(wellFormed(s.snippet)).toBe(true);
        let previous = 0;
        const folded = parsed.terms.flatMap((term) => term.words.map(foldText));
        for (const [a, b] of s.highlights) {
          expect(a).toBeGreaterThanOrEqual(previous);
          expect(b).toBeGreaterThan(a);
          expect(b).toBeLessThanOrEqual(s.snippet.length);
          previous = b;
          const inside = wordsOf(s.snippet.slice(a, b)).map(foldText);
          expect(inside.some((w) => folded.some((f) => w.startsWith(f) || f.startsWith(w)))).toBe(true);
        }
      }),
      { numRuns: 1500 },
    );
  });
});
