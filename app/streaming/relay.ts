import { eventFramerStage } from './stages/event-framer.js';
import { idleTimeoutStage, UpstreamTimeoutError } from './stages/idle-timeout.js';
import { pipeInOrder } from './stages/pipeline.js';
import { fuse, type Stage } from './stages/stage.js';
import { usageStripperStage } from './stages/strip-usage.js';
import { tapStage } from './stages/tap.js';
import { errorBody } from '../errors.js';
import type { StopCause } from './live-answer.js';

/** How a relayed stream ended. */
export type StreamEnd = 'completed' | 'client_abort' | 'upstream_error' | 'upstream_timeout' | 'interrupted' | 'cancelled';

/** Watches the stream on the side; never changes it. */
export interface StreamObserver {
  /** Whole events, exactly as the client gets them, right after they are queued for it. */
  push(events: Uint8Array): void;
  /** May return a promise for work that follows the end (recording the message). */
  end(how: StreamEnd): void | Promise<void>;
}

const encoder = new TextEncoder();

/** The last event a client sees when the upstream fails after the first byte, or the answer is stopped. */
const endMessages: Record<Exclude<StreamEnd, 'completed' | 'client_abort'>, [type: string, message: string]> = {
  upstream_error: ['upstream_error', 'The connection to the upstream provider failed mid-stream; the answer is incomplete.'],
  upstream_timeout: ['upstream_error', 'The upstream provider stopped sending data (UPSTREAM_TIMEOUT_MS); the answer is incomplete.'],
  interrupted: ['server_error', 'The server is restarting; the answer is incomplete. Please retry.'],
  cancelled: ['invalid_request_error', 'The answer was stopped by a cancel request; it is incomplete.'],
};

/** The last event a client sees when its stream ends early through no fault of its own. */
export function sseErrorEvent(how: keyof typeof endMessages): Uint8Array {
  return encoder.encode(`data: ${errorEventData(how)}\n\n`);
}

/**
 * The data of the error event that ends an answer recorded as `error` with this finish_reason:
 * the one the proxy sent its client when there was one, so a watcher sees the same end.
 */
export function errorEventData(finishReason: string | null): string {
  const reason = finishReason ?? 'upstream_error';
  const known = (endMessages as Record<string, [string, string]>)[reason];
  const [type, message] = known ?? (reason === 'client_abort'
    ? ['server_error', 'The client that asked for this answer went away before its end; the answer is incomplete.']
    : ['server_error', `The answer ended in error (${reason}); it is incomplete.`]);
  return JSON.stringify(errorBody(message, type, reason));
}

export interface RelayOptions {
  observer: StreamObserver;
  /** UPSTREAM_TIMEOUT_MS: this long without a chunk ends the stream as upstream_timeout. */
  timeoutMs: number;
  /** Drop the usage the server asked for on the client's behalf. */
  stripUsage: boolean;
  /** Aborts the upstream request (the client left, or the server is shutting down). */
  abortUpstream(reason: unknown): void;
  /** The client's connection: aborted when it goes away. */
  clientSignal?: AbortSignal;
  /**
   * x-on-disconnect: continue. The client leaving does not end the stream: its half is let go,
   * the upstream is read on into the observer, and `onClientGone` is told (once) so the caller
   * can bound how long that lasts (STREAM_DETACHED_MAX_MS, then `stop('client_abort')`).
   */
  detach?: { onClientGone(): void };
  /**
   * Stages after the tap (a Responses event translator): the observer never sees their effect,
   * the client sees only theirs. The error event that ends a failed stream goes through them too.
   */
  stages?: Stage[];
}

export interface Relay {
  readable: ReadableStream<Uint8Array>;
  /** Resolves once the stream has ended and the observer's work for the end is done. */
  settled: Promise<void>;
  /** Ends the stream now (server shutdown); the client gets an SSE error event. */
  interrupt(): void;
  /**
   * Ends the stream now, as `how`: the upstream is aborted, the client (if still there) gets
   * every whole event before, then an SSE error event (none for `client_abort`: nobody to tell).
   */
  stop(how: StopCause): void;
}

/**
 * The upstream's body on its way to the client, as composed stages: idle timeout, event framing,
 * the tap that shows the observer each event, and usage stripping (when asked for). Chunks go
 * out the moment they arrive, untouched but for the stripped usage. The end is decided here,
 * exactly once: `completed` when the upstream finished, `client_abort` when the client went
 * away, or why the upstream failed, in which case the client gets an SSE error event after every
 * whole event that came before the failure.
 */
