/**
 * Token estimates for when the upstream reports no usage. The tokenizer (o200k_base, used by
 * the gpt-4o/4.1 family) costs ~70 MB and ~0.3 s to load, so it is loaded on first use only:
 * with an upstream that reports usage it never is.
 *
 * The work is bounded, because it runs on the event loop every request shares. Byte-pair
 * encoding costs grow with the square of a pre-tokenized run's length (one prompt of 256 Ki "a"s
 * held the process for 70 s; long runs of spaces, newlines, punctuation, CJK or emoji do the
 * same), so:
 * - text reaches the tokenizer in pieces of at most PIECE_CHARS, cut before a word's leading
 *   space where there is one, so ordinary text counts as it would whole;
 * - at most `maxChars` characters are counted per estimate: beyond that, samples spread evenly
 *   over the text are counted and the rest extrapolated from their tokens per character;
 * - the counting yields to the event loop after every SLICE_MS of work.
 */
type Tokenizer = {
  countTokens(text: string, options?: { disallowedSpecial?: Set<string> }): number;
  setMergeCacheSize(size: number): void;
};
let tokenizer: Promise<Tokenizer> | undefined;

const load = () =>
  (tokenizer ??= (import('gpt-tokenizer/encoding/o200k_base') as Promise<Tokenizer>).then(async (t) => {
    // Its cache of encoded pieces defaults to 100 000 entries: up to ~50 MB once pieces are
    // 128 characters of varied text. Ten thousand still holds every common multi-token word.
    t.setMergeCacheSize(MERGE_CACHE_ENTRIES);
    // Until the JIT has compiled it, the tokenizer is ~20x slower (10 ms for one piece of CJK):
    // pay for that once, here, in slices, rather than in the first request that needs it.
    const text = warmUpText();
    await countPieces(t, text, 0, text.length, new Slice());
    return t;
  }));

/** Varied text in the scripts the JIT has to see: ASCII words, CJK, emoji, accents, newlines. */
function warmUpText(): string {
  let text = '';
  for (let i = 0; i < 200; i++) {
    text += ` Warm up, word${i}: `;
    for (let j = 0; j < 32; j++) text += String.fromCodePoint(0x4e00 + (((i * 32 + j) * 37) % 20_000));
    for (let j = 0; j < 16; j++) text += String.fromCodePoint(0x1f300 + (((i * 16 + j) * 13) % 700));
    text += ' naïve café\n';
  }
  return text;
}

/** Longest piece given to the tokenizer at once: ~0.5 ms at worst (random CJK), far less for prose. */
const PIECE_CHARS = 128;
const MERGE_CACHE_ENTRIES = 10_000;
/**
 * Width of one sample when a text is longer than an estimate may count: many small samples
 * follow a text's changes (prose, tables, code, CJK) better than a few large ones.
 */
const SAMPLE_CHARS = 256;
const GOLDEN_RATIO = 0.618_033_988_749_895;
/** Event-loop time the counting may take before it lets other work run. */
const SLICE_MS = 2;
// Text that looks like a special token ("<|endoftext|>") is counted as the text it is; by
// default the tokenizer throws on it, which would leave a user's counts unknown.
const AS_TEXT = { disallowedSpecial: new Set<string>() };

export interface EstimateOptions {
  /** At most this many characters are counted per estimate; the rest is extrapolated. */
  maxChars: number;
}

/** Tokens in a piece of generated text. */
export async function estimateTokens(text: string, options: EstimateOptions): Promise<number> {
  return text ? countTexts([text], options.maxChars) : 0;
}

// The chat format adds a few tokens per message (role and separators) and a reply primer.
const PER_MESSAGE = 3;
const REPLY_PRIMER = 3;
const roleTokens = new Map<string, number>();

