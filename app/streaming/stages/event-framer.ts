import { endsEvent, lastEventEnd } from './sse.js';
import { asStream, type Stage } from './stage.js';

/**
 * Passes on whole events only: a partial event at the end of a chunk waits for its empty line,
 * so that if the upstream fails mid-event the client's stream still consists of whole events and
 * the error event that follows is an event of its own (a failed pipe never flushes, so what is
 * held is dropped). A chunk that ends an event (the usual case) passes through as the same chunk,
 * with no copy. Bytes that never frame as SSE are not held past `maxHeld`. When the upstream ends
 * normally, whatever is held goes out as it is; when the stream fails, it is dropped.
 */
export function eventFramerStage(maxHeld = 64 * 1024): Stage {
  let held: Buffer | null = null;
  return {
    transform(chunk, out) {
      if (!held && endsEvent(chunk)) return out.enqueue(chunk);
      const heldBefore = held?.length ?? 0;
      const buf = held ? Buffer.concat([held, chunk]) : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      // Only the new bytes (and the 3 before them, for a terminator split across) can end an event.
      const end = lastEventEnd(buf, heldBefore - 3);
      if (end === buf.length || (end === 0 && buf.length >= maxHeld)) {
        held = null;
        return out.enqueue(buf);
      }
      held = end === 0 ? buf : buf.subarray(end);
      if (end) out.enqueue(buf.subarray(0, end));
    },
    flush(out) {
      if (held?.length) out.enqueue(held);
      held = null;
    },
    stop() {
      held = null;
    },
  };
}

export const eventFramer = (maxHeld?: number) => asStream(eventFramerStage(maxHeld));
