import { describe, expect, it } from 'vitest';
import { eventFramer } from '../../app/streaming/stages/event-framer.js';
import { pipeline } from '../../app/streaming/stages/pipeline.js';
import { tap } from '../../app/streaming/stages/tap.js';

const enc = new TextEncoder();
const identity = () => new TransformStream<Uint8Array, Uint8Array>();

describe('a pipeline of stages', () => {
  it.each([1, 2, 4])('delivers every chunk written before a failure through %i stages, then the failure', async (n) => {
    const seen: string[] = [];
    // As a network body: each chunk is read as soon as it arrives, then the connection drops.
    let i = 0;
    const source = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (i < 5) controller.enqueue(enc.encode(`data: ${i++}\n\n`));
          else controller.error(new Error('upstream dropped'));
        },
      },
      { highWaterMark: 0 },
    );
    const stages = [...Array.from({ length: n - 1 }, identity), tap({ push: (b) => seen.push(Buffer.from(b).toString()) })];
    const reader = pipeline(source, stages).getReader();
    const got: string[] = [];
    // A slow reader (a client on a slow link): chunks wait in the stages when the source fails.
    const idle = async () => {
      for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
    };
    const failure = await (async () => {
      for (;;) {
        await idle();
        const { done, value } = await reader.read();
        if (done) return null;
        got.push(Buffer.from(value).toString());
      }
    })().catch((err: Error) => err.message);
    expect(failure).toBe('upstream dropped');
    expect(got).toEqual(['data: 0\n\n', 'data: 1\n\n', 'data: 2\n\n', 'data: 3\n\n', 'data: 4\n\n']);
    expect(seen).toEqual(got);
  });

  it('passes a cancel by the reader back to the source', async () => {
    let cancelled: unknown = null;
    const source = new ReadableStream<Uint8Array>({ cancel: (r) => void (cancelled = r) });
    await pipeline(source, [eventFramer(), identity()]).cancel('client left');
    await new Promise((r) => setImmediate(r));
    expect(cancelled).toBe('client left');
  });
});