/** Tokens of a chat request's messages, the way chat models count their prompt. */
export async function estimatePromptTokens(
  messages: { role: string; content?: unknown; name?: unknown }[],
  options: EstimateOptions,
): Promise<number> {
  const { countTokens } = await load();
  let total = REPLY_PRIMER;
  const texts: string[] = [];
  for (const m of messages) {
    // Roles are a handful of known words: counted once each, not once per message.
    let role = roleTokens.get(m.role);
    if (role === undefined) {
      role = countTokens(m.role.slice(0, PIECE_CHARS), AS_TEXT);
      if (roleTokens.size < 16) roleTokens.set(m.role, role);
    }
    total += PER_MESSAGE + role;
    if (typeof m.content === 'string') texts.push(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content) if (typeof part?.text === 'string') texts.push(part.text);
    }
    if (typeof m.name === 'string') {
      texts.push(m.name);
      total += 1;
    }
  }
  return total + (await countTexts(texts, options.maxChars));
}

/** Tokens in these texts together: exact up to `maxChars` characters, sampled beyond. */
async function countTexts(texts: string[], maxChars: number): Promise<number> {
  const tokenizer = await load();
  const slice = new Slice();
  const count = (text: string, start: number, end: number) => countPieces(tokenizer, text, start, end, slice);

  const total = texts.reduce((n, t) => n + t.length, 0);
  if (total <= maxChars) {
    let tokens = 0;
    for (const text of texts) tokens += await count(text, 0, text.length);
    return tokens;
  }
  // One sample in each of `samples` equal strata of all the texts as one, so a prompt that
  // mixes prose, code and other scripts is counted in proportion. Where in its stratum follows
  // a fixed low-discrepancy sequence: an estimate is repeatable, and text that repeats with the
  // strata's period is still seen at different points.
  const samples = Math.max(1, Math.floor(maxChars / SAMPLE_CHARS));
  const width = Math.floor(maxChars / samples);
  const stratum = total / samples;
  let sampledChars = 0;
  let sampledTokens = 0;
  let index = 0;
  let offset = 0; // where texts[index] starts in the whole
  for (let s = 0; s < samples; s++) {
    const from = Math.floor(s * stratum + ((s * GOLDEN_RATIO) % 1) * (stratum - width));
    while (offset + texts[index]!.length <= from) offset += texts[index++]!.length;
    const text = texts[index]!;
    const start = from - offset;
    const end = Math.min(text.length, start + width);
    sampledTokens += await count(text, start, end);
    sampledChars += end - start;
  }
  return Math.round((sampledTokens * total) / sampledChars);
}

/** Tokens in `text` from `start` to `end`, counted piece by piece, yielding when the slice is used. */
async function countPieces(tokenizer: Tokenizer, text: string, start: number, end: number, slice: Slice): Promise<number> {
  let tokens = 0;
  for (let at = start; at < end; ) {
    const cut = pieceEnd(text, at, end);
    tokens += tokenizer.countTokens(text.slice(at, cut), AS_TEXT);
    at = cut;
    if (slice.over()) await slice.yield();
  }
  return tokens;
}

/**
 * Where the piece of `text` that starts at `start` ends (at most PIECE_CHARS on, never past
 * `end`): before the last space that begins a word, so " word" stays whole as the tokenizer
 * would split it; in one long run without such a space, at PIECE_CHARS, outside a surrogate pair.
 */
function pieceEnd(text: string, start: number, end: number): number {
  const limit = start + PIECE_CHARS;
  if (limit >= end) return end;
  for (let i = limit; i > start; i--) {
    if (text.charCodeAt(i) === 0x20 && !isSpace(text.charCodeAt(i + 1))) return i;
  }
  const code = text.charCodeAt(limit);
  return code >= 0xdc00 && code <= 0xdfff ? limit - 1 : limit;
}

function isSpace(code: number): boolean {
  return code === 0x20 || (code >= 0x09 && code <= 0x0d) || code === 0xa0 || (code > 0x7f && /\s/.test(String.fromCharCode(code)));
}

/** Tracks the event-loop time used since counting last let other work run. */
class Slice {
  private started = performance.now();

  over(): boolean {
    return performance.now() - this.started >= SLICE_MS;
  }

  async yield(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.started = performance.now();
  }
}
