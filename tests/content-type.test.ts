import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderError, toApiError } from '../app/errors.js';
import { jsonOnly } from '../app/middleware/json-only.js';
import { createLogger } from '../app/logger.js';
import { startServer } from '../app/server.js';
import type { AppEnv } from '../app/types.js';
import { call, newSession, testApp, testConfig, type TestApp } from './helpers/app.js';
import { readConversation } from './helpers/conversation-checks.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';

/*
 * A page on any site can make a browser POST a form here, with our session cookie and without a
 * CORS preflight: enctype application/x-www-form-urlencoded, multipart/form-data or text/plain.
 * Writes take JSON only, so none of these reaches a handler.
 */

const mock = useMockUpstream();

/** What a cross-site page can send without a preflight, each with a body that would be valid JSON for the endpoint. */
const FORMS: [string, string, (json: string) => string][] = [
  ['an url-encoded form', 'application/x-www-form-urlencoded', (json) => `${encodeURIComponent(json)}=`],
  ['a multipart form', 'multipart/form-data; boundary=x', (json) => `--x\r\nContent-Disposition: form-data; name="${json.replace(/"/g, '%22')}"\r\n\r\n\r\n--x--\r\n`],
  // <form enctype="text/plain"> with an input named `{"title":"pwned","x":"` and value `"}` sends valid JSON.
  ['a text/plain form', 'text/plain', (json) => json],
  ['a fetch() of a string (no-cors)', 'text/plain;charset=UTF-8', (json) => json],
];

