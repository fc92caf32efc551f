import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';
import { call, capturingLogger, newSession, testApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';

/*
 * What an operator's tools see: /healthz telling the truth about a server that cannot chat,
 * /metrics and /healthz behind METRICS_TOKEN, and error-level log lines kept for faults.
 */

const mock = useMockUpstream();
const TOKEN = 'metrics-CANARY-token-5c2a9e7f';
let store: Store;

beforeAll(async () => {
  store = createStore({ dialect: 'sqlite', path: ':memory:' });
  await store.migrate();
});
afterAll(async () => {
  await store?.close();
});

describe('/healthz', () => {
  it('says degraded, with 200 and the reason, when no upstream is configured', async () => {
    const res = await call(testApp(store), 'GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'degraded', provider: null, upstream: { configured: false }, persistence: { enabled: true, ok: true } });
    // …and that is the truth: a chat cannot be answered.
    const chat = await call(testApp(store), 'POST', '/v1/chat/completions', { session: newSession(), body: { messages: [{ role: 'user', content: 'hi' }] } });
    expect(chat.status).toBe(503);
    expect(chat.json.error.code).toBe('upstream_not_configured');
  });

  it('says ok once an upstream is configured', async () => {
    const res = await call(testApp(store, { OPENAI_BASE_URL: mock.url }), 'GET', '/healthz');
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ status: 'ok', provider: new URL(mock.url).host, upstream: { configured: true } });
  });

  it('shows only its status without METRICS_TOKEN, everything with it', async () => {
    const app = testApp(store, { OPENAI_BASE_URL: mock.url, METRICS_TOKEN: TOKEN });
    const anonymous = await call(app, 'GET', '/healthz');
    expect(anonymous.status).toBe(200);
    expect(anonymous.json).toEqual({ status: 'ok' });
    const wrong = await call(app, 'GET', '/healthz', { headers: { authorization: `Bearer ${TOKEN}x` } });
    expect(wrong.json).toEqual({ status: 'ok' });
    const authorized = await call(app, 'GET', '/healthz', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(authorized.json).toMatchObject({ status: 'ok', provider: new URL(mock.url).host, model: 'gpt-4.1-mini', persistence: { enabled: true, dialect: 'sqlite' } });
    expect(typeof authorized.json.uptime).toBe('number');
  });

  it('shows only the status of a server without an upstream, too', async () => {
    const res = await call(testApp(store, { METRICS_TOKEN: TOKEN }), 'GET', '/healthz');
    expect(res.json).toEqual({ status: 'degraded' });
  });
});

describe('/metrics', () => {
  it('is open when METRICS_TOKEN is not set', async () => {
    const res = await call(testApp(store), 'GET', '/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('chat_proxy_http_requests_total');
  });

  it.each([
    ['no Authorization', {}],
    ['a wrong token', { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
    ['a longer token', { authorization: `Bearer ${TOKEN}0` }],
    ['the token without Bearer', { authorization: TOKEN }],
    ['the token as Basic', { authorization: `Basic ${TOKEN}` }],
  ])('answers 401 in OpenAI shape to %s', async (_, headers) => {
    const res = await call(testApp(store, { METRICS_TOKEN: TOKEN }), 'GET', '/metrics', { headers });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer');
    expect(res.json).toEqual({
      error: { message: expect.stringContaining('METRICS_TOKEN'), type: 'authentication_error', code: 'invalid_metrics_token', param: null },
    });
    expect(res.text).not.toContain('chat_proxy_');
  });

  it('answers the metrics to Authorization: Bearer METRICS_TOKEN', async () => {
    const app = testApp(store, { METRICS_TOKEN: TOKEN });
    for (const scheme of ['Bearer', 'bearer']) {
      const res = await call(app, 'GET', '/metrics', { headers: { authorization: `${scheme} ${TOKEN}` } });
      expect(res.status).toBe(200);
      expect(res.text).toContain('chat_proxy_http_requests_total');
    }
  });

  it('refuses a short METRICS_TOKEN at start-up without echoing it', () => {
    expect(() => loadConfig({ METRICS_TOKEN: 'short-secret' })).toThrow(ConfigError);
    expect(() => loadConfig({ METRICS_TOKEN: 'short-secret' })).toThrow(/METRICS_TOKEN: must be at least 16 characters/);
    try {
      loadConfig({ METRICS_TOKEN: 'short-secret' });
    } catch (err) {
      expect((err as Error).message).not.toContain('short-secret');
    }
  });
});

describe('server-side answers in the log', () => {
  const parsed = (lines: string[]) => lines.map((l) => JSON.parse(l));
  const failures = (lines: string[]) => parsed(lines).filter((l) => l.msg !== 'request');

  it('logs a 501 for history with persistence off at info, without a stack', async () => {
    const log = capturingLogger();
    const res = await call(testApp(null, { PERSIST_TRANSCRIPTS: 'false' }, log.logger), 'GET', '/v1/conversations', { session: newSession() });
    expect(res.status).toBe(501);
    expect(failures(log.lines)).toEqual([{ level: 30, time: expect.any(Number), request_id: expect.any(String), status: 501, code: 'persistence_disabled', msg: expect.stringContaining('PERSIST_TRANSCRIPTS') }]);
    expect(log.text()).not.toContain('"stack"');
  });

  it('logs a 503 for a missing upstream at warn, without a stack', async () => {
    const log = capturingLogger();
    const res = await call(testApp(null, { PERSIST_TRANSCRIPTS: 'false' }, log.logger), 'POST', '/v1/chat/completions', { session: newSession(), body: { messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.status).toBe(503);
    expect(failures(log.lines)).toEqual([expect.objectContaining({ level: 40, status: 503, code: 'upstream_not_configured' })]);
    expect(log.text()).not.toContain('"stack"');
  });

  it('logs a database that is down at warn, with its error code and no stack', async () => {
    const log = capturingLogger();
    const down: Store = { ...store, listConversations: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })) };
    const res = await call(testApp(down, {}, log.logger), 'GET', '/v1/conversations', { session: newSession() });
    expect(res.status).toBe(503);
    expect(failures(log.lines)).toEqual([expect.objectContaining({ level: 40, status: 503, code: 'database_unavailable', cause_code: 'ECONNREFUSED' })]);
    expect(log.text()).not.toContain('"stack"');
  });

  it('keeps error level and the stack for a fault of the server', async () => {
    const log = capturingLogger();
    const broken: Store = { ...store, listConversations: () => Promise.reject(new Error('a bug')) };
    const res = await call(testApp(broken, {}, log.logger), 'GET', '/v1/conversations', { session: newSession() });
    expect(res.status).toBe(500);
    const [line] = failures(log.lines);
    expect(line).toMatchObject({ level: 50, msg: 'request failed', err: { message: 'a bug', stack: expect.stringMatching(/^\s+at /) } });
  });
});
