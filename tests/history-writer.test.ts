import { describe, expect, it } from 'vitest';
import type { HistoryBatch, Store } from '../db/store.js';
import { HistoryWriter } from '../app/streaming/history-writer.js';

/** A store that keeps the batches it is given and finishes each when the test says so. */
function batchingStore() {
  const batches: HistoryBatch[] = [];
  const finishers: ((err?: Error) => void)[] = [];
  const store = {
    writeBatch: (batch: HistoryBatch) =>
      new Promise<void>((resolve, reject) => {
        batches.push(structuredClone(batch));
        finishers.push((err) => (err ? reject(err) : resolve()));
      }),
  } as unknown as Store;
  /** Resolves once `n` batches have been handed to the store. */
  const until = async (n: number) => {
    while (batches.length < n) await new Promise((r) => setImmediate(r));
  };
  return { store, batches, finishers, until };
}

describe('HistoryWriter: the running answers write together', () => {
  it('puts what is asked for in one moment into one batch, text in order and the end after it', async () => {
    const s = batchingStore();
    const writer = new HistoryWriter(s.store);
    const done = Promise.all([
      writer.append('a', 'Hel'),
      writer.append('b', 'x'),
      writer.append('a', 'lo'),
      writer.finish('a', { status: 'final', finishReason: 'stop' }),
      writer.note('c1', { upstreamId: 'u1', model: 'm' }),
      writer.note('c1', { upstreamId: 'u2', model: null }),
    ]);
    await s.until(1);
    expect(s.batches[0]).toEqual({
      messages: [
        { id: 'a', append: 'Hello', finish: { status: 'final', finishReason: 'stop' } },
        { id: 'b', append: 'x', finish: null },
      ],
      completions: [{ id: 'c1', upstreamId: 'u1', model: 'm' }],
    });
    s.finishers[0]!();
    await done;
  });

  it('runs one batch at a time: what comes while one is written goes, all of it, into the next', async () => {
    const s = batchingStore();
    const writer = new HistoryWriter(s.store);
    const first = writer.append('a', '1');
    await s.until(1);
    const later = [writer.append('a', '2'), writer.append('b', '3'), writer.finish('c', { status: 'error', finishReason: 'client_abort' })];
    // Nothing more goes to the store while the first batch runs.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    expect(s.batches).toHaveLength(1);
    s.finishers[0]!();
    await first;
    await s.until(2);
    expect(s.batches[1]!.messages.map((m) => m.id)).toEqual(['a', 'b', 'c']);
    s.finishers[1]!();
    await Promise.all(later);
    expect(s.batches).toHaveLength(2);
  });

  it('fails every write of a failed batch, and goes on with the next', async () => {
    const s = batchingStore();
    const writer = new HistoryWriter(s.store);
    const failed = [writer.append('a', '1'), writer.finish('b', { status: 'final' })].map((p) => p.then(() => 'ok', (e: Error) => e.message));
    await s.until(1);
    const next = writer.append('a', '2');
    s.finishers[0]!(new Error('database is down'));
    expect(await Promise.all(failed)).toEqual(['database is down', 'database is down']);
    await s.until(2);
    expect(s.batches[1]!.messages).toEqual([{ id: 'a', append: '2', finish: null }]);
    s.finishers[1]!();
    await next;
  });

  it('fails the writes of a store that throws instead of rejecting', async () => {
    const writer = new HistoryWriter({ writeBatch: () => { throw new Error('sync'); } } as unknown as Store);
    await expect(writer.append('a', 'x')).rejects.toThrow('sync');
  });
});