describe.each(dialects)('JSON-only writes on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const list = async (session: string) => (await call(app, 'GET', '/v1/conversations', { session })).json.items;
  const consentOf = async (session: string) => (await call(app, 'GET', '/v1/privacy', { session })).json.consent;

  /** The writes a form could aim at, each with the JSON it would smuggle in; `:id` is a conversation of the session. */
  const WRITES: [string, string, unknown][] = [
    ['POST', '/v1/chat/completions', { messages: [{ role: 'user', content: 'pwned' }] }],
    ['POST', '/v1/conversations', { title: 'pwned' }],
    ['POST', '/v1/conversations/:id/messages', { role: 'user', content: 'pwned' }],
    ['PATCH', '/v1/conversations/:id', { title: 'pwned' }],
    ['POST', '/v1/privacy/consent', { consent: 'denied' }],
  ];

  describe.each(FORMS)('refuses %s (%s) with 415, writing nothing', (_, contentType, encode) => {
    it.each(WRITES)('%s %s', async (method, path, json) => {
      const session = newSession();
      const other = await call(app, 'POST', '/v1/conversations', { session: newSession(), body: { title: 'elsewhere' } });
      const res = await call(app, method, path.replace(':id', other.json.id), { session, body: encode(JSON.stringify(json)), headers: { 'content-type': contentType } });
      expect(res.status, res.text).toBe(415);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'unsupported_media_type', param: null });
      expect(res.json.error.message).toContain(`Content-Type ${JSON.stringify(contentType.split(';')[0])}`);
      expect(res.json.error.message).toContain('Content-Type: application/json');
      expect(await list(session)).toEqual([]);
      expect(await consentOf(session)).toBeNull();
    });

    it('on a conversation of the session itself, leaving it as it was', async () => {
      const session = newSession();
      const own = await call(app, 'POST', '/v1/conversations', { session, body: { title: 'mine' } });
      const before = await readConversation(app, own.json.id, session);
      for (const [method, path, json] of WRITES) {
        const res = await call(app, method, path.replace(':id', own.json.id), { session, body: encode(JSON.stringify(json)), headers: { 'content-type': contentType } });
        expect(res.status, `${method} ${path}`).toBe(415);
      }
      expect(await readConversation(app, own.json.id, session)).toEqual(before);
      expect((await list(session)).map((c: any) => c.id)).toEqual([own.json.id]);
      expect(await consentOf(session)).toBeNull();
      expect(mock.requests).toEqual([]);
    });
  });

  /** A body sent with no Content-Type at all, as a client other than fetch() can. */
  const untyped = (path: string, session: string, headers: Record<string, string>) =>
    app.request(path, { method: 'POST', headers: { 'x-session-id': session, ...headers }, body: new TextEncoder().encode('{"title":"pwned"}') });

  it.each([
    ['a Content-Length', { 'content-length': '17' }],
    ['chunks (Transfer-Encoding)', { 'transfer-encoding': 'chunked' }],
  ])('refuses a body with %s but no Content-Type', async (_, headers) => {
    const session = newSession();
    const res = await untyped('/v1/conversations', session, headers);
    expect(res.status).toBe(415);
    const body: any = await res.json();
    expect(body.error).toMatchObject({ code: 'unsupported_media_type' });
    expect(body.error.message).toMatch(/a body but no Content-Type\. Send the body as JSON with Content-Type: application\/json/);
    expect(await list(session)).toEqual([]);
  });

  it.each([
    ['application/json', 'plain JSON'],
    ['application/json; charset=utf-8', 'JSON with a charset'],
    ['APPLICATION/JSON', 'JSON in capitals'],
    ['application/vnd.foo+json', 'a +json type'],
    ['application/merge-patch+json; charset=UTF-8', 'a +json type with a charset'],
  ])('accepts %s (%s)', async (contentType) => {
    const session = newSession();
    const created = await call(app, 'POST', '/v1/conversations', { session, body: { title: 'ok' }, headers: { 'content-type': contentType } });
    expect(created.status, created.text).toBe(201);
    const id = created.json.id;
    expect((await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { title: 'renamed' }, headers: { 'content-type': contentType } })).status).toBe(200);
    expect((await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: 'hi' }, headers: { 'content-type': contentType } })).status).toBe(201);
    expect((await call(app, 'POST', '/v1/privacy/consent', { session, body: { consent: 'granted' }, headers: { 'content-type': contentType } })).status).toBe(200);
    const chat = await call(app, 'POST', '/v1/chat/completions', { session, body: { messages: [{ role: 'user', content: 'hi' }] }, headers: { 'content-type': contentType } });
    expect(chat.status, chat.text).toBe(200);
  });

  it('accepts an empty POST with no Content-Type (a conversation with defaults)', async () => {
    const session = newSession();
    for (const headers of [{}, { 'content-length': '0' }] as Record<string, string>[]) {
      const res = await call(app, 'POST', '/v1/conversations', { session, headers });
      expect(res.status, res.text).toBe(201);
    }
    expect(await list(session)).toHaveLength(2);
  });

  it('leaves reads and deletes alone, whatever their Content-Type', async () => {
    const session = newSession();
    const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
    expect((await call(app, 'GET', '/v1/conversations', { session, headers: { 'content-type': 'text/plain' } })).status).toBe(200);
    expect((await call(app, 'DELETE', `/v1/conversations/${id}`, { session, headers: { 'content-type': 'text/plain' } })).status).toBe(200);
  });

  it('refuses a form sent to a real listening server, as a browser would send it', async () => {
    const server = await startServer(testConfig({ OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1' }), { store: db.store, logger: createLogger('silent') });
    try {
      const session = newSession();
      const form = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers: { 'x-session-id': session }, body: new URLSearchParams({ title: 'pwned' }) });
      expect(form.status).toBe(415);
      // Bytes with no type: undici sends a Content-Length and no Content-Type.
      const bytes = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers: { 'x-session-id': session }, body: new TextEncoder().encode('{"title":"pwned"}') });
      expect(bytes.status).toBe(415);
      const empty = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers: { 'x-session-id': session } });
      expect(empty.status).toBe(201);
      expect((await list(session)).map((c: any) => c.title)).toEqual([null]);
    } finally {
      await server.close();
    }
  });
});

describe('jsonOnly({ exempt })', () => {
  const app = new Hono<AppEnv>();
  app.use('/v1/*', jsonOnly({ exempt: ['/v1/conversations/:id/import', '/v1/uploads/*'] }));
  app.post('/v1/*', async (c) => c.text(await c.req.text()));
  app.onError((err, c) => renderError(toApiError(err), c));
  const post = (path: string, contentType: string) => app.request(path, { method: 'POST', headers: { 'content-type': contentType }, body: '{"a":1}\n{"b":2}\n' });

  it('lets an exempt path take its own media type', async () => {
    expect((await post('/v1/conversations/abc/import', 'application/x-ndjson')).status).toBe(200);
    expect((await post('/v1/uploads/a/b.txt', 'text/plain')).status).toBe(200);
  });

  it('matches the pattern whole: a parameter is one segment, other paths stay JSON-only', async () => {
    for (const path of ['/v1/conversations/import', '/v1/conversations/a/b/import', '/v1/conversations/abc/import/more', '/v1/conversations/abc/imports', '/v1/uploads']) {
      const res = await post(path, 'application/x-ndjson');
      expect(res.status, path).toBe(415);
    }
  });
});
