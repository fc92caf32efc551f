import { describe, expect, it } from 'vitest';
import { pipeInOrder } from '../../app/streaming/stages/pipeline.js';
import { fuse, type Stage } from '../../app/streaming/stages/stage.js';
import { through } from './helpers.js';

const enc = new TextEncoder();
const text = (b: Uint8Array) => Buffer.from(b).toString();

/** A stage that tags what passes and notes what happens to it. */
function tagger(tag: string, log: string[], extra: Partial<Stage> = {}): Stage {
  return {
    transform(chunk, out) {
      log.push(`${tag}:${text(chunk)}`);
      out.enqueue(enc.encode(`${text(chunk)}${tag}`));
    },
    flush(out) {
      log.push(`${tag}:flush`);
      out.enqueue(enc.encode(`(${tag} flushed)`));
    },
    stop(_, cause) {
      log.push(`${tag}:stop:${cause}`);
    },
    ...extra,
  };
}

describe('stages fused into one stream', () => {
  it.each([1, 2, 3])('run in order, each chunk through all %i, and flush in order', async (n) => {
    const log: string[] = [];
    const tags = ['a', 'b', 'c'].slice(0, n);
    const { text: out } = await through(fuse(tags.map((t) => tagger(t, log))), ['x', 'y']);
    const suffix = tags.join('');
    expect(out.slice(0, 2)).toEqual([`x${suffix}`, `y${suffix}`]);
    // Stage a's flush output goes through the stages after it, then b flushes, …
    expect(out.slice(2)).toEqual(tags.map((t, i) => `(${t} flushed)${tags.slice(i + 1).join('')}`));
    expect(log.filter((l) => l.endsWith('flush'))).toEqual(tags.map((t) => `${t}:flush`));
    expect(log.some((l) => l.includes(':stop:'))).toBe(false);
  });

  it("fails the stream when a stage fails, and stops every stage as on an error", async () => {
    const log: string[] = [];
    const failing: Stage = { transform: (_, out) => out.error(new Error('boom')) };
    const { error } = await through(fuse([tagger('a', log), failing, tagger('c', log)]), ['x']);
    expect((error as Error).message).toBe('boom');
    expect(log).toEqual(['a:x', 'a:stop:error', 'c:stop:error']);
  });

  it('hands a failure to onError instead, when given, and stays open', async () => {
    const log: string[] = [];
    const seen: unknown[] = [];
    let calls = 0;
    const once: Stage = { transform: (c, out) => (calls++ === 0 ? out.error(new Error('silent')) : out.enqueue(c)) };
    const { text: out, error } = await through(fuse([once, tagger('b', log)], (r) => seen.push(r)), ['x', 'y']);
    expect(error).toBeNull();
    expect((seen[0] as Error).message).toBe('silent');
    expect(out).toEqual(['yb', '(b flushed)']);
  });

  it('stops every stage with cause cancel when the reader goes away', async () => {
    const log: string[] = [];
    const stream = fuse([tagger('a', log), tagger('b', log)]);
    await stream.readable.cancel('client left');
    expect(log).toEqual(['a:stop:cancel', 'b:stop:cancel']);
  });

  it('abandon() stops every stage as on an error, and the stream stays writable', async () => {
    const log: string[] = [];
    const stream = fuse([tagger('a', log)]);
    stream.abandon(new Error('upstream dropped'));
    const reader = stream.readable.getReader();
    const writer = stream.writable.getWriter();
    const reading = reader.read();
    await writer.write(enc.encode('event'));
    expect(text((await reading).value!)).toBe('eventa');
    expect(log).toEqual(['a:stop:error', 'a:event']);
  });
});

describe('piping in order', () => {
  it('lets every chunk read before a failure through, then hands the failure over with the writer', async () => {
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
    const log: string[] = [];
    const stream = fuse([tagger('', log)]);
    const got: string[] = [];
    const reading = (async () => {
      const reader = stream.readable.getReader();
      for (;;) {
        // A slow reader: chunks wait in the stream when the source fails.
        for (let k = 0; k < 20; k++) await new Promise((r) => setImmediate(r));
        const { done, value } = await reader.read();
        if (done) return;
        got.push(text(value));
      }
    })();
    const end = await pipeInOrder(source, stream.writable, async (err, writer) => {
      await writer.write(enc.encode(`error: ${(err as Error).message}`));
      await writer.close();
    });
    await reading;
    expect(end).toBe('failed');
    expect(got).toEqual(['data: 0\n\n', 'data: 1\n\n', 'data: 2\n\n', 'data: 3\n\n', 'data: 4\n\n', 'error: upstream dropped', '( flushed)']);
  });

  it("reports a destination whose reader went away as 'gone'", async () => {
    const source = new ReadableStream<Uint8Array>({ pull: (c) => c.enqueue(enc.encode('x')) }, { highWaterMark: 0 });
    const stream = fuse([]);
    void stream.readable.cancel('client left');
    expect(await pipeInOrder(source, stream.writable, async () => {})).toBe('gone');
  });
});
