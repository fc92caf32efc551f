import fc from 'fast-check';

/*
 * Input generators for the fuzz suite: Unicode of every kind (lone surrogates, U+0000, BOM,
 * bidi overrides, joiners, the last code point), JSON of any shape, query strings and path
 * segments, both well-encoded and raw.
 */

/** One character: any code point (surrogate halves included), a grapheme, a byte, or a known troublemaker. */
export const anyChar: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)) },
  { weight: 4, arbitrary: fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 1 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff', '\ufeff', '\u202e', '\u200d', '\u2028', '\uffff', '\u{10ffff}', 'é', 'e\u0301', '👩‍👩‍👧'),
  },
  { weight: 1, arbitrary: fc.constant('\u0000') },
);

/** Strings that have broken servers before. */
export const SPECIAL_STRINGS = [
  '',
  ' ',
  '\u0000',
  'a\u0000b',
  '\ud800',
  'x\udfffy',
  '\ufeff',
  '\u202egnp.exe',
  "'; DROP TABLE conversations; --",
  '" OR 1=1 --',
  '%00',
  '%',
  '../../etc/passwd',
  '\\',
  '\r\n\r\n',
  '<script>alert(1)</script>',
  '${process.exit()}',
  '__proto__',
  'constructor',
  'NaN',
  '-1',
  '1e309',
  '9007199254740993',
  '2147483648',
  '𝕳é漢字👩‍👩‍👧',
];

export const anyText: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: anyChar, maxLength: 24 }) },
  { weight: 2, arbitrary: fc.constantFrom(...SPECIAL_STRINGS) },
  { weight: 1, arbitrary: fc.string({ unit: anyChar, minLength: 200, maxLength: 800 }) },
);

export const anyJson: fc.Arbitrary<unknown> = fc.jsonValue({ maxDepth: 3, stringUnit: anyChar });

/** Number-looking strings for integer parameters, in and far out of every range. */
export const numberish: fc.Arbitrary<string> = fc.oneof(
  fc.integer().map(String),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map(String),
  fc.double().map(String),
  fc.constantFrom('0', '1', '20', '100', '101', '200', '201', '-0', '1e2', '0x10', ' 5', '5 ', '٣', '１', '2147483647', '2147483648', '4294967296', '9007199254740991', '9007199254740992'),
);

const base64url = (text: string) => Buffer.from(text, 'utf8').toString('base64url');

/** Cursors: well-formed ones pointing anywhere (impossible dates, odd ids) and arbitrary base64. */
export const cursorish: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(
      fc.oneof(fc.integer(), fc.maxSafeInteger(), fc.double(), fc.constantFrom(0, 8.64e15, 8.64e15 + 1, -8.64e15 - 1, Number.MAX_SAFE_INTEGER)),
      fc.oneof(anyText, fc.uuid()),
    )
    .map((t) => base64url(JSON.stringify(t))),
  anyJson.map((v) => base64url(JSON.stringify(v) ?? '')),
  anyText,
);

/**
 * Percent-encodes every byte of the UTF-8 form except unreserved characters (lone surrogates
 * become U+FFFD, as any HTTP client would send them).
 */
