import type { HistoryBatch, Store } from '../../db/store.js';

/** Polls until `check` returns a truthy value (or throws after `ms`). */
export async function waitFor<T>(check: () => Promise<T | null | undefined | false> | T, ms = 5_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > until) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads a body to the end, keeping every chunk as it arrived and when. */
export async function readChunks(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const chunks: { bytes: Uint8Array; at: number }[] = [];
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push({ bytes: value, at: performance.now() });
  }
  const all = Buffer.concat(chunks.map((c) => c.bytes));
  return { chunks, bytes: all, text: all.toString('utf8') };
}

/** The content a client assembles from an SSE chat stream. */
export function streamedContent(sse: string): string {
  let out = '';
  for (const line of sse.split('\n')) {
    if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
    try {
      const chunk = JSON.parse(line.slice(6));
      out += chunk.choices?.[0]?.delta?.content ?? '';
    } catch {
      // malformed events are the test's business
    }
  }
  return out;
}

/** Mock answers carry a per-request id and a timestamp; everything else must match byte for byte. */
export const normalizeMock = (sse: string) =>
  sse.replace(/"id":"chatcmpl-mock-\d+"/g, '"id":"X"').replace(/"created":\d+/g, '"created":0');

/**
 * A store whose calls can be counted, slowed down or made to fail, to test the hot path. A
 * stream's writes reach the store in batches (writeBatch, app/streaming/history-writer.ts): each
 * batch also counts as one `appendContent` when it appends text and one `finishMessage` per
 * message it ends, so a test of one stream counts that stream's writes either way.
 */
export function instrumentedStore(
  inner: Store,
  hooks: { beforeAppendContent?: (n: number) => Promise<void> | void } = {},
): Store & { calls: Record<string, number> } {
  const calls: Record<string, number> = {};
  const count = (name: string, by = 1) => (calls[name] = (calls[name] ?? 0) + by);
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'calls') return calls;
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        count(prop as string);
        if (prop === 'appendContent') await hooks.beforeAppendContent?.(calls.appendContent!);
        if (prop === 'writeBatch') {
          const batch = args[0] as HistoryBatch;
          if (batch.messages.some((m) => m.append)) {
            const n = count('appendContent');
            await hooks.beforeAppendContent?.(n);
          }
          const ends = batch.messages.filter((m) => m.finish).length;
          if (ends) count('finishMessage', ends);
        }
        return value.apply(target, args);
      };
    },
  }) as Store & { calls: Record<string, number> };
}
