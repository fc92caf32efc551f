import { eventFramerStage } from './stages/event-framer.js';
import { idleTimeoutStage, UpstreamTimeoutError } from './stages/idle-timeout.js';
import { pipeInOrder } from './stages/pipeline.js';
import { fuse } from './stages/stage.js';
import { usageStripperStage } from './stages/strip-usage.js';
import { tapStage } from './stages/tap.js';
import { errorBody } from '../errors.js';

/** How a relayed stream ended. */
export type StreamEnd = 'completed' | 'client_abort' | 'upstream_error' | 'upstream_timeout' | 'interrupted';

/** Watches the stream on the side; never changes it. */
export interface StreamObserver {
  /** Whole events, exactly as the client gets them, right after they are queued for it. */
  push(events: Uint8Array): void;
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
  return encoder.encode(`data: ${JSON.stringify(errorBody(message, type, how))}\n\n`);
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
}

export interface Relay {
  readable: ReadableStream<Uint8Array>;
  /** Resolves once the stream has ended and the observer's work for the end is done. */
  settled: Promise<void>;
  /** Ends the stream now (server shutdown); the client gets an SSE error event. */
  interrupt(): void;
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
  let interrupting = false;
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
  // A stage that fails (the upstream went silent) stops the upstream; its body then fails the
  // pipe below, which ends the stream in order.
  const stream = fuse(stages, (reason) => {
    timedOut = reason instanceof UpstreamTimeoutError;
    options.abortUpstream(reason);
  });
  void pipeInOrder(body, stream.writable, async (err, writer) => {
    const how: StreamEnd = options.clientSignal?.aborted
      ? 'client_abort'
      : interrupting
        ? 'interrupted'
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

  return {
    readable: stream.readable,
    settled,
    interrupt() {
      // Aborting the upstream fails the pipe, which ends the stream in order (above).
      if (ended || interrupting) return;
      interrupting = true;
      options.abortUpstream(new Error('server shutting down'));
    },
  };
}
