import { WORD_SOURCE, foldText } from '../../db/search-text.js';
import type { SearchQuery } from '../../db/store.js';

/**
 * Snippets for search hits, computed from the stored text rather than by the engines (FTS5's
 * snippet() needs the text in the index; ts_headline returns markup and re-parses the whole
 * document): plain text of at most SNIPPET_MAX_CHARS UTF-16 units around the best match, with
 * the matched words as [start, end) ranges into it, so a UI highlights without ever injecting
 * markup.
 *
 * Matching mirrors the index: the text is split into words as the index splits it (wordsOf),
 * and a query word matches a word that folds to the same (case, accents, the letters of
 * db/search-text.ts), a prefix any word that starts with it, a phrase consecutive words. Splitting
 * costs JavaScript time per word, so it is done only in the windows of the text whose folded
 * form contains a term's first word (a native check), at most MAX_WINDOWS of them: a hit in a
 * long answer costs about as much as a short one.
 */

export const SNIPPET_MAX_CHARS = 200;
const ELLIPSIS = '…';
/** Matches looked at to choose the snippet: enough to find where the query's words meet. */
const MAX_MATCHES = 100;
/**
 * Characters the native check looks at at once; how many windows may be split into words while
 * looking for a first match (a word can be a substring of many words before it is one), and once
 * one is found, how many more (a cluster of the query's words may run on past its window).
 */
const WINDOW = 500;
const MAX_WINDOWS = 8;
const WINDOWS_AFTER_MATCH = 1;
/** Past its window's end, the longest word the check must see whole, and how far a phrase may run. */
const OVERLAP = 64;
const PHRASE_TAIL = 300;
/** How far a cut moves to land between words rather than inside one. */
const WORD_SNAP = 20;

const WORDS = new RegExp(WORD_SOURCE, 'gv');
const WORD_CHAR = /[\p{L}\p{N}\p{M}\p{Co}]/u;
const ASCII = /^[\x00-\x7f]*$/;
const fold = (word: string) => (ASCII.test(word) ? word.toLowerCase() : foldText(word));

export interface Snippet {
  snippet: string;
  highlights: [number, number][];
}

interface Match {
  start: number;
  end: number;
  term: number;
}

interface Term {
  words: string[];
  prefix: boolean;
}

/** Builds the snippets of one query's hits. */
export function snippetMaker(query: SearchQuery): (text: string) => Snippet {
  const terms: Term[] = query.terms.map((t) => ({ words: t.words.map(foldText), prefix: t.prefix }));
  return (text) => cut(text, terms.length ? findMatches(text, terms) : []);
}

function findMatches(text: string, terms: Term[]): Match[] {
  const matches: Match[] = [];
  let windows = 0;
  let afterMatch = -1;
  for (let from = 0; from < text.length && windows < MAX_WINDOWS && afterMatch < WINDOWS_AFTER_MATCH; from += WINDOW) {
    if (matches.length) afterMatch++;
    const to = Math.min(text.length, from + WINDOW);
    const probe = foldText(text.slice(from, to + OVERLAP));
    if (!terms.some((t) => probe.includes(t.words[0]!))) continue;
    windows++;
    // Split from the start of the word the window begins in, and far enough for a phrase to end.
    let start = from;
    while (start > 0 && from - start < OVERLAP && WORD_CHAR.test(text[start - 1]!)) start--;
    const words: { start: number; end: number; raw: string; folded?: string }[] = [];
    WORDS.lastIndex = start;
    for (let m = WORDS.exec(text); m && m.index < to + PHRASE_TAIL; m = WORDS.exec(text)) words.push({ start: m.index, end: m.index + m[0].length, raw: m[0] });
    const folded = (i: number) => (words[i]!.folded ??= fold(words[i]!.raw));
    for (let i = 0; i < words.length && words[i]!.start < to; i++) {
      if (words[i]!.start < from) continue;
      terms.forEach((term, t) => {
        const n = term.words.length;
        if (i + n > words.length) return;
        for (let k = 0; k < n; k++) {
          const word = folded(i + k);
          const ok = term.prefix && k === n - 1 ? word.startsWith(term.words[k]!) : word === term.words[k];
          if (!ok) return;
        }
        matches.push({ start: words[i]!.start, end: words[i + n - 1]!.end, term: t });
      });
    }
  }
  // Terms may match overlapping words ("new" and "new york"): keep the first and longest.
  matches.sort((a, b) => a.start - b.start || b.end - a.end);
  return matches.filter((m, i) => i === 0 || m.start >= matches[i - 1]!.end).slice(0, MAX_MATCHES);
}