export function percentEncode(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Raw text as a URL component without encoding: only what would end the component is dropped. */
const raw = (text: string) => text.replace(/[#?&=/]/g, '');

/** Malformed or surprising percent sequences. */
export const rawPercent = fc.constantFrom('%', '%zz', '%ff', '%c3%28', '%e2%82', '%00', '%2F', '%252F', '%2e%2e', '..', '.', '%ed%a0%80', '%F0%9F%99%82');

export const queryKey = fc.oneof(fc.constantFrom('cursor', 'limit', 'include_deleted', 'after_seq'), anyText);
export const queryValue = fc.oneof(anyText, numberish, cursorish, fc.constantFrom('0', '1', 'true', 'false', 'yes', '', 'TRUE'), rawPercent);

/** A whole query string ('' or '?…'), encoded or raw per pair, keys sometimes repeated. */
export const anyQuery: fc.Arbitrary<string> = fc
  .array(fc.tuple(queryKey, queryValue, fc.boolean()), { maxLength: 4 })
  .map((pairs) => (pairs.length ? `?${pairs.map(([k, v, encode]) => (encode ? `${percentEncode(k)}=${percentEncode(v)}` : `${raw(k)}=${raw(v)}`)).join('&')}` : ''));

/** A conversation reference: one of the fixture's (resolved per run), any text, or a raw path piece. */
export class Ref {
  constructor(readonly to: { ref: 'own' | 'foreign' | 'deleted' } | { text: string } | { rawPath: string }) {}
}
export const anyRef: fc.Arbitrary<Ref> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('own' as const, 'foreign' as const, 'deleted' as const).map((ref) => new Ref({ ref })) },
  { weight: 3, arbitrary: anyText.map((text) => new Ref({ text })) },
  { weight: 1, arbitrary: fc.uuid().map((text) => new Ref({ text })) },
  { weight: 1, arbitrary: rawPercent.map((rawPath) => new Ref({ rawPath })) },
);

export const contentTypes = fc.constantFrom(
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'text/plain',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/json; charset=latin1',
);

/** Bodies that are not JSON, or JSON that stops early. */
export const notJson = fc.oneof(
  anyText,
  fc.constantFrom('{', '{"title":', '[', '{"a":1}}', '{"title":"x",}', "{'title':'x'}", '\u0000', '{"title":"\\ud800"}', '{"title":"\\u0000"}', '{"title":"x","title":5}', 'nul', '1e99999', '"\\x41"'),
);

/** A request body: a JSON value to serialise (after the test resolves any Ref in it), or raw text. */
export type BodyInput = { json: unknown } | { raw: string };

/** A JSON body: any value, or one shaped like what the endpoint expects with anything inside. */
export function bodyLike(shape: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<BodyInput> {
  return fc.oneof(
    { weight: 1, arbitrary: anyJson.map((json): BodyInput => ({ json })) },
    { weight: 4, arbitrary: shape.map((json): BodyInput => ({ json })) },
    { weight: 1, arbitrary: fc.tuple(shape, fc.dictionary(anyText, anyJson, { maxKeys: 2 })).map(([v, extra]): BodyInput => ({ json: { ...extra, ...v } })) },
    { weight: 1, arbitrary: notJson.map((raw): BodyInput => ({ raw })) },
  );
}

const orAnything = <T>(arb: fc.Arbitrary<T>) => fc.oneof({ weight: 3, arbitrary: arb }, { weight: 1, arbitrary: anyJson });

export const metadataLike = orAnything(fc.dictionary(anyText, anyJson, { maxKeys: 4 }));

export const conversationShape = fc.record(
  { title: orAnything(fc.oneof(anyText, fc.constant(null))), model: orAnything(fc.oneof(anyText, fc.constant(null))), metadata: metadataLike },
  { requiredKeys: [] },
);

export const patchShape = fc.record({ title: orAnything(fc.oneof(anyText, fc.constant(null))), metadata: metadataLike }, { requiredKeys: [] });

const part = fc.oneof(
  fc.record({ type: fc.constantFrom('text', 'image_url', '', 'TEXT'), text: orAnything(anyText), image_url: anyJson }, { requiredKeys: ['type'] }),
  anyJson,
);
const content = fc.oneof(anyText, fc.constant(null), fc.array(part, { maxLength: 3 }), anyJson);

export const messageShape = fc.record(
  { role: orAnything(fc.constantFrom('user', 'system', 'assistant', 'tool', 'developer', 'User', '')), content },
  { requiredKeys: [] },
);

/** Stands for the fixture's own message id in a body (the test puts the id in). */
export const OWN_MESSAGE = '$own-message';
export const messageIdShape = fc.record({ message_id: orAnything(fc.oneof(anyText, fc.uuid(), fc.constant(OWN_MESSAGE))) }, { requiredKeys: [] });

const chatMessage = fc.record(
  {
    role: orAnything(fc.constantFrom('system', 'developer', 'user', 'assistant', 'tool', 'function', 'wizard')),
    content,
    name: anyText,
    tool_calls: anyJson,
    tool_call_id: orAnything(anyText),
    id: orAnything(anyText),
  },
  { requiredKeys: ['role'] },
);

/** `conversation_id` is resolved per run when it is a Ref. */
export const chatShape = fc.record(
  {
    model: orAnything(anyText),
    messages: orAnything(fc.array(chatMessage, { maxLength: 4 })),
    stream: orAnything(fc.boolean()),
    stream_options: orAnything(fc.record({ include_usage: orAnything(fc.boolean()) }, { requiredKeys: [] })),
    temperature: anyJson,
    conversation_id: fc.oneof(anyRef, anyJson),
  },
  { requiredKeys: [] },
);

export const methods = fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD');

/** Paths under and around the API, with odd segments. */
export const anyPath: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom('/v1', '/v1/conversations', '/v1/chat', '/v1/chat/completions', '/healthz', '', '/v2', '/V1/conversations'),
    fc.array(fc.oneof(anyText.map(percentEncode), rawPercent, fc.constantFrom('messages', 'completions', '..', '', 'conversations')), { maxLength: 3 }),
  )
  .map(([base, segments]) => `${base}/${segments.join('/')}`.replace(/\/+$/, '') || '/');

/** Header values a client can actually send (visible Latin-1 and spaces, no CR/LF/NUL). */
export const headerValue = fc.oneof(
  fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 140 }),
  fc.stringMatching(/^[A-Za-z0-9_-]{1,140}$/),
  fc.constantFrom('', ' ', 'abc', 'a'.repeat(7), 'a'.repeat(8), 'a'.repeat(128), 'a'.repeat(129), 'abc def ghi', 'é'.repeat(10)),
);
