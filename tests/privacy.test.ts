import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../app/logger.js';
import { sweepRetention } from '../app/privacy/retention.js';
import { startServer } from '../app/server.js';
import { hashSessionId } from '../app/session-ids.js';
import { call, capturingLogger, newSession, testApp, testConfig, type TestApp } from './helpers/app.js';
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
      expect((await call(app, 'DELETE', `/v1/conversations/${id}`, { session })).status).toBe(204);
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

  describe('retention', () => {
    it('deletes idle conversations unless pinned, purges soft-deleted ones after the grace period, in batches', async () => {
      const app = appWith();
      const session = newSession();
      const make = async (title: string, metadata: Record<string, unknown> = {}) => {
        const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: { title, metadata } })).json;
        await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: title } });
        return id as string;
      };
      const old = await Promise.all(Array.from({ length: 7 }, (_, i) => make(`old ${i}`)));
      const pinned = await make('old pinned', { pinned: true });
      const notPinned = await make('old pinned:"true"', { pinned: 'true' });
      const fresh = await make('fresh');
      const deletedLongAgo = await make('deleted long ago');
      const deletedRecently = await make('deleted recently');
      await call(app, 'DELETE', `/v1/conversations/${deletedLongAgo}`, { session });
      await call(app, 'DELETE', `/v1/conversations/${deletedRecently}`, { session });
      const backdate = async (ids: string[], column: string, days: number) => {
        const ago = Date.now() - days * 86_400_000;
        const value = dialect === 'sqlite' ? String(ago) : `'${new Date(ago).toISOString()}'`;
        await db.sql(`update conversations set ${column} = ${value} where id in (${ids.map((i) => `'${i}'`).join(',')})`);
      };
      await backdate([...old, pinned, notPinned], 'updated_at', 31);
      await backdate([deletedLongAgo], 'deleted_at', 8);

      const deleted = await sweepRetention(db.store, { days: 30, deletedDays: 7, batchSize: 3 }, createLogger('silent'));
      expect(deleted).toBe(9);
      const left = (await call(app, 'GET', '/v1/conversations?include_deleted=1&limit=100', { session })).json.items.map((c: any) => c.id);
      expect(left.sort()).toEqual([pinned, fresh, deletedRecently].sort());
      // Their messages went with them (ON DELETE CASCADE).
      const orphans = await db.sql(`select count(*) as n from messages where conversation_id in (${old.map((i) => `'${i}'`).join(',')})`);
      expect(Number(orphans[0]!.n)).toBe(0);
      // RETENTION_DAYS=0 keeps everything idle forever.
      await backdate([fresh], 'updated_at', 3650);
      expect(await sweepRetention(db.store, { days: 0, deletedDays: 7, batchSize: 3 }, createLogger('silent'))).toBe(0);
    });

    it('skips and reports idle conversations whose metadata the database cannot read, and sweeps the rest', async () => {
      const app = appWith();
      const session = newSession();
      const make = async () => (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json.id as string;
      const [unreadable, idle] = [await make(), await make()];
      // Written before metadata was capped: nested past what SQLite's JSON functions parse.
      const deep = `${'{"a":'.repeat(1200)}1${'}'.repeat(1200)}`;
      if (dialect === 'sqlite') await db.sql(`update conversations set metadata = '${deep}' where id = '${unreadable}'`);
      const ago = Date.now() - 40 * 86_400_000;
      await db.sql(`update conversations set updated_at = ${dialect === 'sqlite' ? ago : `'${new Date(ago).toISOString()}'`} where id in ('${unreadable}', '${idle}')`);
      const log = capturingLogger();
      // Other tests' rows share this database: look only at these two.
      await sweepRetention(db.store, { days: 30, deletedDays: 7, batchSize: 1 }, log.logger);
      const left = (await db.sql(`select id from conversations where id in ('${unreadable}', '${idle}')`)).map((r) => r.id);
      if (dialect === 'sqlite') {
        expect(left).toEqual([unreadable]);
        expect(log.text()).toMatch(/metadata the database cannot read/);
        expect(log.text()).toContain(unreadable);
        // Deleting it by id still works, and then the sweep purges it like any deleted one.
        expect((await call(app, 'DELETE', `/v1/conversations/${unreadable}`, { session })).status).toBe(204);
        // (a second on: deleted "before now" must not depend on the clock having moved on)
        await sweepRetention(db.store, { days: 30, deletedDays: 0, batchSize: 10 }, log.logger, new Date(Date.now() + 1000));
        expect(await db.sql(`select id from conversations where id = '${unreadable}'`)).toEqual([]);
      } else {
        // jsonb is always readable (Postgres refuses such a value at write): both were idle.
        expect(left).toEqual([]);
      }
    });

    it('purges idle sessions with nothing left, but keeps a refusal of consent', async () => {
      const app = appWith();
      const [empty, refused, withData] = [newSession(), newSession(), newSession()];
      await call(app, 'POST', '/v1/privacy/consent', { session: empty, body: { consent: 'granted' } });
      await call(app, 'POST', '/v1/privacy/consent', { session: refused, body: { consent: 'denied' } });
      const { id } = (await call(app, 'POST', '/v1/conversations', { session: withData, body: { metadata: { pinned: true } } })).json;
      const hashes = [empty, refused, withData].map(hashSessionId);
      const ago = Date.now() - 40 * 86_400_000;
      await db.sql(`update sessions set last_seen_at = ${dialect === 'sqlite' ? ago : `'${new Date(ago).toISOString()}'`} where id in (${hashes.map((h) => `'${h}'`).join(',')})`);
      await db.sql(`update conversations set updated_at = ${dialect === 'sqlite' ? ago : `'${new Date(ago).toISOString()}'`} where id = '${id}'`);
      await sweepRetention(db.store, { days: 30, deletedDays: 7, batchSize: 500 }, createLogger('silent'));
      const left = (await db.sql(`select id from sessions where id in (${hashes.map((h) => `'${h}'`).join(',')})`)).map((r) => r.id);
      expect(left.sort()).toEqual([hashes[1], hashes[2]].sort());
    });

    it('counts streamed answers towards MAX_BYTES_PER_SESSION once they finish', async () => {
      const app = appWith({ MAX_BYTES_PER_SESSION: '2000' });
      const session = newSession();
      const res = await chat(app, session, { messages: [{ role: 'user', content: 'hello' }], mock: { text: 'abcdefghij'.repeat(100), chunks: 100 } });
      await readChunks(res.body!);
      const id = res.headers.get('x-conversation-id')!;
      await waitFor(async () => (await call(app, 'GET', `/v1/conversations/${id}`, { session })).json.messages?.[1]?.status === 'final');
      const [row] = await db.sql(`select stored_bytes from conversations where id = '${id}'`);
      expect(Number(row!.stored_bytes)).toBe(5 + 1000);
      const more = await chat(app, session, { conversation_id: id, messages: [{ role: 'user', content: 'x'.repeat(996) }] });
      expect(more.status).toBe(429);
      expect((await more.json()).error.code).toBe('limit_exceeded');
      expect(mock.requests).toHaveLength(1);
    });

    it('stores at most 256 characters of a user agent', async () => {
      const app = appWith();
      const session = newSession();
      await call(app, 'POST', '/v1/conversations', { session, body: {}, headers: { 'user-agent': `agent/${'x'.repeat(5000)}` } });
      const [row] = await db.sql(`select user_agent from sessions where id = '${hashSessionId(session)}'`);
      expect(String(row!.user_agent)).toBe(`agent/${'x'.repeat(250)}`);
    });

    it('runs once from the command line with npm run retention', async () => {
      const app = appWith();
      const session = newSession();
      const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
      await db.sql(`update conversations set updated_at = ${dialect === 'sqlite' ? Date.now() - 40 * 86_400_000 : `now() - interval '40 days'`} where id = '${id}'`);
      const dbUrl = db.target.dialect === 'sqlite' ? `file:${db.target.path}` : db.target.url;
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'scripts/retention.ts'], {
        cwd: resolve(import.meta.dirname, '..'),
        env: { PATH: process.env.PATH, DB_URL: dbUrl, LOG_LEVEL: 'silent' },
      });
      expect(stdout).toMatch(/retention: deleted [1-9]\d* conversation/);
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { session })).status).toBe(404);
    });
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

  describe('observability', () => {
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
      const res = await call(appWith(), 'GET', '/healthz');
      expect(res.json.persistence).toMatchObject({ enabled: true, dialect, ok: true });
      expect(res.json.persistence.conversations).toBeGreaterThan(0);
      expect(res.json.persistence.messages).toBeGreaterThan(0);
    });
  });
});
