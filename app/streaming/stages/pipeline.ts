const MARKER = new Uint8Array(0);

/** How a pipe ended: the source finished, it failed (and `onFailure` ran), or the destination went away. */
export type PipeEnd = 'completed' | 'failed' | 'gone';

/**
 * Pipes `from` into `to`. When `from` fails, `to` is not aborted (which would discard what it
 * still holds): an empty chunk is written first (stages pass none on), and once it has been
 * taken, so has every chunk before it, and `onFailure` decides what follows with the writer.
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
