import { asStream, type Stage } from './stage.js';

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
 * Passes chunks on untouched and fails with UpstreamTimeoutError once `ms` pass with no chunk
 * (UPSTREAM_TIMEOUT_MS): only silence times out, never a long answer. The clock starts with the
 * stage.
 */
export function idleTimeoutStage(ms: number, clock: Clock = systemClock): Stage {
  let timer: unknown;
  // Chunks only note the time (cheap on the hot path); the timer, when it fires, decides whether
  // that was silence or sleeps for the rest of the window.
  let lastChunkAt = clock.now();
  const stop = () => clock.clearTimeout(timer);
  return {
    start(out) {
      const check = () => {
        const quiet = clock.now() - lastChunkAt;
        if (quiet >= ms) out.error(new UpstreamTimeoutError(`no data from the upstream for ${ms} ms`));
        else timer = clock.setTimeout(check, ms - quiet);
      };
      timer = clock.setTimeout(check, ms);
    },
    transform(chunk, out) {
      lastChunkAt = clock.now();
      out.enqueue(chunk);
    },
    flush: stop,
    stop,
  };
}

/** The idle timeout as a stream of its own: its failure errors the pipe and cancels the source. */
export const idleTimeout = (ms: number, clock?: Clock) => asStream(idleTimeoutStage(ms, clock));
