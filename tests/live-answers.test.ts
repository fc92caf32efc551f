import OpenAI from 'openai';
import { ChatCompletionStream } from 'openai/lib/ChatCompletionStream';
import { Stream } from 'openai/streaming';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../app/app.js';
import { createLogger } from '../app/logger.js';
import { startServer, type RunningServer } from '../app/server.js';
import { hashSessionId } from '../app/session-ids.js';
import { InFlight } from '../app/streaming/in-flight.js';
import type { Store } from '../db/store.js';
import { MOCK_TOOL_CALL, mockAnswer, type MockOptions } from '../mock/upstream.js';
import { call, newSession, testConfig } from './helpers/app.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { startScriptedUpstream } from './helpers/scripted-upstream.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';
import { signedInUser, type TestUser } from './helpers/users.js';
import { contentOf, readUntil, readWatch, sseEvents } from './helpers/watch.js';

/*
 * Issue 13 in one process: an answer that goes on when its client leaves (x-on-disconnect),
 * watching and resuming it (GET …/messages/:message_id/stream), stopping it (POST …/cancel),
 * and finding it after a reload (streaming_message_id). Across processes: live-answers-processes.
 */

const mock = useMockUpstream();
const silent = createLogger('silent');

/** An emoji-rich answer text: surrogate pairs at many offsets, and 2- and 3-byte characters. */
const EMOJI_TEXT = 'a🙂b🙂🙂c é 漢 🚀x🙂🙂🙂 end';

