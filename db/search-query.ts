import { sql, type SQL } from 'drizzle-orm';
import { cleanText } from './shared.js';
import { isCjk, searchText, wordsOf } from './search-text.js';
import type { SearchQuery, SearchTerm } from './store.js';

/**
 * What a user types into the search box, turned into what each engine is given. The grammar is
 * small on purpose: words (all must appear), "quoted phrases" (the words in that order) and
 * prefix* (words that start so). Everything else is text: operators (OR, NOT, NEAR, -, :, ^,
 * parentheses) are searched as the words they contain, punctuation separates words, and nothing a
 * user types ever reaches FTS5 or tsquery syntax unquoted (every word is quoted here for FTS5, and
 * passed to Postgres as a bound value that its own parser splits).
 */

/** Most words one query may hold, phrases included: each costs the engine one posting list. */
export const MAX_QUERY_WORDS = 32;
/** A prefix matches every word that starts with it: one letter would match most of the index. */
export const MIN_PREFIX_CHARS = 2;
/**
 * Most matches a search ranks: the caller's newest ones. Ranking costs the engine per match
 * (bm25 or ts_rank reads each match's positions), so a word found in most of a large history
 * would otherwise cost in proportion to that history. Queries with fewer matches, which is what
 * finding an old answer usually takes, rank them all.
 */
export const MAX_RANKED_MATCHES = 2000;

export class SearchQueryError extends Error {
  override name = 'SearchQueryError';
}

/**
 * Parses `input` (at most a few hundred characters, checked by the caller). Returns a query with
 * no terms when the input holds no word at all (only punctuation or emoji): it finds nothing.
 * Throws SearchQueryError when it holds more than MAX_QUERY_WORDS words.
 */
export function parseSearchQuery(input: string): SearchQuery {
  const text = cleanText(input);
  const terms: SearchTerm[] = [];
  const seen = new Set<string>();
  let words = 0;
  const add = (chunk: string, prefix: boolean) => {
    const found = wordsOf(chunk);
    if (!found.length) return;
    const last = found.at(-1)!;
    // A CJK character is a whole word, and a one-letter prefix would match nearly everything.
    const term = { words: found, prefix: prefix && !isCjk(last) && [...last].length >= MIN_PREFIX_CHARS };
    const key = JSON.stringify(term);
    if (seen.has(key)) return;
    seen.add(key);
    words += found.length;
    terms.push(term);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"') {
      // A phrase runs to the next quote, or to the end when it is never closed.
      const close = text.indexOf('"', i + 1);
      const end = close === -1 ? text.length : close;
      const prefix = close !== -1 && text[close + 1] === '*';
      add(text.slice(i + 1, end), prefix);
      i = end + 1 + (prefix ? 1 : 0);
    } else {
      let end = i;
      while (end < text.length && !/\s/.test(text[end]!) && text[end] !== '"') end++;
      const chunk = text.slice(i, end);
      add(chunk, /\p{L}|\p{N}/u.test(chunk) && chunk.endsWith('*'));
      i = end;
    }
  }
  if (words > MAX_QUERY_WORDS) throw new SearchQueryError(`holds ${words} words; a search takes at most ${MAX_QUERY_WORDS}`);
  return { terms };
}

/** FTS5's string syntax: every word quoted ("" inside), a phrase's words joined by +. */
const fts5String = (word: string) => `"${searchText(word).replaceAll('"', '""')}"`;

/** The FTS5 MATCH expression of a query with at least one term: each term a phrase, all required. */
export function fts5Match(query: SearchQuery): string {
  return query.terms.map((t) => t.words.map(fts5String).join(' + ') + (t.prefix ? ' *' : '')).join(' AND ');
}

/**
 * The tsquery of a query with at least one term, built by Postgres from bound values: each
 * term's words go through chat_proxy_search_text (unaccent, CJK characters apart, punctuation
 * to spaces) and phraseto_tsquery, as a document's text goes through the same function and
 * parser, so both sides split and fold alike. A prefix term gets :* on its last word by editing
 * the tsquery's own text form (which quotes its lexemes), never by parsing user text as tsquery
 * syntax. A term that yields no word at all is an empty tsquery, which && ignores.
 */
export function pgTsquery(query: SearchQuery): SQL {
  const parts = query.terms.map((t) => {
    const phrase = sql`phraseto_tsquery('simple', chat_proxy_search_text(${t.words.join(' ')}::text))`;
    return t.prefix ? sql`(case when numnode(${phrase}) = 0 then ${phrase} else (${phrase}::text || ':*')::tsquery end)` : phrase;
  });
  return sql`(${sql.join(parts, sql` && `)})`;
}
