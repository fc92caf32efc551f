/**
 * When the server asks the upstream for usage on the client's behalf, the client must not see
 * the difference: this drops the usage-only chunk (`"choices":[]`) and the `"usage":null` field
 * OpenAI adds to every other chunk. Events pass through unchanged when they mention no usage;
 * only a partial event at the end of a chunk is held back until its blank line arrives.
 */
export interface UsageFilter {
  /** Returns the bytes to send now (possibly empty). */
  push(chunk: Uint8Array): Uint8Array;
  /** Whatever is held back when the upstream ends. */
  end(): Uint8Array;
}

const USAGE = Buffer.from('"usage"');
const EMPTY = new Uint8Array(0);
const USAGE_NULL = /,\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,/g;
const USAGE_ONLY = /"choices"\s*:\s*\[\s*\]/;

export function createUsageFilter(): UsageFilter {
  let held: Buffer | null = null;
  return {
    push(chunk) {
      const buf = held ? Buffer.concat([held, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      // End of the last complete event: SSE allows LF or CRLF line endings.
      const end = Math.max(endAfter(buf, '\n\n'), endAfter(buf, '\r\n\r\n'));
      if (end === 0) {
        held = buf;
        return EMPTY;
      }
      held = end < buf.length ? buf.subarray(end) : null;
      const complete = buf.subarray(0, end);
      return complete.includes(USAGE) ? rewrite(complete.toString('utf8')) : complete;
    },
    end() {
      const rest = held;
      held = null;
      return rest ? (rest.includes(USAGE) ? rewrite(rest.toString('utf8')) : rest) : EMPTY;
    },
  };
}

function endAfter(buf: Buffer, separator: string): number {
  const at = buf.lastIndexOf(separator);
  return at === -1 ? 0 : at + separator.length;
}

function rewrite(text: string): Uint8Array {
  // Split keeping separators, so untouched events keep their exact bytes.
  const parts = text.split(/(\r?\n\r?\n)/);
  let out = '';
  for (let i = 0; i < parts.length; i += 2) {
    const event = parts[i]!;
    const separator = parts[i + 1] ?? '';
    if (event.includes('"usage"') && USAGE_ONLY.test(event)) continue;
    out += event.replace(USAGE_NULL, '') + separator;
  }
  return Buffer.from(out, 'utf8');
}
