import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, capturingLogger, newSession, testApp, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, sharedTestStore, testStore } from './helpers/dialects.js';
import { readChunks, waitFor } from './helpers/streams.js';

/*
 * What the server tells its operator about its work: Prometheus metrics, JSON log lines and the
 * counts in /healthz, on each dialect, and never a word of what was said. (/metrics and /healthz
 * behind METRICS_TOKEN, and the level of error log lines, are in operations.test.ts.)
 */

const mock = useMockUpstream();

const chat = (app: TestApp, session: string, body: Record<string, unknown> = {}) =>
  app.request('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': session },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], stream: true, ...body }),
  });

describe.each(dialects)('observability on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  beforeAll(async () => {
    db = await sharedTestStore(dialect);
  });
  afterAll(async () => {
    await db?.cleanup();
  });
  const appWith = (env: Record<string, string> = {}) => testApp(db.store, { OPENAI_BASE_URL: mock.url, ...env });

  it('exposes Prometheus metrics without any content', async () => {
    const app = appWith();
    const session = newSession();
    const res = await chat(app, session, { messages: [{ role: 'user', content: 'METRICS-CANARY' }], stream_options: { include_usage: true } });
    await readChunks(res.body!);
    await waitFor(async () => {
      const c = (await call(app, 'GET', `/v1/conversations/${res.headers.get('x-conversation-id')}`, { session })).json;
      return c.messages?.[1]?.status === 'final';
    });
    await call(app, 'GET', '/v1/conversations/nope', { session });
    const metrics = await app.request('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toMatch(/chat_proxy_http_requests_total\{route="\/v1\/chat\/completions",method="POST",status="200"\} 1/);
    expect(text).toMatch(/chat_proxy_http_requests_total\{route="\/v1\/conversations\/:id",method="GET",status="404"\} 1/);
    expect(text).toMatch(/chat_proxy_active_streams 0/);
    expect(text).toMatch(/chat_proxy_stream_ttfb_ms_count 1/);
    expect(text).toMatch(/chat_proxy_stream_duration_ms_count\{outcome="completed"\} 1/);
    expect(text).toMatch(/chat_proxy_tokens_total\{direction="out",source="provider"\} 8/);
    expect(text).toMatch(/chat_proxy_db_flush_duration_ms_count [1-9]/);
    expect(text).toContain('chat_proxy_db_flush_failures_total 0');
    expect(text).not.toContain('METRICS-CANARY');
    expect(text).not.toContain(session);
  });

  it('logs JSON lines with a request id, status, duration and stream timings, never content', async () => {
    const log = capturingLogger();
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url }, log.logger);
    const session = newSession();
    const res = await chat(app, session, { messages: [{ role: 'user', content: 'LOG-CANARY-CONTENT' }] });
    await readChunks(res.body!);
    await waitFor(() => log.text().includes('stream ended'));
    const lines = log.lines.map((l) => JSON.parse(l));
    const requestId = res.headers.get('x-request-id');
    expect(lines.every((l) => l.request_id === requestId)).toBe(true);
    expect(lines.find((l) => l.msg === 'request')).toMatchObject({ method: 'POST', path: '/v1/chat/completions', status: 200 });
    const ended = lines.find((l) => l.msg === 'stream ended');
    expect(ended).toMatchObject({ stream_outcome: 'completed' });
    expect(ended.ttfb_ms).toBeGreaterThan(0);
    expect(ended.stream_duration_ms).toBeGreaterThanOrEqual(ended.ttfb_ms);
    expect(log.text()).not.toContain('LOG-CANARY-CONTENT');
    expect(log.text()).not.toContain(session);
  });

  it("logs a client's x-request-id as client_request_id, never in place of its own", async () => {
    const log = capturingLogger();
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url }, log.logger);
    const res = await call(app, 'GET', '/v1/conversations', { session: newSession(), headers: { 'x-request-id': 'client-chosen-id\u0001"}' } });
    const ours = res.headers.get('x-request-id');
    expect(ours).toMatch(/^[0-9a-f-]{36}$/);
    const line = log.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'request');
    expect(line).toMatchObject({ request_id: ours, client_request_id: 'client-chosen-id"}' });
  });

  it('adds conversation and message counts to /healthz', async () => {
    // A database of its own: the counts are exactly what this test stored.
    const own = await testStore(dialect);
    try {
      const app = testApp(own.store);
      const session = newSession();
      for (const contents of [['one', 'two'], ['three']]) {
        const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
        for (const content of contents) {
          expect((await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content } })).status).toBe(201);
        }
      }
      const res = await call(app, 'GET', '/healthz');
      expect(res.json.persistence).toEqual({ enabled: true, dialect, ok: true, conversations: 2, messages: 3 });
    } finally {
      await own.cleanup();
    }
  });
});
