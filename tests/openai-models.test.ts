import { createServer } from 'node:net';
import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { MODELS_TTL_MS, UpstreamModels } from '../app/upstream/models.js';
import { call, newSession, testApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';

/** `GET /v1/models`: the upstream's list, so a UI can offer it; no database involved. */

const mock = useMockUpstream();
const modelRequests = () => mock.requests.filter((r) => r.path.endsWith('/models'));

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

describe('GET /v1/models', () => {
  it("passes the upstream's list through to the SDK, with the server's key, asking once a minute", async () => {
    const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, OPENAI_API_KEY: 'sk-server-key-123456' });
    const { client } = sdk(app, { apiKey: 'sk-client-key', headers: { 'x-session-id': newSession() } });
    const models: OpenAI.Models.Model[] = [];
    for await (const model of client.models.list()) models.push(model);
    expect(models).toEqual([{ id: 'mock-model', object: 'model', created: expect.any(Number), owned_by: 'mock' }]);
    expect(modelRequests()).toHaveLength(1);
    expect(modelRequests()[0]!.headers.authorization).toBe('Bearer sk-server-key-123456');
    // Cached: the next callers, whoever they are, do not reach the upstream.
    await client.models.list();
    expect((await call(app, 'GET', '/v1/models', { session: newSession() })).json.data[0].id).toBe('mock-model');
    expect(modelRequests()).toHaveLength(1);
  });

  it('offers only the models MODEL_ALLOWLIST admits', async () => {
    const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, MODEL_ALLOWLIST: 'gpt-*', DEFAULT_MODEL: 'gpt-x' });
    expect((await call(app, 'GET', '/v1/models', { session: newSession() })).json).toEqual({ object: 'list', data: [] });
    const open = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, MODEL_ALLOWLIST: 'mock-*', DEFAULT_MODEL: 'mock-x' });
    expect((await call(open, 'GET', '/v1/models', { session: newSession() })).json.data.map((m: any) => m.id)).toEqual(['mock-model']);
  });

  it("passes an upstream error on as the proxy passes chat errors, and does not keep it", async () => {
    // Without /v1, the mock answers 404 for /models.
    const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url.replace(/\/v1$/, '') });
    for (let i = 0; i < 2; i++) {
      const res = await call(app, 'GET', '/v1/models', { session: newSession() });
      expect(res.status).toBe(404);
      expect(res.json.error).toMatchObject({ message: 'Invalid URL (GET /models)', type: 'invalid_request_error' });
    }
    expect(modelRequests()).toHaveLength(2);
  });

  it('answers 502 for an unreachable upstream and 503 without one', async () => {
    const unreachable = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: `http://127.0.0.1:${await closedPort()}/v1` });
    const res = await call(unreachable, 'GET', '/v1/models', { session: newSession() });
    expect(res.status).toBe(502);
    expect(res.json.error.code).toBe('upstream_unreachable');
    const none = await call(testApp(null, { PERSIST_TRANSCRIPTS: 'false' }), 'GET', '/v1/models', { session: newSession() });
    expect(none.status).toBe(503);
    expect(none.json.error.code).toBe('upstream_not_configured');
  });

  it('asks the upstream again once the minute is over, and only once for callers who ask meanwhile', async () => {
    let now = 1_000_000;
    const models = new UpstreamModels({ baseUrl: mock.url, apiKey: undefined, timeoutMs: 5_000 }, () => now);
    await Promise.all([models.list(), models.list(), models.list()]);
    expect(modelRequests()).toHaveLength(1);
    now += MODELS_TTL_MS - 1;
    await models.list();
    expect(modelRequests()).toHaveLength(1);
    now += 1;
    await models.list();
    expect(modelRequests()).toHaveLength(2);
  });
});
