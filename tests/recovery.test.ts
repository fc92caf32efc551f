import { describe, expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects } from './helpers/dialects.js';
import { useProcessesOnOneDatabase } from './helpers/processes.js';
import type { ServerProcess } from './helpers/server-process.js';
import { newSession } from './helpers/app.js';
import { streamedContent, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();


describe.each(dialects)('crash recovery and shutdown on %s', (dialect) => {
  const processes = useProcessesOnOneDatabase(dialect, 'recovery', () => ({
    OPENAI_BASE_URL: mock.url,
    HISTORY_BATCH_FLUSH_MS: '20',
    STREAM_LEASE_MS: '1500',
    ORPHAN_SWEEP_INTERVAL_MS: '200',
  }));
  const server = processes.server;

  /** Starts a slow stream and reads until the client has some content. */
  async function startStream(s: ServerProcess, chunks = 400) {
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': newSession() },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'long answer please' }], stream: true, mock: { chunks, delay_ms: 10 } }),
    });
    expect(res.status).toBe(200);
    const conversationId = res.headers.get('x-conversation-id')!;
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (streamedContent(text).length < 40) text += decoder.decode((await reader.read()).value, { stream: true });
    const messageId = await waitFor(async () => (await processes.store.listMessages(conversationId, { afterSeq: 1, limit: 1 }))[0]?.id);
    return { conversationId, messageId, reader, decoder, text: () => text, more: async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return text;
        text += decoder.decode(value, { stream: true });
      }
    } };
  }

  it('closes a message left streaming by a killed server, keeping what was flushed', async () => {
    const first = await server();
    const stream = await startStream(first);
    // Let at least one batch reach the database, then kill without warning.
    await waitFor(async () => ((await processes.store.getMessage(stream.messageId))?.content.length ?? 0) > 0);
    await first.kill('SIGKILL');
    await stream.reader.cancel().catch(() => {});
    const orphan = (await processes.store.getMessage(stream.messageId))!;
    // Left streaming, with text flushed before the crash: what the restarted server must keep.
    expect(orphan.status).toBe('streaming');
    expect(orphan.content.length).toBeGreaterThan(0);

    const second = await server();
    const closed = await waitFor(async () => {
      const m = await processes.store.getMessage(stream.messageId);
      return m?.status !== 'streaming' ? m : null;
    }, 30_000);
    expect(closed).toMatchObject({ status: 'error', finishReason: 'interrupted' });
    // Every delta flushed before the crash is kept, and nothing was invented.
    expect(closed!.content.startsWith(orphan.content)).toBe(true);
    expect(mockAnswer({ chunks: 400 }).startsWith(closed!.content)).toBe(true);
    // It was the restarted server's sweep that closed it, and the server says so.
    const swept = await waitFor(async () => second.output().split('\n').find((l) => l.includes('"msg":"closed messages left streaming by a process that is gone')));
    expect(JSON.parse(swept).closed).toBeGreaterThanOrEqual(1);
    await second.kill();
  });

  it('never closes a live stream whose upstream is slow to send its first byte', async () => {
    const s = await server({ STREAM_LEASE_MS: '400' });
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': newSession() },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'slow' }], stream: true, mock: { chunks: 5, first_byte_delay_ms: 1500 } }),
    });
    const text = await res.text();
    expect(text).toContain('[DONE]');
    const [, answer] = await waitFor(async () => {
      const rows = await processes.store.listMessages(res.headers.get('x-conversation-id')!, { afterSeq: 0, limit: 10 });
      return rows[1]?.status !== 'streaming' ? rows : null;
    });
    expect(answer).toMatchObject({ status: 'final', content: mockAnswer({ chunks: 5 }) });
    await s.kill();
  });

  it('on SIGTERM lets short streams finish, interrupts long ones after the grace period, and exits 0', async () => {
    const s = await server({ SHUTDOWN_GRACE_MS: '400' });
    const long = await startStream(s, 1000);
    const shortRes = fetch(`${s.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': newSession() },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'short' }], stream: true, mock: { chunks: 10, delay_ms: 20 } }),
    });
    const short = await shortRes;
    const shortId = short.headers.get('x-conversation-id')!;
    const exited = s.kill('SIGTERM');
    const [shortText, longText] = await Promise.all([short.text(), long.more()]);
    expect(await exited).toBe(0);
    expect(shortText).toContain('[DONE]');
    expect(longText).toContain('"code":"interrupted"');
    const longMessage = (await processes.store.getMessage(long.messageId))!;
    expect(longMessage).toMatchObject({ status: 'error', finishReason: 'interrupted' });
    expect(longMessage.content).toBe(streamedContent(longText));
    const [, shortAnswer] = await processes.store.listMessages(shortId, { afterSeq: 0, limit: 10 });
    expect(shortAnswer).toMatchObject({ status: 'final', content: mockAnswer({ chunks: 10 }) });
    expect(s.output()).toContain('"msg":"stopped"');
  });

  // Several processes share one database only on Postgres.
  if (dialect === 'postgres') {
    it('never closes a stream another live process is writing; a restarted peer closes only its own orphans', async () => {
      const a = await server();
      const b = await server();
      const onB = await startStream(b, 300);
      const onA = await startStream(a, 1000);
      await waitFor(async () => ((await processes.store.getMessage(onA.messageId))?.content.length ?? 0) > 0);
      await a.kill('SIGKILL');
      await onA.reader.cancel().catch(() => {});
      const a2 = await server();
      const closedA = await waitFor(async () => {
        const m = await processes.store.getMessage(onA.messageId);
        return m?.status !== 'streaming' ? m : null;
      }, 30_000);
      expect(closedA).toMatchObject({ status: 'error', finishReason: 'interrupted' });
      // B's stream was never touched: it runs to the end and is recorded whole.
      const bText = await onB.more();
      expect(bText).toContain('[DONE]');
      const bMessage = await waitFor(async () => {
        const m = await processes.store.getMessage(onB.messageId);
        return m?.status === 'final' ? m : null;
      });
      expect(bMessage.content).toBe(mockAnswer({ chunks: 300 }));
      await Promise.all([a2.kill(), b.kill()]);
    });
  }
});