describe.each(dialects)('live answers on %s', (dialect) => {
  let db: TestStore;
  let store: Store;
  beforeAll(async () => {
    db = await testStore(dialect);
    store = db.store;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  /** An app on the mock with its InFlight, so tests can see slots, live answers and watchers. */
  function liveApp(env: Record<string, string> = {}) {
    const config = testConfig({ OPENAI_BASE_URL: mock.url, HISTORY_BATCH_FLUSH_MS: '20', ...env });
    const inFlight = new InFlight(store, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: silent });
    return { app: createApp({ config, store, logger: silent, inFlight }), inFlight };
  }
  type Live = ReturnType<typeof liveApp>;

  const chat = (live: Live, session: string, options: { mock?: MockOptions; headers?: Record<string, string>; conversationId?: string; signal?: AbortSignal } = {}) =>
    live.app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session, ...options.headers },
      body: JSON.stringify({
        messages: [{ role: 'user', content: 'tell me' }],
        stream: true,
        mock: options.mock ?? {},
        ...(options.conversationId && { conversation_id: options.conversationId }),
      }),
      signal: options.signal,
    });

  /** Starts an answer and reads until the client has `chars` of it: the ids, and the reader. */
  async function started(live: Live, session: string, mockOptions: MockOptions, { chars = 20, headers = {} }: { chars?: number; headers?: Record<string, string> } = {}) {
    const res = await chat(live, session, { mock: mockOptions, headers });
    expect(res.status).toBe(200);
    const conversationId = res.headers.get('x-conversation-id')!;
    const reader = res.body!.getReader();
    const seen = await readUntil(reader, (t) => streamedContent(t).length >= chars);
    const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
    return { conversationId, messageId: answer!.id, reader, seen: seen.text };
  }

  const watch = (live: Live, session: string | Record<string, string>, conversationId: string, messageId: string, { offset, lastEventId }: { offset?: number; lastEventId?: number } = {}) => {
    const headers: Record<string, string> = typeof session === 'string' ? { 'x-session-id': session } : { ...session };
    if (lastEventId !== undefined) headers['last-event-id'] = String(lastEventId);
    const query = offset === undefined ? '' : `?offset=${offset}`;
    return live.app.request(`/v1/conversations/${conversationId}/messages/${messageId}/stream${query}`, { headers });
  };

  const ended = (messageId: string) =>
    waitFor(async () => {
      const m = await store.getMessage(messageId);
      return m && m.status !== 'streaming' ? m : null;
    }, 20_000);

  describe('x-on-disconnect', () => {
    it('continue: the client leaves mid-stream, the answer is recorded to its end, holding its slot, and the header never goes upstream', async () => {
      const live = liveApp();
      const options = { chunks: 40, delay_ms: 10 };
      const { messageId, reader } = await started(live, newSession(), options, { headers: { 'x-on-disconnect': 'Continue' } });
      await reader.cancel();
      // Gone, yet still generating: the slot stays taken and the text keeps growing.
      expect(live.inFlight.slots.active).toBe(1);
      const answer = await ended(messageId);
      expect(answer).toMatchObject({ status: 'final', finishReason: 'stop', content: mockAnswer(options) });
      await waitFor(() => live.inFlight.slots.active === 0);
      expect(mock.requests.at(-1)!.headers['x-on-disconnect']).toBeUndefined();
      await waitFor(() => live.inFlight.answers.size === 0);
    });

    it('STREAM_ON_DISCONNECT=continue is the default a request can override with abort', async () => {
      const live = liveApp({ STREAM_ON_DISCONNECT: 'continue' });
      const options = { chunks: 40, delay_ms: 10 };
      const kept = await started(live, newSession(), options);
      await kept.reader.cancel();
      const aborted = await started(live, newSession(), { chunks: 400, delay_ms: 10 }, { headers: { 'x-on-disconnect': 'abort' } });
      await aborted.reader.cancel();
      expect(await ended(kept.messageId)).toMatchObject({ status: 'final', content: mockAnswer(options) });
      const cut = await ended(aborted.messageId);
      expect(cut).toMatchObject({ status: 'error', finishReason: 'client_abort' });
      expect(mockAnswer({ chunks: 400 }).startsWith(cut.content)).toBe(true);
      expect(cut.content.length).toBeLessThan(mockAnswer({ chunks: 400 }).length);
    });

    it('continue lasts at most STREAM_DETACHED_MAX_MS after the client left, then the upstream is stopped: error / client_abort', async () => {
      const live = liveApp({ STREAM_DETACHED_MAX_MS: '300' });
      const before = mock.traffic.unfinished;
      const { messageId, reader } = await started(live, newSession(), { chunks: 2000, delay_ms: 5 }, { headers: { 'x-on-disconnect': 'continue' } });
      await reader.cancel();
      const leftAt = Date.now();
      const answer = await ended(messageId);
      expect(Date.now() - leftAt).toBeGreaterThanOrEqual(290);
      expect(answer).toMatchObject({ status: 'error', finishReason: 'client_abort' });
      expect(mockAnswer({ chunks: 2000 }).startsWith(answer.content)).toBe(true);
      await waitFor(() => mock.traffic.unfinished > before);
      await waitFor(() => live.inFlight.slots.active === 0);
    });

    it('continue also holds when the client leaves before the upstream answers', async () => {
      const live = liveApp();
      const controller = new AbortController();
      const session = newSession();
      const pending = chat(live, session, { mock: { chunks: 10, first_byte_delay_ms: 300 }, headers: { 'x-on-disconnect': 'continue' }, signal: controller.signal });
      await waitFor(() => mock.requests.length > 0);
      controller.abort();
      await Promise.resolve(pending).catch(() => null);
      const list = await waitFor(async () => (await call(live.app, 'GET', '/v1/conversations', { session })).json.items[0]);
      const [, answer] = await store.listMessages(list.id, { afterSeq: 0, limit: 2 });
      expect(await ended(answer!.id)).toMatchObject({ status: 'final', content: mockAnswer({ chunks: 10 }) });
    });

    it('a shutdown still interrupts a detached answer', async () => {
      const live = liveApp();
      const { messageId, reader } = await started(live, newSession(), { chunks: 5000, delay_ms: 5 }, { headers: { 'x-on-disconnect': 'continue' } });
      await reader.cancel();
      await live.inFlight.shutdown(0);
      expect(await store.getMessage(messageId)).toMatchObject({ status: 'error', finishReason: 'interrupted' });
      expect(live.inFlight.slots.active).toBe(0);
    });

    it('refuses a value it does not know with 400, before anything is recorded or sent', async () => {
      const live = liveApp();
      const session = newSession();
      const res = await chat(live, session, { headers: { 'x-on-disconnect': 'later' } });
      expect(res.status).toBe(400);
      expect((await res.json()).error).toMatchObject({ type: 'invalid_request_error', param: 'x-on-disconnect', message: expect.stringContaining('abort or continue') });
      expect(mock.requests).toHaveLength(0);
      expect((await call(live.app, 'GET', '/v1/conversations', { session })).json.items).toEqual([]);
    });
  });

  describe('watching an answer', () => {
    it('a watcher that joins halfway receives exactly the full text, then [DONE]; streaming_message_id names the answer meanwhile', async () => {
      const live = liveApp();
      const session = newSession();
      const options = { chunks: 60, delay_ms: 10 };
      const producer = await started(live, session, options, { chars: 100 });
      const got = (await call(live.app, 'GET', `/v1/conversations/${producer.conversationId}`, { session })).json;
      expect(got.streaming_message_id).toBe(producer.messageId);
      const listed = (await call(live.app, 'GET', '/v1/conversations', { session })).json.items[0];
      expect(listed).toMatchObject({ id: producer.conversationId, streaming_message_id: producer.messageId });

      const res = await watch(live, session, producer.conversationId, producer.messageId);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const [watched, rest] = await Promise.all([readWatch(res), readUntil(producer.reader)]);
      const full = mockAnswer(options);
      expect(streamedContent(producer.seen + rest.text)).toBe(full);
      expect(watched.content).toBe(full);
      // Each event's id is the content delivered so far; the first says who speaks, the end is [DONE].
      let delivered = 0;
      for (const event of watched.events) {
        delivered += event.json?.choices?.[0]?.delta?.content?.length ?? 0;
        expect(event.id).toBe(delivered);
      }
      expect(watched.events[0]!.json.choices[0].delta.role).toBe('assistant');
      expect(watched.events[0]!.json).toMatchObject({ object: 'chat.completion.chunk', id: `chatcmpl-${producer.messageId}` });
      expect(watched.events.at(-2)!.json.choices[0]).toMatchObject({ delta: {}, finish_reason: 'stop' });
      expect(watched.events.at(-1)!.data).toBe('[DONE]');
      expect((await call(live.app, 'GET', `/v1/conversations/${producer.conversationId}`, { session })).json.streaming_message_id).toBeNull();
      await waitFor(() => live.inFlight.watchers.of(producer.messageId).length === 0);
    });

    it('a finished answer replays whole; Last-Event-ID (or ?offset) at every offset gives exactly the characters after it', async () => {
      const live = liveApp();
      const session = newSession();
      const options = { text: EMOJI_TEXT, chunks: 7 };
      const res = await chat(live, session, { mock: options });
      await readChunks(res.body!);
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      await ended(answer!.id);
      const whole = await readWatch(await watch(live, session, conversationId, answer!.id));
      expect(whole.content).toBe(EMOJI_TEXT);
      expect(whole.events.at(-1)!.data).toBe('[DONE]');

      // Every UTF-16 offset, those between the two halves of a pair included: the client's
      // prefix plus what it gets is the text, so nothing is missing and nothing comes twice.
      for (let n = 0; n <= EMOJI_TEXT.length + 2; n++) {
        const byHeader = await readWatch(await watch(live, session, conversationId, answer!.id, { lastEventId: n }));
        expect(EMOJI_TEXT.slice(0, n) + byHeader.content, `Last-Event-ID: ${n}`).toBe(EMOJI_TEXT);
        expect(byHeader.events.at(-1)!.data).toBe('[DONE]');
        if (n % 5 === 0) {
          const byQuery = await readWatch(await watch(live, session, conversationId, answer!.id, { offset: n }));
          expect(byQuery.content, `?offset=${n}`).toBe(byHeader.content);
        }
      }
      // A reconnecting EventSource's header is newer than the ?offset its URL still carries.
      const both = await readWatch(await watch(live, session, conversationId, answer!.id, { offset: 0, lastEventId: 3 }));
      expect(both.content).toBe(EMOJI_TEXT.slice(3));
      expect(both.events[0]!.json.choices[0].delta.role).toBeUndefined();
    });

    it('a client that drops and reconnects with its Last-Event-ID over and over, while the answer streams, misses nothing and repeats nothing', async () => {
      const live = liveApp();
      const session = newSession();
      const options = { text: EMOJI_TEXT.repeat(12), chunks: 90, delay_ms: 8 };
      const producer = await started(live, session, options, { chars: 1 });
      const rest = readUntil(producer.reader);
      let text = '';
      let lastId = 0;
      let connections = 0;
      for (let done = false; !done; ) {
        connections++;
        const res = await watch(live, session, producer.conversationId, producer.messageId, { lastEventId: lastId });
        expect(res.status).toBe(200);
        const reader = res.body!.getReader();
        // A few events, then the connection drops (mid-event, as often as not).
        const got = await readUntil(reader, (t) => sseEvents(t).length >= 3);
        await reader.cancel();
        const events = sseEvents(got.text);
        for (const event of events) {
          if (event.data === '[DONE]') done = true;
          text += event.json?.choices?.[0]?.delta?.content ?? '';
          if (event.id !== null) lastId = event.id;
        }
        expect(lastId).toBe(text.length);
      }
      await rest;
      expect(text).toBe(options.text);
      expect(connections).toBeGreaterThan(3);
    });

    it('watchers read the text exactly as stored: a pair split across two deltas stays whole, U+0000 and a lone surrogate become U+FFFD in place', async () => {
      const event = (delta: object, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      // The emoji's halves come in two events (JSON escapes them), a pause between the two.
      const head = event({ role: 'assistant', content: '' }) + event({ content: 'x\ud83d' });
      const body = Buffer.from(head + event({ content: '\ude42y\u0000' }) + event({ content: '\udc00z' }) + event({}, 'stop') + 'data: [DONE]\n\n');
      const scripted = await startScriptedUpstream(() => ({ contentType: 'text/event-stream', body, at: Buffer.byteLength(head), then: 'rest', pauseMs: 400 }));
      try {
        const live = liveApp({ OPENAI_BASE_URL: scripted.url });
        const session = newSession();
        const res = await chat(live, session);
        const conversationId = res.headers.get('x-conversation-id')!;
        const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
        // Joins while the first half of the emoji is all there is: it is held back, not sent alone.
        const during = await watch(live, session, conversationId, answer!.id);
        await readChunks(res.body!);
        const stored = (await ended(answer!.id)).content;
        expect(stored).toBe('x🙂y\ufffd\ufffdz');
        expect((await readWatch(during)).content).toBe(stored);
        expect((await readWatch(await watch(live, session, conversationId, answer!.id))).content).toBe(stored);
        for (let n = 0; n <= stored.length; n++) {
          expect(stored.slice(0, n) + (await readWatch(await watch(live, session, conversationId, answer!.id, { lastEventId: n }))).content).toBe(stored);
        }
      } finally {
        await scripted.close();
      }
    });

    it('replays tool-call deltas and finish_reason, which the SDK assembles', async () => {
      const live = liveApp();
      const session = newSession();
      const res = await chat(live, session, { mock: { tool_calls: true, chunks: 6, delay_ms: 20 } });
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      // One watcher while it streams (tool calls grow live), one once it is over (from the database).
      const during = watch(live, session, conversationId, answer!.id);
      await readChunks(res.body!);
      await ended(answer!.id);
      for (const watched of [await during, await watch(live, session, conversationId, answer!.id)]) {
        const completion = await ChatCompletionStream.fromReadableStream(sdkStream(watched)).finalChatCompletion();
        expect(completion.choices[0]!.finish_reason).toBe('tool_calls');
        expect(completion.choices[0]!.message.tool_calls).toEqual([
          { id: MOCK_TOOL_CALL.id, type: 'function', function: { name: MOCK_TOOL_CALL.name, arguments: MOCK_TOOL_CALL.arguments } },
        ]);
      }
    });

    it('an answer that ended in error ends with the same SSE error event the proxy sent, and no [DONE]', async () => {
      const live = liveApp();
      const session = newSession();
      const res = await chat(live, session, { mock: { chunks: 10, fault: 'drop', drop_after: 4 } });
      const sent = (await readChunks(res.body!)).text;
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      expect(await ended(answer!.id)).toMatchObject({ status: 'error', finishReason: 'upstream_error' });
      const watched = await readWatch(await watch(live, session, conversationId, answer!.id));
      expect(watched.content).toBe(streamedContent(sent));
      const proxyError = sseEvents(sent).at(-1)!;
      expect(watched.events.at(-1)!.data).toBe(proxyError.data);
      expect(watched.text).not.toContain('[DONE]');
    });

    it('answers 404 for an answer that is not there, and 400 for an offset that is not a count', async () => {
      const live = liveApp();
      const session = newSession();
      const res = await chat(live, session, { mock: { chunks: 2 } });
      await readChunks(res.body!);
      const conversationId = res.headers.get('x-conversation-id')!;
      const [question, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      const other = await chat(live, session, { mock: { chunks: 2 } });
      await readChunks(other.body!);
      const otherId = other.headers.get('x-conversation-id')!;
      for (const [cid, mid] of [
        [conversationId, question!.id],
        [conversationId, crypto.randomUUID()],
        [otherId, answer!.id],
      ]) {
        const got = await watch(live, session, cid!, mid!);
        expect(got.status).toBe(404);
        expect((await got.json()).error.param).toBe('message_id');
        expect((await call(live.app, 'POST', `/v1/conversations/${cid}/messages/${mid}/cancel`, { session })).status).toBe(404);
      }
      expect((await watch(live, newSession(), conversationId, answer!.id)).status).toBe(404);
      for (const bad of ['-1', 'abc', '1.5']) {
        const got = await live.app.request(`/v1/conversations/${conversationId}/messages/${answer!.id}/stream`, { headers: { 'x-session-id': session, 'last-event-id': bad } });
        expect(got.status).toBe(400);
        expect((await got.json()).error.param).toBe('last-event-id');
      }
      expect((await watch(live, session, conversationId, answer!.id, { offset: -2 })).status).toBe(400);
    });

    it(`takes STREAM_MAX_WATCHERS (32) watchers of one answer and refuses the 33rd with 429, until one leaves`, async () => {
      const live = liveApp();
      const session = newSession();
      const producer = await started(live, session, { fault: 'hang_after_first' }, { chars: 1 });
      const watchers = await Promise.all(Array.from({ length: 32 }, () => watch(live, session, producer.conversationId, producer.messageId)));
      expect(watchers.map((r) => r.status)).toEqual(Array(32).fill(200));
      const refused = await watch(live, session, producer.conversationId, producer.messageId);
      expect(refused.status).toBe(429);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect((await refused.json()).error).toMatchObject({ type: 'rate_limit_error', code: 'too_many_watchers', message: expect.stringContaining('STREAM_MAX_WATCHERS') });
      await watchers[0]!.body!.cancel();
      await waitFor(() => live.inFlight.watchers.of(producer.messageId).length === 31);
      const admitted = await watch(live, session, producer.conversationId, producer.messageId);
      expect(admitted.status).toBe(200);
      await Promise.all([...watchers.slice(1), admitted].map((r) => r.body!.cancel()));
      await producer.reader.cancel();
      await waitFor(() => live.inFlight.watchers.of(producer.messageId).length === 0);
    });

    it('a watcher that never reads neither holds up the producer nor grows: it holds one event, and reads the rest from the store later', async () => {
      const live = liveApp();
      const session = newSession();
      const options = { chunks: 2000, chunk_size: 64 };
      const res = await chat(live, session, { mock: options });
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      const idle = await watch(live, session, conversationId, answer!.id);
      expect(idle.status).toBe(200);
      // The producer's client reads everything (128 000 characters) while the watcher reads nothing.
      expect(streamedContent((await readChunks(res.body!)).text)).toBe(mockAnswer(options));
      expect(await ended(answer!.id)).toMatchObject({ status: 'final' });
      const [idleWatch] = live.inFlight.watchers.of(answer!.id);
      // At most one window (4096 characters, at most 4 bytes each in UTF-8, plus the event around it).
      expect(idleWatch!.sentBytes).toBeLessThan(4096 * 4 + 1024);
      expect(idleWatch!.delivered).toBeLessThanOrEqual(4096);
      expect((await readWatch(idle)).content).toBe(mockAnswer(options));
    });
  });

  describe('stopping an answer', () => {
    it('the owner cancels: the upstream request is aborted, the client gets the error event after its last delta, and error / cancelled is recorded with everything it got', async () => {
      const live = liveApp();
      const session = newSession();
      const before = mock.traffic.unfinished;
      const producer = await started(live, session, { chunks: 2000, delay_ms: 5 });
      const watcher = await watch(live, session, producer.conversationId, producer.messageId);
      // The client reads on (its stream ends only once it has taken every event before the end).
      const rest = readUntil(producer.reader);
      const cancelled = await call(live.app, 'POST', `/v1/conversations/${producer.conversationId}/messages/${producer.messageId}/cancel`, { session });
      expect(cancelled.status).toBe(200);
      expect(cancelled.json).toMatchObject({ id: producer.messageId, object: 'conversation.message', status: 'error', finish_reason: 'cancelled' });
      const client = producer.seen + (await rest).text;
      expect(sseEvents(client).at(-1)!.json.error).toMatchObject({ code: 'cancelled' });
      expect(cancelled.json.content).toBe(streamedContent(client));
      expect(mockAnswer({ chunks: 2000 }).startsWith(cancelled.json.content)).toBe(true);
      await waitFor(() => mock.traffic.unfinished > before);
      const watched = await readWatch(watcher);
      expect(watched.content).toBe(cancelled.json.content);
      expect(watched.events.at(-1)!.json.error).toMatchObject({ code: 'cancelled' });
      await waitFor(() => live.inFlight.slots.active === 0);

      // Again, or once it has ended: 200, and nothing changes.
      const again = await call(live.app, 'POST', `/v1/conversations/${producer.conversationId}/messages/${producer.messageId}/cancel`, { session });
      expect(again).toMatchObject({ status: 200, json: { status: 'error', finish_reason: 'cancelled', updated_at: cancelled.json.updated_at } });
    });

    it('cancelling an answer that already ended is a 200 that changes nothing', async () => {
      const live = liveApp();
      const session = newSession();
      const res = await chat(live, session, { mock: { chunks: 3 } });
      await readChunks(res.body!);
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
      const done = await ended(answer!.id);
      const got = await call(live.app, 'POST', `/v1/conversations/${conversationId}/messages/${answer!.id}/cancel`, { session });
      expect(got).toMatchObject({ status: 200, json: { status: 'final', content: mockAnswer({ chunks: 3 }) } });
      expect(await store.getMessage(answer!.id)).toEqual(done);
    });

    it('a cancel before the upstream answers stops the request: the client gets 409 cancelled', async () => {
      const live = liveApp();
      const session = newSession();
      const pending = chat(live, session, { mock: { chunks: 3, first_byte_delay_ms: 10_000 } });
      const conversation = await waitFor(async () => (await call(live.app, 'GET', '/v1/conversations', { session })).json.items[0]);
      expect(conversation.streaming_message_id).toEqual(expect.any(String));
      const cancelled = await call(live.app, 'POST', `/v1/conversations/${conversation.id}/messages/${conversation.streaming_message_id}/cancel`, { session });
      expect(cancelled).toMatchObject({ status: 200, json: { status: 'error', finish_reason: 'cancelled', content: '' } });
      const res = await pending;
      expect(res.status).toBe(409);
      expect((await res.json()).error).toMatchObject({ code: 'cancelled' });
    });

    it('a cancel request the bus never delivered is found by the lease heartbeat', async () => {
      const live = liveApp();
      const session = newSession();
      const producer = await started(live, session, { chunks: 2000, delay_ms: 5 });
      const rest = readUntil(producer.reader);
      // Asked through the database only, as a lost notification would leave it.
      await store.requestCancel(producer.messageId, new Date());
      await live.inFlight.heartbeat();
      expect(await ended(producer.messageId)).toMatchObject({ status: 'error', finishReason: 'cancelled' });
      expect(sseEvents((await rest).text).at(-1)!.json.error.code).toBe('cancelled');
    });

    it('an answer whose writer is gone is closed by the cancel itself', async () => {
      const live = liveApp();
      const session = newSession();
      const created = (await call(live.app, 'POST', '/v1/conversations', { session, body: {} })).json;
      const orphanId = crypto.randomUUID();
      await store.appendMessages({ sessionId: hashSessionId(session), userId: null }, created.id, [
        { id: orphanId, role: 'assistant', status: 'streaming', content: '', lease: { holder: 'gone', expiresAt: new Date(Date.now() - 1000) } },
      ], { maxMessages: 100 });
      await store.appendContent(orphanId, 'half an ans');
      const got = await call(live.app, 'POST', `/v1/conversations/${created.id}/messages/${orphanId}/cancel`, { session });
      expect(got).toMatchObject({ status: 200, json: { status: 'error', finish_reason: 'cancelled', content: 'half an ans' } });
    });
  });

  describe('who may watch and cancel', () => {
    let owner: TestUser;
    let editor: TestUser;
    let viewer: TestUser;
    let stranger: TestUser;
    beforeAll(async () => {
      [owner, editor, viewer, stranger] = (await Promise.all(['owner', 'editor', 'viewer', 'stranger'].map((n) => signedInUser(store, n)))) as [TestUser, TestUser, TestUser, TestUser];
    });

    it('readers watch, writers cancel; a viewer gets 403 for cancel, anyone else 404 for both', async () => {
      const live = liveApp();
      const started = await live.app.request('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...owner.auth },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'shared' }], stream: true, mock: { chunks: 3000, delay_ms: 5 } }),
      });
      const conversationId = started.headers.get('x-conversation-id')!;
      const reader = started.body!.getReader();
      await reader.read();
      const rest = readUntil(reader);
      for (const [who, role] of [
        [editor, 'editor'],
        [viewer, 'viewer'],
      ] as const) {
        expect((await call(live.app, 'PUT', `/v1/conversations/${conversationId}/shares/${who.user.id}`, { headers: owner.auth, body: { role } })).status).toBe(200);
      }
      const messageId = (await call(live.app, 'GET', `/v1/conversations/${conversationId}`, { headers: viewer.auth })).json.streaming_message_id;
      expect(messageId).toEqual(expect.any(String));
      const path = `/v1/conversations/${conversationId}/messages/${messageId}`;

      for (const who of [owner, editor, viewer]) {
        const res = await watch(live, who.auth, conversationId, messageId);
        expect(res.status).toBe(200);
        await res.body!.cancel();
      }
      expect((await watch(live, stranger.auth, conversationId, messageId)).status).toBe(404);
      expect((await call(live.app, 'POST', `${path}/cancel`, { headers: stranger.auth })).status).toBe(404);
      const denied = await call(live.app, 'POST', `${path}/cancel`, { headers: viewer.auth });
      expect(denied.status).toBe(403);
      expect(denied.json.error.code).toBe('permission_denied');
      expect((await store.getMessage(messageId))!.status).toBe('streaming');
      const byEditor = await call(live.app, 'POST', `${path}/cancel`, { headers: editor.auth });
      expect(byEditor).toMatchObject({ status: 200, json: { status: 'error', finish_reason: 'cancelled' } });
      await rest;
    });
  });

  describe('through a listening server', () => {
    let server: RunningServer;
    let client: OpenAI;
    const session = newSession();
    beforeAll(async () => {
      const config = testConfig({ OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1', HISTORY_BATCH_FLUSH_MS: '20' });
      server = await startServer(config, { store, logger: silent });
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', defaultHeaders: { 'x-session-id': session } });
    });
    afterAll(async () => {
      await server?.close();
    });

    it('the openai SDK reads a resumed stream, live and finished, and its own disconnect leaves a continue answer running', async () => {
      const options = { text: EMOJI_TEXT.repeat(20), chunks: 80, delay_ms: 10 };
      const body = { model: 'mock-model', messages: [{ role: 'user' as const, content: 'resume me' }], stream: true as const, mock: options };
      const first = await client.chat.completions.create(body, { headers: { 'x-on-disconnect': 'continue' } });
      let seen = '';
      const iterator = first[Symbol.asyncIterator]();
      while (seen.length < 40) seen += (await iterator.next()).value.choices[0]?.delta?.content ?? '';
      // The SDK drops its connection; a reload reads streaming_message_id and resumes from what it had.
      first.controller.abort();
      const conversation = (await client.get('/conversations', {}) as { items: { id: string; streaming_message_id: string | null }[] }).items[0]!;
      expect(conversation.streaming_message_id).toEqual(expect.any(String));
      const path = `/conversations/${conversation.id}/messages/${conversation.streaming_message_id}/stream`;
      const resumed = await client.get<Chunks>(path, { stream: true, headers: { 'last-event-id': String(seen.length) } });
      let rest = '';
      for await (const chunk of resumed) rest += chunk.choices[0]?.delta?.content ?? '';
      expect(seen + rest).toBe(options.text);

      const again = await client.get<Chunks>(path, { stream: true });
      let whole = '';
      for await (const chunk of again) whole += chunk.choices[0]?.delta?.content ?? '';
      expect(whole).toBe(options.text);
    });

    it('the SDK raises the error event of an answer that was cancelled', async () => {
      const res = await fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-session-id': session },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'stop me' }], stream: true, mock: { chunks: 3000, delay_ms: 5 } }),
      });
      const conversationId = res.headers.get('x-conversation-id')!;
      const [, answer] = await waitFor(async () => {
        const rows = await store.listMessages(conversationId, { afterSeq: 0, limit: 2 });
        return rows.length === 2 ? rows : null;
      });
      const path = `/conversations/${conversationId}/messages/${answer!.id}`;
      const watching = await client.get<Chunks>(`${path}/stream`, { stream: true });
      expect((await client.post<{ status: string }>(`${path}/cancel`)).status).toBe('error');
      await expect(
        (async () => {
          for await (const _ of watching);
        })(),
      ).rejects.toMatchObject({ code: 'cancelled' });
      await res.body!.cancel();
    });
  });
});

type Chunks = Stream<OpenAI.ChatCompletionChunk>;

/** A watch response read by the SDK's SSE reader, as the JSON lines ChatCompletionStream assembles. */
const sdkStream = (res: Response) => Stream.fromSSEResponse(res, new AbortController()).toReadableStream();
