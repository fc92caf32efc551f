import { describe, expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { newSession } from './helpers/app.js';
import { dialects } from './helpers/dialects.js';
import { useProcessesOnOneDatabase } from './helpers/processes.js';
import { useMockUpstream } from './helpers/mock.js';
import type { ServerProcess } from './helpers/server-process.js';
import { streamedContent, waitFor } from './helpers/streams.js';
import { contentOf, readUntil, sseEvents } from './helpers/watch.js';

/*
 * Live answers across server processes: a watcher and a cancel on the process that is not
 * producing (Postgres, LISTEN/NOTIFY), and a detached answer whose process is killed (both
 * dialects: the lease sweep closes it).
 */

const mock = useMockUpstream();
const FLUSH_MS = 100;

/** A stream read as it arrives: its text, and when its content first reached each length. */
function follow(body: ReadableStream<Uint8Array>, content: (text: string) => string) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const reachedAt: number[] = [];
  const state = { text: '', done: false };
  const finished = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      state.text += decoder.decode(value, { stream: true });
      const length = content(state.text).length;
      const now = performance.now();
      for (let l = reachedAt.length; l <= length; l++) reachedAt[l] = now;
    }
    state.done = true;
    return state.text;
  })();
  return { state, reachedAt, finished, reader };
}

/** How long after the producer's client each length of content reached the watcher (ms). */
function lags(producer: number[], watcher: number[], from: number): number[] {
  const out: number[] = [];
  for (let l = from; l < watcher.length && l < producer.length; l++) out.push(watcher[l]! - producer[l]!);
  return out;
}

const summary = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!);
  return { n: sorted.length, p50: at(0.5), p95: at(0.95), max: Math.round(sorted.at(-1)!) };
};

