import type { UpstreamCall } from '../upstream/client.js';
import { createEventFramer, stripUsage } from './sse-frames.js';

/** How a relayed stream ended. */
export type StreamEnd = 'completed' | 'client_abort' | 'upstream_error' | 'upstream_timeout' | 'interrupted';

/** Watches the bytes on the side; never changes them. */
export interface StreamObserver {
  push(bytes: Uint8Array): void;
  /** May return a promise for work that follows the end (recording the message). */
  end(how: StreamEnd): void | Promise<void>;
}

const encoder = new TextEncoder();

/** The last event a client sees when the upstream fails after the first byte. */
const endMessages: Record<Exclude<StreamEnd, 'completed' | 'client_abort'>, [type: string, message: string]> = {
  upstream_error: ['upstream_error', 'The connection to the upstream provider failed mid-stream; the answer is incomplete.'],
  upstream_timeout: ['upstream_error', 'The upstream provider stopped sending data (UPSTREAM_TIMEOUT_MS); the answer is incomplete.'],
  interrupted: ['server_error', 'The server is restarting; the answer is incomplete. Please retry.'],
};

/** The last event a client sees when its stream ends early through no fault of its own. */
export function sseErrorEvent(how: keyof typeof endMessages): Uint8Array {
  const [type, message] = endMessages[how];
  return encoder.encode(`data: ${JSON.stringify({ error: { message, type, code: how, param: null } })}\n\n`);
}

export interface Relay {
  readable: ReadableStream<Uint8Array>;
  /** Resolves once the stream has ended and the observer's work for the end is done. */
  settled: Promise<void>;
  /** Ends the stream now (server shutdown); the client gets an SSE error event. */
  interrupt(): void;
}

/**
 * Pipes the upstream body to the client through one TransformStream: chunks go out untouched
 * the moment they arrive (a partial event at a chunk's end waits for its blank line; usage the
 * server asked for on the client's behalf is stripped), and the observer sees each one after it is enqueued. The end is
 * reported exactly once: `flush` (upstream finished), `cancel` (client went away) or the pipe's
 * failure (upstream dropped or went silent), in which case the client gets an SSE error event.
 */
export function relay(call: UpstreamCall, observer: StreamObserver, options: { stripUsage?: boolean } = {}): Relay {
  const framer = createEventFramer();
  const outgoing = (events: Uint8Array) => (options.stripUsage && events.byteLength ? stripUsage(events) : events);
  let ended: StreamEnd | null = null;
  let settle!: () => void;
  const settled = new Promise<void>((r) => (settle = r));
  const end = (how: StreamEnd): boolean => {
    if (ended) return false;
    ended = how;
    call.settle();
    new Promise<void>((r) => r(observer.end(how))).catch(() => {}).finally(settle);
    return true;
  };

  // A failed pipe rejects while chunks it already read may still wait in the writable's queue.
  // The end is therefore written into that queue as a marker, behind them, so the observer sees
  // every byte the client gets before the stream is recorded as ended.
  const FAILED = new Uint8Array(0);
  let interrupting = false;

  // `cancel` is in the Streams spec and Node 20, not yet in TypeScript's DOM types.
  const transformer: Transformer<Uint8Array, Uint8Array> & { cancel(reason: unknown): void } = {
    transform(chunk, controller) {
      if (chunk === FAILED) {
        const how = interrupting ? 'interrupted' : call.timedOut ? 'upstream_timeout' : 'upstream_error';
        end(how);
        // The half event the upstream left is never sent; the error event follows whole events.
        framer.drop();
        controller.enqueue(sseErrorEvent(how));
        return;
      }
      const out = outgoing(framer.push(chunk));
      if (out.byteLength) controller.enqueue(out);
      if (ended) return;
      call.touch();
      observer.push(chunk);
    },
    flush(controller) {
      const rest = outgoing(framer.rest());
      if (rest.byteLength) controller.enqueue(rest);
      end('completed');
    },
    cancel(reason) {
      end('client_abort');
      call.abort(reason);
    },
  };
  const tap = new TransformStream(transformer);

  call.startReading();
  // preventAbort keeps the client side open when the upstream fails, so the error event can follow.
  call.response.body!.pipeTo(tap.writable, { preventAbort: true }).catch(async () => {
    if (ended) return; // the client left first: nobody to tell
    const writer = tap.writable.getWriter();
    try {
      await writer.write(FAILED);
      await writer.close();
    } catch {
      // the client went away meanwhile; cancel recorded it
    }
  });
  return {
    readable: tap.readable,
    settled,
    interrupt() {
      // Aborting the upstream fails the pipe, whose handler above ends the stream in order.
      if (ended || interrupting) return;
      interrupting = true;
      call.abort(new Error('server shutting down'));
    },
  };
}
