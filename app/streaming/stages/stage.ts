/** Where a stage puts what it passes on. */
export interface StageOutput {
  enqueue(chunk: Uint8Array): void;
  /** The stage cannot go on (e.g. the upstream went silent): the stream fails with `reason`. */
  error(reason: unknown): void;
}

/** Why a stream ended without its flush. */
export type StopCause = 'cancel' | 'error';

/**
 * One job on the byte path, as a transformer whose output goes straight to the next stage:
 * stages are composed into one TransformStream (`fuse`), so a chunk costs one stream hop however
 * many stages it goes through. Every method is synchronous.
 */
export interface Stage {
  start?(out: StageOutput): void;
  transform(chunk: Uint8Array, out: StageOutput): void;
  /** The source ended: pass on what is held. */
  flush?(out: StageOutput): void;
  /** The stream ends without a flush: its reader went away (`cancel`), or it failed (`error`). */
  stop?(reason: unknown, cause: StopCause): void;
}

/** A TransformStream of stages that can also be told the stream failed upstream of it. */
export interface FusedStream extends TransformStream<Uint8Array, Uint8Array> {
  /**
   * The source failed: every stage stops as on an error (timers cleared, half events dropped),
   * while the stream itself stays open for what its owner writes next (an error event).
   */
  abandon(reason: unknown): void;
}

/**
 * Stages composed into one TransformStream: what a stage enqueues is the next one's input, the
 * last one's goes to the reader. A stage's error fails the stream (or, given `onError`, is
 * handed to it instead, for an owner that ends the stream its own way); flushes run in order;
 * a cancel by the reader stops every stage.
 */
export function fuse(stages: Stage[], onError?: (reason: unknown) => void): FusedStream {
  let controller!: TransformStreamDefaultController<Uint8Array>;
  let stopped = false;
  const stopAll = (reason: unknown, cause: StopCause) => {
    if (stopped) return;
    stopped = true;
    for (const stage of stages) stage.stop?.(reason, cause);
  };
  const fail = (reason: unknown) => {
    if (stopped) return;
    stopAll(reason, 'error');
    if (onError) onError(reason);
    else controller.error(reason);
  };
  const outputs: StageOutput[] = stages.map((_, i) => {
    const next = stages[i + 1];
    return {
      enqueue: next ? (chunk) => next.transform(chunk, outputs[i + 1]!) : (chunk) => controller.enqueue(chunk),
      error: fail,
    };
  });
  // `cancel` is in the Streams spec and Node 20, not yet in TypeScript's DOM types.
  const transformer: Transformer<Uint8Array, Uint8Array> & { cancel(reason: unknown): void } = {
    start(c) {
      controller = c;
      stages.forEach((stage, i) => stage.start?.(outputs[i]!));
    },
    transform(chunk) {
      if (!chunk.byteLength) return;
      if (stages[0]) stages[0].transform(chunk, outputs[0]!);
      else controller.enqueue(chunk);
    },
    flush() {
      stages.forEach((stage, i) => stage.flush?.(outputs[i]!));
      stopped = true;
    },
    cancel(reason) {
      stopAll(reason, 'cancel');
    },
  };
  return Object.assign(new TransformStream(transformer), { abandon: (reason: unknown) => stopAll(reason, 'error') });
}

/** One stage as a TransformStream of its own. */
export const asStream = (stage: Stage): TransformStream<Uint8Array, Uint8Array> => fuse([stage]);
