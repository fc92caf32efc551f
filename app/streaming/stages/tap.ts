/** Who a tap hands the stream to, on the side. */
export interface TapObserver {
  /** Bytes exactly as the reader gets them, after they are queued for it; never changes them. */
  push(bytes: Uint8Array): void;
  /** The reader went away (the client disconnected) before the end. */
  cancel?(reason: unknown): void;
}

/**
 * Passes chunks on untouched and shows each one to the observer right after it is queued for the
 * reader. Zero-length chunks go to neither (the relay uses one as a marker: its write resolves
 * once every chunk before it has been observed).
 */
export function tap(observer: TapObserver): TransformStream<Uint8Array, Uint8Array> {
  // `cancel` is in the Streams spec and Node 20, not yet in TypeScript's DOM types.
  const transformer: Transformer<Uint8Array, Uint8Array> & { cancel(reason: unknown): void } = {
    transform(chunk, controller) {
      if (!chunk.byteLength) return;
      controller.enqueue(chunk);
      observer.push(chunk);
    },
    cancel(reason) {
      observer.cancel?.(reason);
    },
  };
  return new TransformStream(transformer);
}