export function relay(body: ReadableStream<Uint8Array>, options: RelayOptions): Relay {
  const { observer } = options;
  let ended: StreamEnd | null = null;
  let stopping: StopCause | null = null;
  let markSettled!: () => void;
  const settled = new Promise<void>((r) => (markSettled = r));
  const end = (how: StreamEnd): boolean => {
    if (ended) return false;
    ended = how;
    new Promise<void>((r) => r(observer.end(how))).catch(() => {}).finally(markSettled);
    return true;
  };

  // The observer sees the upstream's events as they come (usage included), the client what
  // leaves the last stage. Stages are fused into one TransformStream: one hop per chunk.
  let timedOut = false;
  const stages = [
    idleTimeoutStage(options.timeoutMs),
    eventFramerStage(),
    tapStage({
      push: (events) => {
        if (!ended) observer.push(events);
      },
      cancel: (reason) => {
        if (end('client_abort')) options.abortUpstream(reason);
      },
    }),
  ];
  if (options.stripUsage) stages.push(usageStripperStage());
  if (options.stages) stages.push(...options.stages);
  // A stage that fails (the upstream went silent) stops the upstream; its body then fails the
  // pipe below, which ends the stream in order.
  const stream = fuse(stages, (reason) => {
    timedOut = reason instanceof UpstreamTimeoutError;
    options.abortUpstream(reason);
  });
  void pipeInOrder(body, stream.writable, async (err, writer) => {
    // A detached stream outlives its client: only a stop ends it as client_abort.
    const how: StreamEnd = !options.detach && options.clientSignal?.aborted
      ? 'client_abort'
      : stopping
        ? stopping
        : timedOut || err instanceof UpstreamTimeoutError
          ? 'upstream_timeout'
          : 'upstream_error';
    // The half event the upstream left is dropped; the error event follows whole events.
    stream.abandon(err);
    if (!end(how) || how === 'client_abort') return void writer.abort(err).catch(() => {});
    try {
      await writer.write(sseErrorEvent(how));
      await writer.close();
    } catch {
      // the client went away meanwhile
    }
  }).then((how) => {
    if (how === 'completed') end('completed');
  });

  const stop = (how: StopCause) => {
    // Aborting the upstream fails the pipe, which ends the stream in order (above).
    if (ended || stopping) return;
    stopping = how;
    options.abortUpstream(new Error(how === 'interrupted' ? 'server shutting down' : `stopped: ${how}`));
  };
  return {
    readable: options.detach ? detachable(stream.readable, options.clientSignal, options.detach.onClientGone) : stream.readable,
    settled,
    interrupt: () => stop('interrupted'),
    stop,
  };
}

/**
 * The client's half of a stream that must outlive the client: chunks go to the client while it
 * is there, one read per read of its own (so a slow client still slows the upstream, as without
 * this). Once it goes away (its reader cancels, or its connection's signal aborts), the source is
 * read to its end and discarded, so the stages before (the tap, and so the recorder) see all of it.
 */
function detachable(source: ReadableStream<Uint8Array>, clientSignal: AbortSignal | undefined, onGone: () => void): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let gone = false;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const leave = () => {
    if (gone) return;
    gone = true;
    clientSignal?.removeEventListener('abort', leave);
    try {
      // Its connection is gone; closing (rather than failing) it keeps the server's writer quiet.
      controller.close();
    } catch {
      // already closed or cancelled
    }
    onGone();
    void (async () => {
      try {
        while (!(await reader.read()).done);
      } catch {
        // the stream failed: its end is decided (and recorded) upstream of here
      }
    })();
  };
  return new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        if (clientSignal?.aborted) leave();
        else clientSignal?.addEventListener('abort', leave, { once: true });
      },
      async pull(c) {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (err) {
          clientSignal?.removeEventListener('abort', leave);
          if (!gone) c.error(err);
          return;
        }
        // Read for a client that left meanwhile: the tap has seen it; drop it.
        if (gone) return;
        if (next.done) {
          clientSignal?.removeEventListener('abort', leave);
          c.close();
        } else c.enqueue(next.value);
      },
      cancel: leave,
    },
    { highWaterMark: 0 },
  );
}
