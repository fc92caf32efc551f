/** Runs chunks through a stage and collects what comes out, or the error it ends with. */
export async function through(stage: TransformStream<Uint8Array, Uint8Array>, chunks: (Uint8Array | string)[]) {
  const enc = new TextEncoder();
  const source = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(typeof c === 'string' ? enc.encode(c) : c);
      controller.close();
    },
  });
  const out: Uint8Array[] = [];
  const reader = source.pipeThrough(stage).getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      out.push(value);
    }
    return { out, text: out.map((c) => Buffer.from(c).toString('utf8')), error: null as unknown };
  } catch (error) {
    return { out, text: out.map((c) => Buffer.from(c).toString('utf8')), error };
  }
}
