import { eventEnds } from './sse.js';
import { asStream, type Stage } from './stage.js';

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
  // Anything else (the usage-only chunk, other spellings) is rare: rewrite event by event, so
  // untouched events keep their exact bytes.
  const pieces: Buffer[] = [];
  let start = 0;
  for (const end of [...eventEnds(buf), buf.length]) {
    if (end === start) continue;
    const event = buf.subarray(start, end);
    start = end;
    if (!event.includes(USAGE)) pieces.push(event);
    else {
      const text = event.toString('utf8');
      if (!USAGE_ONLY.test(text)) pieces.push(Buffer.from(text.replace(USAGE_NULL, ''), 'utf8'));
    }
  }
  return Buffer.concat(pieces);
}

/**
 * Strips the usage the server asked for on the client's behalf (see `stripUsage`). Takes whole
 * events, so it goes after the event framer.
 */
export function usageStripperStage(): Stage {
  return {
    transform(events, out) {
      const stripped = stripUsage(events);
      if (stripped.byteLength) out.enqueue(stripped);
    },
  };
}

export const usageStripper = () => asStream(usageStripperStage());
