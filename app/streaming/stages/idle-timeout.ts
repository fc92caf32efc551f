/** Why an upstream body was cut off: it went silent for longer than the timeout. */
export class UpstreamTimeoutError extends Error {
  override name = 'UpstreamTimeoutError';
}

/** The clock the stage reads; tests pass a fake one. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(timer: unknown): void;
}

const systemClock: Clock = {
  now: Date.now,
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (timer) => clearTimeout(timer as ReturnType<typeof setTimeout>),
};

/**
 * Passes chunks on untouched and errors the pipe with UpstreamTimeoutError once `ms` pass with
 * no chunk (UPSTREAM_TIMEOUT_MS): only silence times out, never a long answer. The pipe's error
 * cancels the source, so the upstream request is aborted too. The clock starts with the stage.
 */
export function idleTimeout(ms: number, clock: Clock = systemClock): TransformStream<Uint8Array, Uint8Array> {
  let timer: unknown;
  // Chunks only note the time (cheap on the hot path); the timer, when it fires, decides whether
  // that was silence or sleeps for the rest of the window.
  let lastChunkAt = clock.now();
  const stop = () => clock.clearTimeout(timer);
  // `cancel` is in the Streams spec and Node 20, not yet in TypeScript's DOM types.
  const transformer: Transformer<Uint8Array, Uint8Array> & { cancel(): void } = {
    start(controller) {
      const check = () => {
        const quiet = clock.now() - lastChunkAt;
        if (quiet >= ms) controller.error(new UpstreamTimeoutError(`no data from the upstream for ${ms} ms`));
        else timer = clock.setTimeout(check, ms - quiet);
      };
      timer = clock.setTimeout(check, ms);
    },
    transform(chunk, controller) {
      if (!chunk.byteLength) return;
      lastChunkAt = clock.now();
      controller.enqueue(chunk);
    },
    flush: stop,
    cancel: stop,
  };
  return new TransformStream(transformer);
}