/** The window with the most different terms (then the most matches), earliest first. */
function bestCluster(matches: Match[], room: number): { start: number; end: number; matches: Match[] } | null {
  let best: { score: number; from: number; to: number } | null = null;
  for (let from = 0, to = 0; from < matches.length; from++) {
    to = Math.max(to, from + 1);
    while (to < matches.length && matches[to]!.end - matches[from]!.start <= room) to++;
    const inside = matches.slice(from, to);
    const score = new Set(inside.map((m) => m.term)).size * 1000 + inside.length;
    if (!best || score > best.score) best = { score, from, to };
  }
  if (!best) return null;
  const inside = matches.slice(best.from, best.to);
  return { start: inside[0]!.start, end: inside.at(-1)!.end, matches: inside };
}

/**
 * Whether a cut at `i` would split what reads as one character: the halves of a surrogate pair,
 * a letter and its marks, a variation selector or a zero-width joiner and what it joins.
 */
const inside = (text: string, i: number) =>
  /^[\udc00-\udfff\p{M}\u200c\u200d\ufe00-\ufe0f]/u.test(text[i] ?? '') || text[i - 1] === '\u200d';

function cut(text: string, matches: Match[]): Snippet {
  const room = SNIPPET_MAX_CHARS - 2 * ELLIPSIS.length;
  const cluster = bestCluster(matches, room);
  let start: number;
  let end: number;
  if (!cluster) {
    start = 0;
    end = Math.min(text.length, room);
  } else {
    const spare = Math.max(0, room - (cluster.end - cluster.start));
    // Some words before the match, more after it: a snippet reads forwards.
    start = Math.max(0, cluster.start - Math.floor(spare / 3));
    end = Math.min(text.length, start + room);
    start = Math.max(0, Math.min(start, end - room));
    const keepFrom = Math.min(cluster.start, start + room);
    const keepTo = Math.min(cluster.end, end);
    if (start > 0) {
      const space = text.slice(start, Math.min(keepFrom, start + WORD_SNAP)).search(/\s/);
      if (space !== -1) start += space + 1;
    }
    if (end < text.length) {
      const tail = text.slice(Math.max(keepTo, end - WORD_SNAP), end);
      const space = tail.search(/\s\S*$/);
      if (space !== -1) end = Math.max(keepTo, end - tail.length + space);
    }
  }
  // Never split a surrogate pair, nor a character from its marks.
  while (start > 0 && start < end && inside(text, start)) start++;
  while (end < text.length && end > start && inside(text, end)) end--;

  // Runs of white space (line breaks of a long answer) read as one space in a one-line snippet.
  let out = start > 0 ? ELLIPSIS : '';
  const at = new Int32Array(end - start + 1);
  let pendingSpace = false;
  for (let i = start; i < end; i++) {
    at[i - start] = out.length + (pendingSpace ? 1 : 0);
    const c = text[i]!;
    if (/\s/.test(c)) {
      pendingSpace = out.length > (start > 0 ? ELLIPSIS.length : 0);
      continue;
    }
    if (pendingSpace) out += ' ';
    pendingSpace = false;
    out += c;
  }
  at[end - start] = out.length;
  if (end < text.length) out += ELLIPSIS;

  const highlights: [number, number][] = [];
  for (const m of cluster?.matches ?? []) {
    const s = Math.max(m.start, start);
    const e = Math.min(m.end, end);
    if (e > s) highlights.push([at[s - start]!, at[e - start]!]);
  }
  return { snippet: out, highlights };
}
