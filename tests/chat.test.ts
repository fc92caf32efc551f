import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../app/logger.js';
import { startServer, type RunningServer } from '../app/server.js';
import type { Store } from '../db/store.js';
import { mockAnswer, type MockOptions } from '../mock/upstream.js';
import { call, newSession, testApp, testConfig, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { instrumentedStore, normalizeMock, readChunks, streamedContent, waitFor } from './helpers/streams.js';

const SERVER_KEY = 'sk-server-key-for-tests';
const mock = useMockUpstream();

const upstreamEnv = (extra: Record<string, string> = {}) => ({ OPENAI_BASE_URL: mock.url, OPENAI_API_KEY: SERVER_KEY, ...extra });
const ask = (content = 'Hello', extra: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content }], ...extra });

/** POST /v1/chat/completions through the app, returning the raw response for streaming reads. */
function post(app: TestApp, body: unknown, session: string, headers: Record<string, string> = {}) {
  return app.request('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': session, ...headers },
    body: JSON.stringify(body),
  });
}

/** The same request sent straight to the mock, as the proxy forwards it (default model filled in). */
async function direct(body: Record<string, unknown>): Promise<string> {
  const { conversation_id: _, ...forwarded }: Record<string, unknown> = { model: 'gpt-4.1-mini', ...body };
  const res = await fetch(`${mock.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(forwarded) });
  return res.text();
}

describe.each(dialects)('chat proxy on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, upstreamEnv());
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const conversation = (id: string, session: string) => call(app, 'GET', `/v1/conversations/${id}?limit=200`, { session });
  const settled = (id: string, session: string) =>
    waitFor(async () => {
      const res = await conversation(id, session);
      const last = res.json.messages.at(-1);
      return last?.role === 'assistant' && last.status !== 'streaming' ? res.json : null;
    });

  describe('streaming', () => {
    it('relays the upstream stream byte for byte and records exactly what the client received', async () => {
      const session = newSession();
      const mockOptions: MockOptions = { chunks: 12, chunk_size: 7 };
      const body = ask('Bonjour 🙂', { stream: true, mock: mockOptions, stream_options: { include_usage: true } });
      const res = await post(app, body, session);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream');
      const id = res.headers.get('x-conversation-id')!;
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
      const { text } = await readChunks(res.body!);
      expect(normalizeMock(text)).toBe(normalizeMock(await direct(body)));

      const saved = await settled(id, session);
      expect(saved.title).toBe('Bonjour 🙂');
      expect(saved.messages.map((m: any) => [m.seq, m.role, m.status])).toEqual([
        [1, 'user', 'final'],
        [2, 'assistant', 'final'],
      ]);
      const answer = saved.messages[1];
      expect(answer.content).toBe(streamedContent(text));
      expect(answer.content).toBe(mockAnswer(mockOptions));
      expect(answer).toMatchObject({ finish_reason: 'stop', tokens_out: 12 });
      expect(answer.tokens_in).toBeGreaterThan(0);
    });

    it('passes chunks on as they arrive, not buffered', async () => {
      const res = await post(app, ask('x', { stream: true, mock: { chunks: 6, delay_ms: 60 } }), newSession());
      const start = performance.now();
      const { chunks } = await readChunks(res.body!);
      expect(chunks.length).toBeGreaterThanOrEqual(6);
      const span = chunks.at(-1)!.at - chunks[0]!.at;
      // Six chunks 60 ms apart: the client sees them spread out over ~300 ms, not in one burst.
      expect(span).toBeGreaterThan(200);
      expect(chunks[0]!.at - start).toBeLessThan(150);
    });

    it('assembles streamed tool calls by index', async () => {
      const session = newSession();
      const res = await post(app, ask('Weather?', { stream: true, mock: { tool_calls: true }, tools: [{ type: 'function', function: { name: 'get_weather' } }] }), session);
      const id = res.headers.get('x-conversation-id')!;
      await readChunks(res.body!);
      const answer = (await settled(id, session)).messages[1];
      expect(answer).toMatchObject({
        status: 'final',
        finish_reason: 'tool_calls',
        content: '',
        tool_calls: [{ id: 'call_mock_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
      });
    });

    it('continues an existing conversation, storing only the new turn', async () => {
      const session = newSession();
      const first = await post(app, { messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Q1' }], stream: true }, session);
      const id = first.headers.get('x-conversation-id')!;
      const a1 = streamedContent((await readChunks(first.body!)).text);
      await settled(id, session);
      const history = [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Q1' },
        { role: 'assistant', content: a1 },
        { role: 'user', content: 'Q2' },
      ];
      const second = await post(app, { messages: history, stream: true }, session, { 'x-conversation-id': id });
      expect(second.status).toBe(200);
      expect(second.headers.get('x-conversation-id')).toBe(id);
      await readChunks(second.body!);
      const saved = await settled(id, session);
      expect(saved.messages.map((m: any) => `${m.seq}:${m.role}:${m.role === 'assistant' ? '…' : m.content}`)).toEqual([
        '1:system:Be brief.',
        '2:user:Q1',
        '3:assistant:…',
        '4:user:Q2',
        '5:assistant:…',
      ]);
    });

    // The fault matrix (upstream-faults.test.ts) checks the malformed line is passed on and the
    // rest recorded; this one checks the whole stream around it stays byte for byte the upstream's.
    it('skips an unreadable event without breaking the stream', async () => {
      const session = newSession();
      const body = ask('x', { stream: true, mock: { fault: 'malformed', chunks: 5 } });
      const res = await post(app, body, session);
      const { text } = await readChunks(res.body!);
      expect(text).toContain('data: {not json');
      expect(normalizeMock(text)).toBe(normalizeMock(await direct(body)));
      const answer = (await settled(res.headers.get('x-conversation-id')!, session)).messages[1];
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer({ chunks: 5 }) });
    });

    it('records a client abort: upstream cancelled, received text flushed, status error', async () => {
      const session = newSession();
      const res = await post(app, ask('x', { stream: true, mock: { chunks: 200, delay_ms: 10 } }), session);
      const id = res.headers.get('x-conversation-id')!;
      const reader = res.body!.getReader();
      let received = '';
      const decoder = new TextDecoder();
      while (streamedContent(received).length < 24) received += decoder.decode((await reader.read()).value, { stream: true });
      await reader.cancel();
      const answer = (await settled(id, session)).messages[1];
      expect(answer).toMatchObject({ status: 'error', finish_reason: 'client_abort' });
      // Everything the client saw was kept; nothing beyond what the upstream sent before the abort.
      expect(answer.content.startsWith(streamedContent(received))).toBe(true);
      expect(mockAnswer({ chunks: 200 }).startsWith(answer.content)).toBe(true);
      expect(answer.content.length).toBeLessThan(mockAnswer({ chunks: 200 }).length);
    });
  });

  describe('non-streaming', () => {
    it('passes the JSON through and writes the answer once, final', async () => {
      const session = newSession();
      const body = ask('Hi', { mock: { chunks: 3 } });
      const counted = instrumentedStore(db.store);
      const res = await post(testApp(counted, upstreamEnv()), body, session);
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ object: 'chat.completion', choices: [{ message: { content: mockAnswer({ chunks: 3 }) } }] });
      const id = res.headers.get('x-conversation-id')!;
      const saved = (await conversation(id, session)).json;
      expect(saved.messages[1]).toMatchObject({ role: 'assistant', status: 'final', content: mockAnswer({ chunks: 3 }), finish_reason: 'stop', tokens_out: 3 });
      expect(counted.calls.appendContent ?? 0).toBe(0);
      expect(counted.calls.finishMessage ?? 0).toBe(0);
    });
  });

  describe('the database stays off the path of the bytes', () => {
    it('bounds the number of writes per stream by the batching settings', async () => {
      const counted = instrumentedStore(db.store);
      const batched = testApp(counted, upstreamEnv({ HISTORY_BATCH_FLUSH_CHARS: '64', HISTORY_BATCH_FLUSH_MS: '60000' }));
      const session = newSession();
      const opts = { chunks: 40, chunk_size: 8, delay_ms: 1 };
      const res = await post(batched, ask('x', { stream: true, mock: opts }), session);
      await readChunks(res.body!);
      const answer = (await settled(res.headers.get('x-conversation-id')!, session)).messages[1];
      expect(answer.content).toBe(mockAnswer(opts));
      // 320 characters in batches of at least 64: at most 5 content writes, plus one to finish.
      expect(counted.calls.appendContent).toBeGreaterThanOrEqual(1);
      expect(counted.calls.appendContent).toBeLessThanOrEqual(5);
      expect(counted.calls.finishMessage).toBe(1);

      const timed = instrumentedStore(db.store);
      const byTime = testApp(timed, upstreamEnv({ HISTORY_BATCH_FLUSH_CHARS: '100000', HISTORY_BATCH_FLUSH_MS: '100' }));
      const started = performance.now();
      const res2 = await post(byTime, ask('x', { stream: true, mock: { chunks: 20, delay_ms: 20 } }), session);
      await readChunks(res2.body!);
      const elapsed = performance.now() - started;
      await settled(res2.headers.get('x-conversation-id')!, session);
      // One write per 100 ms window at most (plus the final flush).
      expect(timed.calls.appendContent).toBeLessThanOrEqual(Math.ceil(elapsed / 100) + 1);
    });

    it('writes many streams together: fewer batches than the streams write, every answer whole', async () => {
      const counted = instrumentedStore(db.store);
      const shared = testApp(counted, upstreamEnv({ HISTORY_BATCH_FLUSH_CHARS: '32', HISTORY_BATCH_FLUSH_MS: '20' }));
      // A session each: one caller may run only MAX_STREAMS_PER_CALLER at once.
      const sessions = Array.from({ length: 12 }, () => newSession());
      const opts = { chunks: 30, chunk_size: 8, delay_ms: 2 };
      const responses = await Promise.all(sessions.map((session) => post(shared, ask('x', { stream: true, mock: opts }), session)));
      await Promise.all(responses.map((res) => readChunks(res.body!)));
      for (const [i, res] of responses.entries()) {
        expect(res.status).toBe(200);
        const answer = (await settled(res.headers.get('x-conversation-id')!, sessions[i]!)).messages[1];
        expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
      }
      // 12 streams of 240 characters, flushed at 32: at least 7 text writes and an end each if
      // written one by one; together, fewer batches than that.
      expect(counted.calls.finishMessage).toBe(12);
      expect(counted.calls.writeBatch).toBeLessThan(12 * 8);
    });

    it('does not slow the client stream when the database is slow, and still records everything', async () => {
      // Content writes hang until the client has the whole answer: a stream that waited on one
      // would never end.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      const slow = instrumentedStore(db.store, { beforeAppendContent: () => held });
      const slowApp = testApp(slow, upstreamEnv({ HISTORY_BATCH_FLUSH_CHARS: '8' }));
      const session = newSession();
      const opts = { chunks: 20, delay_ms: 5 };
      const res = await post(slowApp, ask('x', { stream: true, mock: opts }), session);
      const { text } = await readChunks(res.body!);
      expect(text).toContain('[DONE]');
      expect(slow.calls.appendContent).toBeGreaterThanOrEqual(1); // a write was under way, held
      release();
      const answer = (await settled(res.headers.get('x-conversation-id')!, session)).messages[1];
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
    });

    it('retries failed writes and ends the message complete', async () => {
      const flaky = instrumentedStore(db.store, {
        beforeAppendContent: (n) => {
          if (n <= 2) throw new Error('database is down');
        },
      });
      const flakyApp = testApp(flaky, upstreamEnv({ HISTORY_BATCH_FLUSH_CHARS: '16' }));
      const session = newSession();
      const opts = { chunks: 10, delay_ms: 2 };
      const res = await post(flakyApp, ask('x', { stream: true, mock: opts }), session);
      await readChunks(res.body!);
      const answer = (await settled(res.headers.get('x-conversation-id')!, session)).messages[1];
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
      expect(flaky.calls.appendContent).toBeGreaterThan(2);
    });
  });

  describe('what reaches the upstream', () => {
    it('strips local fields and client credentials, adds the server key, keeps unknown OpenAI fields', async () => {
      const session = newSession();
      const made = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
      const body = {
        messages: [{ role: 'user', content: 'hi' }],
        conversation_id: made.id,
        temperature: 0.3,
        tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }],
        response_format: { type: 'json_object' },
        stream: true,
      };
      const res = await post(app, body, session, {
        authorization: 'Bearer client-secret-token',
        cookie: 'cf_session_id=abcdefgh12; other=cookie-secret',
        'x-conversation-id': made.id,
        'x-custom-secret': 'custom-secret-value',
        'openai-organization': 'org-client',
      });
      expect(res.headers.get('x-conversation-id')).toBe(made.id);
      await readChunks(res.body!);
      const seen = mock.requests.at(-1)!;
      expect(seen.headers.authorization).toBe(`Bearer ${SERVER_KEY}`);
      const raw = JSON.stringify(seen);
      for (const secret of ['client-secret-token', 'cookie-secret', 'custom-secret-value', 'org-client', session, made.id]) {
        expect(raw).not.toContain(secret);
      }
      expect(seen.body).toEqual({
        messages: [{ role: 'user', content: 'hi' }],
        model: 'gpt-4.1-mini',
        temperature: 0.3,
        tools: body.tools,
        response_format: body.response_format,
        stream: true,
        // Asked for on the client's behalf, for token accounting.
        stream_options: { include_usage: true },
        // The output cap (MAX_OUTPUT_TOKENS), as the client set no limit.
        max_tokens: 8192,
      });
    });

    it("answers 404 for someone else's conversation without calling the upstream", async () => {
      const made = (await call(app, 'POST', '/v1/conversations', { session: newSession(), body: {} })).json;
      const res = await post(app, ask('x', { conversation_id: made.id }), newSession());
      expect(res.status).toBe(404);
      expect((await res.json()).error.type).toBe('not_found_error');
      const byHeader = await post(app, ask('x'), newSession(), { 'x-conversation-id': made.id });
      expect(byHeader.status).toBe(404);
      expect(mock.requests).toHaveLength(0);
    });

    it.each([
      ['no messages', {}],
      ['empty messages', { messages: [] }],
      ['a bad role', { messages: [{ role: 'wizard', content: 'x' }] }],
      ['a non-boolean stream', { messages: [{ role: 'user', content: 'x' }], stream: 'yes' }],
    ])('rejects %s with 400 before calling the upstream or writing anything', async (_, body) => {
      const session = newSession();
      const res = await post(app, body, session);
      expect(res.status).toBe(400);
      expect((await res.json()).error.type).toBe('invalid_request_error');
      expect(mock.requests).toHaveLength(0);
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toEqual([]);
    });
  });

  describe('with the official openai SDK as the client', () => {
    let server: RunningServer;
    let client: OpenAI;
    const session = newSession();
    beforeAll(async () => {
      server = await startServer(testConfig({ ...upstreamEnv(), PORT: '0', HOST: '127.0.0.1' }), { store: db.store, logger: createLogger('silent') });
      client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'client-key', defaultHeaders: { 'x-session-id': session } });
    });
    afterAll(async () => {
      await server?.close();
      // the store belongs to the suite; reopen nothing
    });

    it('streams', async () => {
      const stream = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'SDK stream' }], stream: true });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      expect(text).toBe(mockAnswer({}));
      const list = (await call(app, 'GET', '/v1/conversations', { session })).json.items;
      const saved = await settled(list.find((c: any) => c.title === 'SDK stream').id, session);
      expect(saved.messages[1].content).toBe(text);
    });

    it('does plain requests, and surfaces upstream errors as APIError', async () => {
      const res = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'SDK plain' }] });
      expect(res.choices[0]?.message.content).toBe(mockAnswer({}));
      await expect(
        client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], mock: { fault: 'status', status: 400 } } as never),
      ).rejects.toMatchObject({ status: 400 });
    });
  });
});

describe('chat proxy with persistence off', () => {
  it('is a pure proxy: no conversation, no database', async () => {
    const app = testApp(null, upstreamEnv({ PERSIST_TRANSCRIPTS: 'false' }));
    const body = ask('x', { stream: true, conversation_id: crypto.randomUUID() });
    const res = await post(app, body, newSession());
    expect(res.status).toBe(200);
    expect(res.headers.get('x-conversation-id')).toBeNull();
    const { text } = await readChunks(res.body!);
    expect(normalizeMock(text)).toBe(normalizeMock(await direct(ask('x', { stream: true }))));
    expect(mock.requests.at(-2)!.body).not.toHaveProperty('conversation_id');
    const plain = await post(app, ask('x'), newSession());
    expect(plain.status).toBe(200);
  });
});

describe('client abort reaches the upstream', () => {
  let upstream: Server;
  let closedAt: number | null = null;
  let url: string;
  beforeAll(async () => {
    // An upstream that streams forever and notes when its client hangs up.
    upstream = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const timer = setInterval(() => res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'tick ' } }] })}\n\n`), 5);
      res.on('close', () => {
        clearInterval(timer);
        closedAt = performance.now();
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  });
  afterAll(async () => {
    upstream.closeAllConnections();
    await new Promise((r) => upstream.close(r));
  });

  it('cancelling the client stream closes the upstream connection', async () => {
    for (const store of [null as Store | null]) {
      const app = testApp(store, { OPENAI_BASE_URL: url, PERSIST_TRANSCRIPTS: 'false' });
      const res = await post(app, ask('x', { stream: true }), newSession());
      const reader = res.body!.getReader();
      await reader.read();
      const cancelledAt = performance.now();
      await reader.cancel();
      await waitFor(() => closedAt !== null, 2_000);
      expect(closedAt! - cancelledAt).toBeLessThan(1_000);
    }
  });
});
