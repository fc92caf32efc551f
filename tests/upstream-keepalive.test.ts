import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newSession, testApp, type TestApp } from './helpers/app.js';
import { settledConversation } from './helpers/conversation-checks.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';

/*
 * The proxy reuses upstream connections. An upstream may close an idle one at the very moment
 * a request goes out on it (keep-alive timeouts of a second are common): the request then fails
 * before any answer, and is retried once on another connection. Nothing that had begun to
 * answer is ever retried.
 */

const ANSWER = 'Pooled and answered.';

/**
 * An upstream that answers the first request on each connection (keeping it alive) and kills
 * the connection, without a word, when a second request arrives on it: the race above, made
 * certain. `how` is a close after reading the request, or a reset.
 */
async function closingUpstream(how: 'close' | 'reset') {
  const seen = new WeakMap<Socket, number>();
  const stats = { requests: 0, killed: 0, connections: 0 };
  const server = http.createServer((req, res) => {
    stats.requests++;
    const n = (seen.get(req.socket) ?? 0) + 1;
    seen.set(req.socket, n);
    const body: Buffer[] = [];
    req.on('data', (c: Buffer) => body.push(c));
    req.on('end', () => {
      if (n > 1) {
        stats.killed++;
        if (how === 'reset') req.socket.resetAndDestroy();
        else req.socket.destroy();
        return;
      }
      const { stream } = JSON.parse(Buffer.concat(body).toString());
      if (stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (const piece of [ANSWER.slice(0, 7), ANSWER.slice(7)]) {
          res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] })}\n\n`);
        }
        res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
        res.end('data: [DONE]\n\n');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: ANSWER }, finish_reason: 'stop' }] }));
      }
    });
  });
  server.on('connection', (socket: Socket) => {
    stats.connections++;
    socket.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    stats,
    close: () => new Promise<void>((resolve) => (server.close(() => resolve()), server.closeAllConnections())),
  };
}

/**
 * undici hands a finished connection back to its pool from a setImmediate queued when the
 * answer completed; one turn of the event loop later, the next request goes out on it.
 */
const connectionPooled = () => new Promise((resolve) => setImmediate(resolve));

const mock = useMockUpstream();

describe.each(dialects)('pooled upstream connections on %s', (dialect) => {
  let db: TestStore;
  beforeAll(async () => {
    db = await testStore(dialect);
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const chat = (app: TestApp, session: string, body: Record<string, unknown>, init: RequestInit = {}) =>
    app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...body }),
      ...init,
    });

  it.each(['close', 'reset'] as const)('retries once, on another connection, a request whose connection the upstream %s before answering', async (how) => {
    // A fresh upstream (and port) per case, so no pooled connection is left from another.
    const upstream = await closingUpstream(how);
    try {
      const app = testApp(db.store, { OPENAI_BASE_URL: upstream.url });
      const session = newSession();
      // Connection 1 answers and stays in the pool.
      const first = await chat(app, session, { stream: false });
      expect(first.status).toBe(200);
      expect((await first.json()).choices[0].message.content).toBe(ANSWER);
      expect(upstream.stats).toEqual({ requests: 1, killed: 0, connections: 1 });
      await connectionPooled();

      // Streaming: sent on connection 1, which dies; the retry opens connection 2.
      const streamed = await chat(app, session, { stream: true });
      expect(streamed.status).toBe(200);
      const { text } = await readChunks(streamed.body!);
      expect(streamedContent(text)).toBe(ANSWER);
      expect(text).toContain('data: [DONE]');
      expect(upstream.stats).toEqual({ requests: 3, killed: 1, connections: 2 });
      await connectionPooled();

      // Not streaming: sent on connection 2, which dies; the retry opens connection 3.
      const plain = await chat(app, session, { stream: false });
      expect(plain.status).toBe(200);
      expect((await plain.json()).choices[0].message.content).toBe(ANSWER);
      expect(upstream.stats).toEqual({ requests: 5, killed: 2, connections: 3 });

      // Each answer recorded once, complete.
      const ids = new Set([first, streamed, plain].map((r) => r.headers.get('x-conversation-id')));
      for (const id of ids) {
        const conversation = await settledConversation(app, id!, session);
        for (const m of conversation.messages.filter((m: any) => m.role === 'assistant')) {
          expect(m).toMatchObject({ status: 'final', content: ANSWER, finish_reason: 'stop' });
        }
      }
    } finally {
      await upstream.close();
    }
  });

  it('does not retry an upstream that drops after its answer began', async () => {
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    for (const [stream, dropAfter] of [[true, 0], [true, 3], [false, 0]] as const) {
      mock.reset();
      const session = newSession();
      const res = await chat(app, session, { stream, mock: { fault: 'drop', chunks: 10, drop_after: dropAfter, delay_ms: 2 } });
      const { text } = await readChunks(res.body!);
      if (stream) {
        expect(res.status).toBe(200);
        expect(text).toContain('"code":"upstream_error"');
      } else {
        expect(res.status).toBe(502);
        expect(JSON.parse(text).error.code).toBe('upstream_error');
      }
      const answer = (await settledConversation(app, res.headers.get('x-conversation-id')!, session)).messages[1];
      expect(answer).toMatchObject({ status: 'error', finish_reason: 'upstream_error' });
      expect(mock.requests, `stream ${stream}, drop after ${dropAfter}`).toHaveLength(1);
    }
  });

  it('does not retry a timeout, and retries a reset before the answer only once', async () => {
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url, UPSTREAM_TIMEOUT_MS: '200' });
    const hung = await chat(app, newSession(), { stream: true, mock: { fault: 'hang' } });
    expect(hung.status).toBe(504);
    expect(mock.requests).toHaveLength(1);

    mock.reset();
    const reset = await chat(app, newSession(), { stream: true, mock: { fault: 'reset' } });
    expect(reset.status).toBe(502);
    expect((await reset.json()).error.code).toBe('upstream_unreachable');
    expect(mock.requests).toHaveLength(2);
  });

  it('does not retry a request the client abandoned before the answer', async () => {
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    const client = new AbortController();
    const pending = chat(app, newSession(), { stream: true, mock: { first_byte_delay_ms: 10_000 } }, { signal: client.signal });
    await waitFor(() => mock.requests.length === 1);
    client.abort();
    // Once the handler is done, any retry would have been sent.
    await Promise.resolve(pending)
      .then((res: Response) => res.text())
      .catch(() => {});
    expect(mock.requests).toHaveLength(1);
  });
});
