/**
 * Token estimates for when the upstream reports no usage. The tokenizer (o200k_base, used by
 * the gpt-4o/4.1 family) costs ~70 MB and ~0.3 s to load, so it is loaded on first use only:
 * with an upstream that reports usage it never is.
 */
type Tokenizer = { countTokens(text: string): number };
let tokenizer: Promise<Tokenizer> | undefined;

const load = () => (tokenizer ??= import('gpt-tokenizer/encoding/o200k_base') as Promise<Tokenizer>);

/** Tokens in a piece of generated text. */
export async function estimateTokens(text: string): Promise<number> {
  return text ? (await load()).countTokens(text) : 0;
}

// The chat format adds a few tokens per message (role and separators) and a reply primer.
const PER_MESSAGE = 3;
const REPLY_PRIMER = 3;

/** Tokens of a chat request's messages, the way chat models count their prompt. */
export async function estimatePromptTokens(messages: { role: string; content?: unknown; name?: unknown }[]): Promise<number> {
  const { countTokens } = await load();
  let total = REPLY_PRIMER;
  for (const m of messages) {
    total += PER_MESSAGE + countTokens(m.role);
    if (typeof m.content === 'string') total += countTokens(m.content);
    else if (Array.isArray(m.content)) {
      for (const part of m.content) if (typeof part?.text === 'string') total += countTokens(part.text);
    }
    if (typeof m.name === 'string') total += countTokens(m.name) + 1;
  }
  return total;
}