describe.each(dialects)('live answers across server processes on %s', (dialect) => {
  const processes = useProcessesOnOneDatabase(dialect, 'live', () => ({
    OPENAI_BASE_URL: mock.url,
    HISTORY_BATCH_FLUSH_MS: String(FLUSH_MS),
    RATE_LIMIT_MAX: '0',
    STREAM_LEASE_MS: '1500',
    ORPHAN_SWEEP_INTERVAL_MS: '200',
  }));
  const server = processes.server;

  const chat = (s: ServerProcess, session: string, mockOptions: object, headers: Record<string, string> = {}) =>
    fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session, ...headers },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'across processes' }], stream: true, mock: mockOptions }),
    });

  const answerOf = (conversationId: string) =>
    waitFor(async () => (await processes.store.listMessages(conversationId, { afterSeq: 1, limit: 1 }))[0]);

  const ended = (messageId: string, ms = 30_000) =>
    waitFor(async () => {
      const m = await processes.store.getMessage(messageId);
      return m && m.status !== 'streaming' ? m : null;
    }, ms);

  if (dialect === 'postgres') {
    it('a watcher on the other process follows the answer within HISTORY_BATCH_FLUSH_MS + 250 ms, one on the producing process within 100 ms, and both get exactly the text', async () => {
      const [a, b] = await Promise.all([server(), server()]);
      const session = newSession();
      const options = { chunks: 150, delay_ms: 20 };
      const res = await chat(a, session, options);
      const conversationId = res.headers.get('x-conversation-id')!;
      const producer = follow(res.body!, streamedContent);
      const answer = await answerOf(conversationId);
      // Both join once the answer is under way (some of it stored, some not yet).
      await waitFor(() => producer.reachedAt.length > 200);
      const path = `/v1/conversations/${conversationId}/messages/${answer.id}/stream`;
      const [remoteRes, localRes] = await Promise.all([fetch(`${b.url}${path}`, { headers: { 'x-session-id': session } }), fetch(`${a.url}${path}`, { headers: { 'x-session-id': session } })]);
      const joinedAt = producer.reachedAt.length;
      const remote = follow(remoteRes.body!, (t) => contentOf(sseEvents(t)));
      const local = follow(localRes.body!, (t) => contentOf(sseEvents(t)));
      const [, remoteText, localText] = await Promise.all([producer.finished, remote.finished, local.finished]);
      const full = mockAnswer(options);
      expect(streamedContent(producer.state.text)).toBe(full);
      expect(contentOf(sseEvents(remoteText))).toBe(full);
      expect(contentOf(sseEvents(localText))).toBe(full);
      expect(sseEvents(remoteText).at(-1)!.data).toBe('[DONE]');

      // Text that came after the watchers joined: how much later than the producer's own client each saw it.
      const remoteLag = summary(lags(producer.reachedAt, remote.reachedAt, joinedAt + 50));
      const localLag = summary(lags(producer.reachedAt, local.reachedAt, joinedAt + 50));
      console.info(`watcher lag behind the producer's client, ms (HISTORY_BATCH_FLUSH_MS=${FLUSH_MS}): other process ${JSON.stringify(remoteLag)}, producing process ${JSON.stringify(localLag)}`);
      expect(remoteLag.n).toBeGreaterThan(500);
      // The bounds hold for 95% of the text; the slowest few characters are given one more
      // scheduling hiccup of room. Measured at load average 8-10 on 2 shared cores (the server
      // processes, Postgres and the test runner on them): other process p50 73-91, p95 124-256,
      // max 149-345 ms; producing process p50 1, p95 4-10, max 6-82 ms.
      expect(remoteLag.p95).toBeLessThanOrEqual(FLUSH_MS + 250);
      expect(remoteLag.max).toBeLessThanOrEqual(FLUSH_MS + 250 + 250);
      expect(localLag.p95).toBeLessThanOrEqual(100);
      expect(localLag.max).toBeLessThanOrEqual(100 + 250);
      await Promise.all([a.kill(), b.kill()]);
    });

    it('a cancel on the other process stops the upstream request where it runs, and every reader sees the same end', async () => {
      // The cancel waits up to STREAM_LEASE_MS for the end to be recorded: a fresh process's
      // first token estimate (loading the tokenizer) alone can take a second on a busy machine.
      const [a, b] = await Promise.all([server({ STREAM_LEASE_MS: '15000' }), server({ STREAM_LEASE_MS: '15000' })]);
      const session = newSession();
      const before = mock.traffic.unfinished;
      const res = await chat(a, session, { chunks: 3000, delay_ms: 5 });
      const conversationId = res.headers.get('x-conversation-id')!;
      const producer = follow(res.body!, streamedContent);
      const answer = await answerOf(conversationId);
      await waitFor(() => producer.reachedAt.length > 100);
      const path = `/v1/conversations/${conversationId}/messages/${answer.id}`;
      const watcher = follow((await fetch(`${b.url}${path}/stream`, { headers: { 'x-session-id': session } })).body!, (t) => contentOf(sseEvents(t)));
      const askedAt = performance.now();
      const cancelled = await fetch(`${b.url}${path}/cancel`, { method: 'POST', headers: { 'x-session-id': session } });
      const answeredIn = performance.now() - askedAt;
      expect(cancelled.status).toBe(200);
      const message = await cancelled.json();
      expect(message).toMatchObject({ id: answer.id, status: 'error', finish_reason: 'cancelled' });
      // The stop itself reaches the producer at once (NOTIFY); the answer waits for the end to be recorded.
      console.info(`cancel on the other process answered in ${Math.round(answeredIn)} ms`);
      await waitFor(() => mock.traffic.unfinished > before);
      const [producerText, watcherText] = await Promise.all([producer.finished, watcher.finished]);
      expect(sseEvents(producerText).at(-1)!.json.error.code).toBe('cancelled');
      expect(streamedContent(producerText)).toBe(message.content);
      expect(contentOf(sseEvents(watcherText))).toBe(message.content);
      expect(sseEvents(watcherText).at(-1)!.data).toBe(sseEvents(producerText).at(-1)!.data);
      expect(mockAnswer({ chunks: 3000 }).startsWith(message.content)).toBe(true);
      await Promise.all([a.kill(), b.kill()]);
    });
  }

  it('the lease sweep still closes a detached answer whose process was killed', async () => {
    const a = await server();
    const session = newSession();
    const res = await chat(a, session, { chunks: 3000, delay_ms: 5 }, { 'x-on-disconnect': 'continue' });
    const conversationId = res.headers.get('x-conversation-id')!;
    const reader = res.body!.getReader();
    await readUntil(reader, (t) => streamedContent(t).length > 40);
    await reader.cancel();
    const answer = await answerOf(conversationId);
    // The client is gone, and the answer still grows in the database.
    const at = (await processes.store.getMessage(answer.id))!.content.length;
    await waitFor(async () => (await processes.store.getMessage(answer.id))!.content.length > at + 200);
    await a.kill('SIGKILL');
    const orphan = (await processes.store.getMessage(answer.id))!;
    expect(orphan.status).toBe('streaming');
    // Another process (on SQLite, the next one on the file) closes it once its lease runs out.
    const b = await server();
    const closed = await ended(answer.id);
    expect(closed).toMatchObject({ status: 'error', finishReason: 'interrupted' });
    expect(closed.content.startsWith(orphan.content)).toBe(true);
    expect(mockAnswer({ chunks: 3000 }).startsWith(closed.content)).toBe(true);
    await b.kill();
  });
});
