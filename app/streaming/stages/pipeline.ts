const MARKER = new Uint8Array(0);

/**
 * `source.pipeThrough(a).pipeThrough(b)…`, with a failure that travels behind the data (see
 * `pipeInOrder`). `onFailure` hears of a failure (of the source or of a stage, e.g. a timeout)
 * before the stages after it do: a stage aborted from upstream sees `cancel` as if its reader
 * had gone away, and this tells the two apart. A reader going away is no failure here.
 */
export function pipeline(
  source: ReadableStream<Uint8Array>,
  stages: TransformStream<Uint8Array, Uint8Array>[],
  onFailure?: (err: unknown) => void,
): ReadableStream<Uint8Array> {
  let readable = source;
  for (const stage of stages) {
    void pipeInOrder(readable, stage.writable, async (err, writer) => {
      onFailure?.(err);
      await writer.abort(err).catch(() => {});
    });
    readable = stage.readable;
  }
  return readable;
}

/** How a pipe ended: the source finished, it failed (and `onFailure` ran), or the destination went away. */
export type PipeEnd = 'completed' | 'failed' | 'gone';

/**
 * Pipes `from` into `to`. When `from` fails, `to` is not aborted at once (which would discard
 * what it still holds): an empty chunk is written first (stages pass none on), and once the
 * stage has taken it `onFailure` decides what follows. A stage with the default readable
 * high-water mark (0) transforms a chunk only once its reader took the one before, so by then
 * nothing that came before the failure is left in it. Stages must keep that default.
 */
export async function pipeInOrder(
  from: ReadableStream<Uint8Array>,
  to: WritableStream<Uint8Array>,
  onFailure: (err: unknown, writer: WritableStreamDefaultWriter<Uint8Array>) => Promise<void>,
): Promise<PipeEnd> {
  try {
    await from.pipeTo(to, { preventAbort: true });
    return 'completed';
  } catch (err) {
    let writer: WritableStreamDefaultWriter<Uint8Array>;
    // (A source that failed before its first chunk: the marker below still goes first.)
    try {
      writer = to.getWriter();
      await writer.write(MARKER);
    } catch {
      return 'gone'; // `to` itself failed or its reader went away: nothing to tell it
    }
    await onFailure(err, writer);
    return 'failed';
  }
}
