import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../app/logger.js';
import { startServer } from '../app/server.js';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp, testConfig, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { readChunks, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();

const chat = (app: TestApp, session: string, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) =>
  app.request('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': session, ...headers },
    body: JSON.stringify({ messages: [{ role: 'system', content: 'SECRET SYSTEM PROMPT' }, { role: 'user', content: 'hello' }], stream: true, ...body }),
  });

describe.each(dialects)('privacy controls on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  beforeAll(async () => {
    db = await sharedTestStore(dialect);
  });
  afterAll(async () => {
    await db?.cleanup();
  });
  const appWith = (env: Record<string, string> = {}) => testApp(db.store, { OPENAI_BASE_URL: mock.url, ...env });
  const conversationsOf = async (app: TestApp, session: string) => (await call(app, 'GET', '/v1/conversations', { session })).json.items;

  describe('GET /v1/privacy', () => {
    it('tells a frontend what is stored, for how long, and how to opt out', async () => {
      const res = await call(appWith({ RETENTION_DAYS: '14', PRIVACY_NOTICE: 'We keep chats for two weeks.' }), 'GET', '/v1/privacy', { session: newSession() });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({
        object: 'privacy',
        persistence: true,
        redact_system_prompts: false,
        retention_days: 14,
        deleted_retention_days: 7,
        consent_required: false,
        consent: null,
        opt_out_header: 'x-persist: off',
        notice: 'We keep chats for two weeks.',
      });
      expect(res.json.stored).toContain('system prompts');
      expect(res.json.stored.join(' ')).toContain('hash of each API key');
      expect(res.json.never_stored).toEqual(expect.arrayContaining(['API keys', 'Authorization headers', 'cookies']));
      const redacted = await call(appWith({ REDACT_SYSTEM_PROMPTS: 'true' }), 'GET', '/v1/privacy', { session: newSession() });
      expect(redacted.json.stored).not.toContain('system prompts');
      expect(redacted.json.never_stored).toContain('system prompts');
      const off = await call(testApp(null, { PERSIST_TRANSCRIPTS: 'false' }), 'GET', '/v1/privacy', { session: newSession() });
      expect(off.json).toMatchObject({ persistence: false, stored: [], retention_days: null, consent: null });
    });

    it('validates consent input', async () => {
      const app = appWith();
      for (const body of [{}, { consent: 'yes' }, { consent: 'granted', extra: 1 }]) {
        const res = await call(app, 'POST', '/v1/privacy/consent', { session: newSession(), body });
        expect(res.status).toBe(400);
        expect(res.json.error.param).toBe(Object.keys(body).includes('consent') && body.consent !== 'yes' ? null : 'consent');
      }
    });
  });

  describe('CONSENT_REQUIRED=true', () => {
    it('stores nothing of a session until it opts in, then stores; opting out stops it again', async () => {
      const app = appWith({ CONSENT_REQUIRED: 'true' });
      const session = newSession();
      const before = await chat(app, session);
      expect(before.status).toBe(200);
      expect(before.headers.get('x-conversation-id')).toBeNull();
      expect((await readChunks(before.body!)).text).toContain('[DONE]');
      expect(await conversationsOf(app, session)).toEqual([]);
      const create = await call(app, 'POST', '/v1/conversations', { session, body: {} });
      expect(create.status).toBe(403);
      expect(create.json.error).toMatchObject({ type: 'permission_error', code: 'consent_required' });
      expect(create.json.error.message).toContain('POST /v1/privacy/consent');

      const granted = await call(app, 'POST', '/v1/privacy/consent', { session, body: { consent: 'granted' } });
      expect(granted.json).toEqual({ object: 'privacy.consent', consent: 'granted' });
      expect((await call(app, 'GET', '/v1/privacy', { session })).json.consent).toBe('granted');
      const after = await chat(app, session);
      const id = after.headers.get('x-conversation-id');
      expect(id).toBeTruthy();
      await readChunks(after.body!);
      expect((await conversationsOf(app, session)).map((c: any) => c.id)).toEqual([id]);

      await call(app, 'POST', '/v1/privacy/consent', { session, body: { consent: 'denied' } });
      const denied = await chat(app, session);
      expect(denied.headers.get('x-conversation-id')).toBeNull();
      await readChunks(denied.body!);
      expect(await conversationsOf(app, session)).toHaveLength(1);
      const post = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: 'x' } });
      expect(post.json.error.code).toBe('consent_denied');
      // Nor a new title or metadata: a PATCH is a write like the others.
      const patch = await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { title: 'new', metadata: { note: 'x' } } });
      expect(patch.status).toBe(403);
      expect(patch.json.error).toMatchObject({ type: 'permission_error', code: 'consent_denied' });
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { session })).json).toMatchObject({ metadata: {} });
      // What was stored stays readable and deletable.
      expect((await call(app, 'DELETE', `/v1/conversations/${id}`, { session })).status).toBe(200);
    });
  });

  it('opting out works without CONSENT_REQUIRED too, and a header opts one request out', async () => {
    const app = appWith();
    const session = newSession();
    const optedOut = await chat(app, session, {}, { 'x-persist': 'off' });
    expect(optedOut.headers.get('x-conversation-id')).toBeNull();
    await readChunks(optedOut.body!);
    expect((await call(app, 'POST', '/v1/conversations', { session, body: {}, headers: { 'x-persist': 'off' } })).json.error.code).toBe('request_opted_out');
    expect(await conversationsOf(app, session)).toEqual([]);
    const stored = await chat(app, session);
    expect(stored.headers.get('x-conversation-id')).toBeTruthy();
    await readChunks(stored.body!);
    await call(app, 'POST', '/v1/privacy/consent', { session, body: { consent: 'denied' } });
    const after = await chat(app, session);
    expect(after.headers.get('x-conversation-id')).toBeNull();
    await readChunks(after.body!);
    expect(await conversationsOf(app, session)).toHaveLength(1);
  });

  describe('REDACT_SYSTEM_PROMPTS=true', () => {
    it('keeps system messages out of the database on the proxy and the messages endpoint', async () => {
      const app = appWith({ REDACT_SYSTEM_PROMPTS: 'true' });
      const session = newSession();
      const ids: string[] = [];
      for (const stream of [true, false]) {
        const res = await chat(app, session, { stream });
        await res.text();
        const id = res.headers.get('x-conversation-id')!;
        ids.push(id);
        const saved = await waitFor(async () => {
          const c = (await call(app, 'GET', `/v1/conversations/${id}`, { session })).json;
          return c.messages.at(-1)?.role === 'assistant' && c.messages.at(-1).status !== 'streaming' ? c : null;
        });
        expect(saved.messages.map((m: any) => m.role)).toEqual(['user', 'assistant']);
        // The upstream still got the system prompt: redaction is about storage only.
        expect(mock.requests.at(-1)!.body.messages[0]).toEqual({ role: 'system', content: 'SECRET SYSTEM PROMPT' });
        const sys = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'system', content: 'SECRET SYSTEM PROMPT' } });
        expect(sys.status).toBe(202);
        expect(sys.json).toMatchObject({ stored: false, role: 'system' });
        expect((await call(app, 'POST', `/v1/conversations/${id}/messages`, { session: newSession(), body: { role: 'system', content: 'x' } })).status).toBe(404);
      }
      const rows = await db.sql(`select role, content from messages where conversation_id in (${ids.map((i) => `'${i}'`).join(',')})`);
      expect(rows.map((r) => r.role).sort()).toEqual(['assistant', 'assistant', 'user', 'user']);
      expect(JSON.stringify(rows)).not.toContain('SECRET SYSTEM PROMPT');
    });
  });

  it('stores at most 256 characters of a user agent', async () => {
    const app = appWith();
    const session = newSession();
    await call(app, 'POST', '/v1/conversations', { session, body: {}, headers: { 'user-agent': `agent/${'x'.repeat(5000)}` } });
    const [row] = await db.sql(`select user_agent from sessions where id = '${hashSessionId(session)}'`);
    expect(String(row!.user_agent)).toBe(`agent/${'x'.repeat(250)}`);
  });

  it('keeps only a salted hash of the client address, and only when IP_HASH_SALT is set', async () => {
    const salt = 'a-salt-of-sixteen-chars';
    for (const env of [{ IP_HASH_SALT: salt }, {}] as Record<string, string>[]) {
      const server = await startServer(testConfig({ OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1', ...env }), { store: db.store, logger: createLogger('silent') });
      const session = newSession();
      try {
        const res = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers: { 'x-session-id': session, 'content-type': 'application/json', 'user-agent': 'canary-agent/1.0' }, body: '{}' });
        expect(res.status).toBe(201);
      } finally {
        await server.close();
      }
      const [row] = await db.sql(`select * from sessions where id = '${hashSessionId(session)}'`);
      expect(row).toMatchObject({ user_agent: 'canary-agent/1.0', ip_hash: env.IP_HASH_SALT ? createHash('sha256').update(salt).update('127.0.0.1').digest('hex') : null });
      expect(JSON.stringify(row)).not.toContain('127.0.0.1');
    }
  });
});
