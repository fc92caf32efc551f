import { asStream, type Stage } from './stage.js';

/** Who a tap hands the stream to, on the side. */
export interface TapObserver {
  /** Bytes exactly as they pass, right after they are passed on; never changes them. */
  push(bytes: Uint8Array): void;
  /** The reader went away (the client disconnected) before the end. */
  cancel?(reason: unknown): void;
}

/** Passes chunks on untouched and shows each one to the observer right after passing it on. */
export function tapStage(observer: TapObserver): Stage {
  return {
    transform(chunk, out) {
      out.enqueue(chunk);
      observer.push(chunk);
    },
    stop(reason, cause) {
      if (cause === 'cancel') observer.cancel?.(reason);
    },
  };
}

export const tap = (observer: TapObserver) => asStream(tapStage(observer));
