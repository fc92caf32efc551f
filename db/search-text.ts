/**
 * What the full-text index sees of a text, the same way in both dialects and in the snippet
 * code: words are runs of letters, digits and combining marks, and every CJK character is a word
 * of its own (Chinese and Japanese put no spaces between words, and unicode61 or Postgres's parser
 * would make a whole sentence one word). A query for 天气 is then the phrase 天 气, found inside
 * 今天天气很好. Case and accents are folded by the engines (FTS5 unicode61 remove_diacritics,
 * Postgres unaccent); the letters that no Unicode decomposition folds (ł, ø, æ, ß…) are mapped
 * here so SQLite folds them as unaccent does.
 */

/** Only the start of a message is indexed: Postgres refuses a tsvector over 1 MB, and a delta re-indexes the whole text. */
export const MAX_INDEXED_CHARS = 100_000;

/**
 * The characters indexed one by one: kana, CJK ideographs (with the extensions and the iteration
 * marks), Hangul syllables (Korean writes particles onto words: 학교 is found in 학교에) and
 * half-width katakana. The Postgres migration spells the same ranges in its regular expression.
 */
export const CJK_RANGES = [
  [0x3005, 0x3007],
  [0x3040, 0x30ff],
  [0x31f0, 0x31ff],
  [0x3400, 0x4dbf],
  [0x4e00, 0x9fff],
  [0xac00, 0xd7af],
  [0xf900, 0xfaff],
  [0xff66, 0xff9f],
  [0x20000, 0x3ffff],
] as const;

const hex = (n: number) => `\\u{${n.toString(16)}}`;
/** The ranges as the inside of a regular expression class (for the `u` and `v` flags). */
export const CJK_CLASS = CJK_RANGES.map(([a, b]) => `${hex(a)}-${hex(b)}`).join('');
const cjkChar = new RegExp(`[${CJK_CLASS}]`, 'gu');
const cjkTest = new RegExp(`[${CJK_CLASS}]`, 'u');

export const isCjk = (word: string): boolean => cjkTest.test(word);

/** Letters Unicode does not decompose but unaccent folds, and the ligatures; fullwidth ASCII is folded too. */
const LETTERS: Record<string, string> = {
  ł: 'l', Ł: 'L', ø: 'o', Ø: 'O', æ: 'ae', Æ: 'AE', œ: 'oe', Œ: 'OE', ß: 'ss', ẞ: 'SS', đ: 'd', Đ: 'D',
  ð: 'd', Ð: 'D', þ: 'th', Þ: 'TH', ħ: 'h', Ħ: 'H', ı: 'i', ŀ: 'l', Ŀ: 'L', ŧ: 't', Ŧ: 'T', ŋ: 'n', Ŋ: 'N',
  ĳ: 'ij', Ĳ: 'IJ', ﬀ: 'ff', ﬁ: 'fi', ﬂ: 'fl', ﬃ: 'ffi', ﬄ: 'ffl', ﬅ: 'st', ﬆ: 'st',
};
const letters = new RegExp(`[${Object.keys(LETTERS).join('')}\\u{ff01}-\\u{ff5e}]`, 'gu');
const foldLetter = (c: string) => LETTERS[c] ?? String.fromCharCode(c.charCodeAt(0) - 0xfee0);

/** Cuts at most `max` UTF-16 units, never between the halves of a surrogate pair. */
export function cutAt(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}

/**
 * The text SQLite's index is given for `text` (registered as chat_proxy_search_text, called by
 * the triggers), and what query words are turned into before FTS5 reads them.
 */
export function searchText(text: string): string {
  const head = cutAt(text, MAX_INDEXED_CHARS);
  return head.replace(letters, foldLetter).replace(cjkChar, ' $& ');
}

/**
 * Combining diacritical marks, which folding drops (the vowel signs of Indic scripts are marks
 * too, but part of their words, and stay).
 */
const DIACRITICS = /[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]/g;

/** Text as the snippet code compares it: letters mapped, accents dropped, lower case. */
export function foldText(text: string): string {
  return text.replace(letters, foldLetter).normalize('NFD').replace(DIACRITICS, '').toLowerCase();
}

/** A word of the index: a CJK character alone, or a run of letters, digits and marks (no CJK). */
export const WORD_SOURCE = `[${CJK_CLASS}]|[[\\p{L}\\p{N}\\p{M}\\p{Co}]--[${CJK_CLASS}]]+`;

/** The words of `text`, as the index splits it. */
export function wordsOf(text: string): string[] {
  return text.match(new RegExp(WORD_SOURCE, 'gv')) ?? [];
}
