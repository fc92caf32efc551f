import type { UpstreamCall } from '../upstream/client.js';

/** How a relayed stream ended. */
export type StreamEnd = 'completed' | 'client_abort' | 'upstream_error' | 'upstream_timeout';

/** Watches the bytes on the side; never changes them. */
export interface StreamObserver {
  push(bytes: Uint8Array): void;
  end(how: StreamEnd): void;
}

const encoder = new TextEncoder();

/** The last event a client sees when the upstream fails after the first byte. */
export function sseErrorEvent(how: 'upstream_error' | 'upstream_timeout'): Uint8Array {
  const message =
    how === 'upstream_timeout'
      ? 'The upstream provider stopped sending data (UPSTREAM_TIMEOUT_MS); the answer is incomplete.'
      : 'The connection to the upstream provider failed mid-stream; the answer is incomplete.';
  return encoder.encode(`data: ${JSON.stringify({ error: { message, type: 'upstream_error', code: how, param: null } })}\n\n`);
}

/**
 * Pipes the upstream body to the client through one TransformStream: chunks go out untouched
 * the moment they arrive, and the observer sees each one after it is enqueued. The end is
 * reported exactly once: `flush` (upstream finished), `cancel` (client went away) or the pipe's
 * failure (upstream dropped or went silent), in which case the client gets an SSE error event.
 */
export function relay(call: UpstreamCall, observer: StreamObserver): ReadableStream<Uint8Array> {
  let ended = false;
  const end = (how: StreamEnd) => {
    if (ended) return;
    ended = true;
    call.settle();
    observer.end(how);
  };

  // `cancel` is in the Streams spec and Node 20, not yet in TypeScript's DOM types.
  const transformer: Transformer<Uint8Array, Uint8Array> & { cancel(reason: unknown): void } = {
    transform(chunk, controller) {
      controller.enqueue(chunk);
      if (ended) return;
      call.touch();
      observer.push(chunk);
    },
    flush() {
      end('completed');
    },
    cancel(reason) {
      end('client_abort');
      call.abort(reason);
    },
  };
  const tap = new TransformStream(transformer);

  // preventAbort keeps the client side open when the upstream fails, so the error event can follow.
  call.response.body!.pipeTo(tap.writable, { preventAbort: true }).catch(async () => {
    if (ended) return; // the client left first; cancel already recorded it
    end(call.timedOut ? 'upstream_timeout' : 'upstream_error');
    const writer = tap.writable.getWriter();
    try {
      await writer.write(sseErrorEvent(call.timedOut ? 'upstream_timeout' : 'upstream_error'));
      await writer.close();
    } catch {
      // the client went away meanwhile; nothing left to tell it
    }
  });
  return tap.readable;
}
