import { errorBody } from '../errors.js';

// What an upstream error may say to our client and our logs. Providers echo keys back (a wrong
// key, a proxy quoting the request's headers), so anything key-shaped is masked first.

const KEY_PATTERNS: [RegExp, string][] = [
  // OpenAI and compatible (sk-…, sk-proj-…, sk-ant-…), including their own partly starred form.
  [/\bsk-[A-Za-z0-9_*-]{6,}/g, 'sk-***'],
  // Groq, xAI, Hugging Face, Perplexity, NVIDIA, Replicate-style prefixes.
  [/\b(gsk|xai|hf|pplx|nvapi|r8)[_-][A-Za-z0-9_*-]{12,}/g, '$1-***'],
  // Google API keys.
  [/\bAIza[0-9A-Za-z_-]{20,}/g, 'AIza***'],
  // Bearer tokens (before JWTs, so `Bearer eyJ…` loses the whole token), then bare JWTs.
  [/\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=*-]{8,}/gi, '$1$2***'],
  [/\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*/g, 'eyJ***'],
  // key=…, "api_key": "…" in query strings, forms and JSON.
  [/\b(api[_-]?key|access[_-]?token|token|key|secret|password)("?\s*[=:]\s*"?)[^\s"&,;}]{4,}/gi, '$1$2***'],
];

/** Replaces anything key-shaped (and the server's own key, whatever its shape) by a masked form. */
export function maskSecrets(text: string, knownSecrets: readonly (string | undefined)[] = []): string {
  let out = text;
  for (const secret of knownSecrets) if (secret && secret.length >= 8) out = out.split(secret).join('***');
  for (const [pattern, replacement] of KEY_PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

// C0 and C1 controls, and the bidirectional overrides that can make a log line read differently.
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]+/g;
/** Longest excerpt of a body that is not OpenAI's error JSON, quoted to the client and logged. */
export const EXCERPT_CHARS = 200;
// Only this much of a body is looked at: the excerpt is short, the regexes stay cheap.
const SCAN_CHARS = 4096;

/** A short, one-line, masked excerpt of an upstream body: control characters out, keys masked. */
export function errorExcerpt(text: string, knownSecrets: readonly (string | undefined)[] = []): string {
  // Masked before it is cut, so a key straddling the cut cannot leave half of itself behind.
  const cleaned = maskSecrets(text.slice(0, SCAN_CHARS).replace(CONTROL, ' '), knownSecrets).replace(/\s+/g, ' ').trim();
  const chars = Array.from(cleaned);
  return chars.length <= EXCERPT_CHARS ? cleaned : `${chars.slice(0, EXCERPT_CHARS - 1).join('')}…`;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
const MAX_JSON_DEPTH = 32;

/** A copy with every string masked, or the same value when nothing needed masking; throws past MAX_JSON_DEPTH. */
function maskJson(value: Json, secrets: readonly (string | undefined)[], depth = 0): Json {
  if (depth > MAX_JSON_DEPTH) throw new RangeError('too deep');
  if (typeof value === 'string') return maskSecrets(value, secrets);
  if (value === null || typeof value !== 'object') return value;
  let changed = false;
  const out: Json = Array.isArray(value) ? [] : {};
  for (const [k, v] of Object.entries(value)) {
    const masked = maskJson(v, secrets, depth + 1);
    if (masked !== v) changed = true;
    (out as Record<string, Json>)[k] = masked;
  }
  return changed ? out : value;
}

export interface UpstreamErrorAnswer {
  /** The JSON body for the client, in OpenAI's error shape. */
  body: string;
  /** The cleaned message, for the log line. */
  excerpt: string;
}

/**
 * What the client sees of an upstream error: OpenAI's error JSON kept as it came (keys masked),
 * anything else wrapped in that shape around a short cleaned excerpt. A 404 that is not about a
 * model usually means OPENAI_BASE_URL lacks its /v1, and says so.
 */
export function upstreamErrorAnswer(
  status: number,
  text: string,
  { endpoint, secrets }: { endpoint: string; secrets: readonly (string | undefined)[] },
): UpstreamErrorAnswer {
  const hint = ` (the upstream answered 404 for ${new URL(endpoint).pathname}; OPENAI_BASE_URL usually ends in /v1)`;
  let parsed: Json | undefined;
  try {
    parsed = JSON.parse(text) as Json;
  } catch {
    // not JSON
  }
  const isErrorJson = (v: Json | undefined): v is { error: { [key: string]: Json } } =>
    typeof v === 'object' && v !== null && !Array.isArray(v) && typeof v.error === 'object' && v.error !== null && !Array.isArray(v.error);
  if (isErrorJson(parsed)) {
    let masked: Json | undefined;
    try {
      masked = maskJson(parsed, secrets);
    } catch {
      // nested beyond reason: quoted as an excerpt below
    }
    if (isErrorJson(masked)) {
      const message = typeof masked.error.message === 'string' ? masked.error.message : '';
      const aboutModel = /model/i.test(`${message} ${String(masked.error.code)}`);
      if (status === 404 && !aboutModel) {
        masked = { ...masked, error: { ...masked.error, message: `${message}${hint}` } };
      }
      return { body: masked === parsed ? text : JSON.stringify(masked), excerpt: errorExcerpt(message || text, secrets) };
    }
  }
  const excerpt = errorExcerpt(text, secrets);
  const message = `The upstream provider answered ${status}${excerpt ? `: ${excerpt}` : ' with no error details'}${status === 404 ? hint : ''}`;
  return { body: JSON.stringify(errorBody(message, 'upstream_error', `upstream_${status}`)), excerpt };
}
