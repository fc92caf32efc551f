const MARKER = new Uint8Array(0);

/**
 * `source.pipeThrough(a).pipeThrough(b)…`, with a failure that travels behind the data: each
 * failed pipe first writes an empty chunk (stages pass none on) and waits until the stage has
 * taken it, then aborts the stage with the same error. A stage with the default readable
 * high-water mark (0) transforms a chunk only once its reader took the one before, so by then
 * nothing of what came before the failure is left in it for the abort to discard. Stages must
 * keep that default.
 */
export function pipeline(source: ReadableStream<Uint8Array>, ...stages: TransformStream<Uint8Array, Uint8Array>[]): ReadableStream<Uint8Array> {
  let readable = source;
  for (const stage of stages) {
    pipeInOrder(readable, stage.writable);
    readable = stage.readable;
  }
  return readable;
}

/**
 * Pipes `from` into `to`, failing `to` only after everything before the failure was written.
 * Resolves once the pipe is over: `completed` when `from` ended, or the error that ended it.
 */
export function pipeInOrder(from: ReadableStream<Uint8Array>, to: WritableStream<Uint8Array>, onFailure?: (err: unknown) => Promise<void>): Promise<void> {
  return from.pipeTo(to, { preventAbort: true }).catch(async (err: unknown) => {
    let writer: WritableStreamDefaultWriter<Uint8Array>;
    try {
      writer = to.getWriter();
      await writer.write(MARKER);
    } catch {
      return; // `to` itself failed or went away (the reader cancelled): nothing to tell it
    }
    if (onFailure) {
      writer.releaseLock();
      return onFailure(err);
    }
    await writer.abort(err).catch(() => {});
  });
}
