/**
 * Byte-level helpers for the relay. Neither decodes text on the common path: events are found
 * by their blank line (LF LF or CR LF CR LF), which never occurs inside a UTF-8 character.
 */

const EMPTY = new Uint8Array(0);
const LF = 0x0a;
const CR = 0x0d;

function endsEvent(b: Uint8Array): boolean {
  const n = b.length;
  return n >= 2 && b[n - 1] === LF && (b[n - 2] === LF || (n >= 4 && b[n - 2] === CR && b[n - 3] === LF && b[n - 4] === CR));
}

function lastEventEnd(b: Buffer): number {
  const lf = b.lastIndexOf('\n\n');
  const crlf = b.lastIndexOf('\r\n\r\n');
  return Math.max(lf === -1 ? 0 : lf + 2, crlf === -1 ? 0 : crlf + 4);
}

export interface EventFramer {
  /** The complete events so far: usually the very chunk given, untouched. */
  push(chunk: Uint8Array): Uint8Array;
  /** The upstream ended: whatever is held goes out as it is. */
  rest(): Uint8Array;
  /** The upstream failed: the half event held back is dropped, so the client never sees it. */
  drop(): void;
}

/**
 * Holds back a partial event at the end of a chunk until its blank line arrives, so that if
 * the upstream fails mid-event the client's stream still consists of whole events, and the
 * error event that follows is an event of its own. A chunk that ends an event (the usual case)
 * passes through as the same chunk, with no copy. Bytes that never frame as SSE are not held
 * past `maxHeld`.
 */
export function createEventFramer(maxHeld = 64 * 1024): EventFramer {
  let held: Buffer | null = null;
  return {
    push(chunk) {
      if (!held && endsEvent(chunk)) return chunk;
      const buf = held ? Buffer.concat([held, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      const end = lastEventEnd(buf);
      if (end === buf.length || (end === 0 && buf.length >= maxHeld)) {
        held = null;
        return buf;
      }
      held = buf.subarray(end);
      return end ? buf.subarray(0, end) : EMPTY;
    },
    rest() {
      const rest = held ?? EMPTY;
      held = null;
      return rest;
    },
    drop() {
      held = null;
    },
  };
}

const USAGE = Buffer.from('"usage"');
const COMPACT_USAGE_NULL = Buffer.from(',"usage":null');
const USAGE_NULL = /,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,/g;
const USAGE_ONLY = /"choices"\s*:\s*\[\s*\]/;

/**
 * When the server asks the upstream for usage on the client's behalf, the client must not see
 * the difference: drops the usage-only chunk (`"choices":[]`) and the `"usage":null` field
 * OpenAI adds to every other chunk. Takes whole events; events that mention no usage keep
 * their exact bytes.
 */
export function stripUsage(events: Uint8Array): Uint8Array {
  let buf = Buffer.from(events.buffer, events.byteOffset, events.byteLength);
  if (!buf.includes(USAGE)) return events;
  // Fast path, on bytes: OpenAI's compact `,"usage":null` is cut out without decoding.
  let at = buf.indexOf(COMPACT_USAGE_NULL);
  if (at !== -1) {
    const pieces: Buffer[] = [];
    let from = 0;
    for (; at !== -1; at = buf.indexOf(COMPACT_USAGE_NULL, from)) {
      pieces.push(buf.subarray(from, at));
      from = at + COMPACT_USAGE_NULL.length;
    }
    pieces.push(buf.subarray(from));
    buf = Buffer.concat(pieces);
    if (!buf.includes(USAGE)) return buf;
  }
  // Anything else (the usage-only chunk, other spellings) is rare: rewrite the text.
  // Split keeping separators, so untouched events keep their exact bytes.
  const parts = buf.toString('utf8').split(/(\r?\n\r?\n)/);
  let out = '';
  for (let i = 0; i < parts.length; i += 2) {
    const event = parts[i]!;
    const separator = parts[i + 1] ?? '';
    if (event.includes('"usage"') && USAGE_ONLY.test(event)) continue;
    out += event.replace(USAGE_NULL, '') + separator;
  }
  return Buffer.from(out, 'utf8');
}
