import { SignJWT } from 'jose';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { createLogger } from '../app/logger.js';
import { startServer, type RunningServer } from '../app/server.js';
import { capturingLogger, newSession, testApp, testConfig } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { startScriptedUpstream } from './helpers/scripted-upstream.js';
import { streamedContent, waitFor } from './helpers/streams.js';

// Distinctive values planted everywhere a secret could come from; none may be stored or logged.
const CANARIES = {
  upstreamKey: 'sk-CANARY-UPSTREAM-KEY-7f3a9',
  clientAuth: 'CANARY-CLIENT-BEARER-2b8e1',
  cookie: 'CANARY-COOKIE-VALUE-5d0c4',
  sessionCookie: 'CANARYSESSIONCOOKIE6a1f',
  header: 'CANARY-CUSTOM-HEADER-9e7b2',
  org: 'CANARY-ORG-HEADER-3c5d8',
};

const mock = useMockUpstream();

describe.each(dialects)('secret hygiene on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let server: RunningServer;
  const log = capturingLogger();

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    const config = testConfig({ OPENAI_BASE_URL: mock.url, OPENAI_API_KEY: CANARIES.upstreamKey, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'debug' });
    server = await startServer(config, { store: db.store, logger: log.logger });
  });
  afterAll(async () => {
    await server?.close().catch(() => {});
    await db?.cleanup();
  });

  it('stores and logs none of the keys, authorization headers, cookies or custom headers', async () => {
    const session = newSession();
    const headers = {
      'content-type': 'application/json',
      'x-session-id': session,
      authorization: `Bearer ${CANARIES.clientAuth}`,
      cookie: `cf_session_id=${CANARIES.sessionCookie}; tracker=${CANARIES.cookie}`,
      'x-custom-thing': CANARIES.header,
      'openai-organization': CANARIES.org,
    };
    const send = (body: Record<string, unknown>) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify({ messages: [{ role: 'user', content: 'hello' }], ...body }),
      });
    const ids: string[] = [];
    const keep = (res: Response) => ids.push(res.headers.get('x-conversation-id')!);

    for (const stream of [true, false]) {
      const ok = await send({ stream });
      keep(ok);
      await ok.text();
      const failing = await send({ stream, mock: { fault: 'status', status: 401, error_body: { error: { message: 'bad key', type: 'auth' } } } });
      keep(failing);
      expect(failing.status).toBe(401);
      await failing.text();
    }
    const dropped = await send({ stream: true, mock: { fault: 'drop', chunks: 10 } });
    keep(dropped);
    await dropped.text();
    const aborted = await send({ stream: true, mock: { chunks: 300, delay_ms: 10 } });
    keep(aborted);
    const reader = aborted.body!.getReader();
    await reader.read();
    await reader.cancel();
    const created = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers, body: JSON.stringify({ title: 'explicit' }) });
    expect(created.status).toBe(201);

    // Wait until every answer is recorded, then read every column of every table.
    await waitFor(async () => (await db.sql(`select count(*) as n from messages where status = 'streaming'`))[0]!.n == 0);
    expect(ids.every(Boolean)).toBe(true);
    const tables = dialect === 'sqlite'
      ? (await db.sql(`select name from sqlite_master where type = 'table'`)).map((r) => String(r.name))
      : (await db.sql(`select table_schema || '.' || table_name as name from information_schema.tables where table_schema in ('public', 'drizzle')`)).map((r) => String(r.name));
    expect(tables).toEqual(expect.arrayContaining([expect.stringMatching(/sessions$/), expect.stringMatching(/conversations$/), expect.stringMatching(/messages$/)]));
    let everything = '';
    for (const table of tables) everything += JSON.stringify(await db.sql(`select * from ${table}`));
    // The dump is real: the session is there, as its hash, never as the id a client could reuse.
    expect(everything).toContain(hashSessionId(session));
    expect(everything).not.toContain(session);
    expect(everything).toContain('hello');

    await server.close();
    const logs = log.text();
    expect(logs).toContain('"msg":"request"');
    for (const [name, value] of Object.entries(CANARIES)) {
      expect(everything, `${name} found in the database`).not.toContain(value);
      expect(logs, `${name} found in the logs`).not.toContain(value);
    }
    // The upstream, on the other hand, did get the server's key, and only that.
    expect(mock.requests.every((r) => r.headers.authorization === `Bearer ${CANARIES.upstreamKey}`)).toBe(true);
  });

  it('stores and logs none of the API keys, JWTs or the admin key, accepted or refused', async () => {
    const adminKey = 'CANARY-ADMIN-KEY-0123456789-abcdefghijkl';
    const jwtSecret = 'CANARY-JWT-SECRET-0123456789-abcdefghijk';
    const capture = capturingLogger();
    const config = testConfig({ OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'debug', ADMIN_API_KEY: adminKey, AUTH_JWT_SECRET: jwtSecret });
    const running = await startServer(config, { store: db.store, logger: capture.logger });
    const secrets: Record<string, string> = { adminKey, jwtSecret };
    try {
      const send = (path: string, authorization: string, body?: unknown) =>
        fetch(`${running.url}${path}`, {
          method: body === undefined ? 'GET' : 'POST',
          headers: { authorization: `Bearer ${authorization}`, 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
      const made = await send('/v1/admin/users', adminKey, { name: 'canary user' });
      expect(made.status).toBe(201);
      const key = await send(`/v1/admin/users/${((await made.json()) as { id: string }).id}/api_keys`, adminKey, { name: 'canary key' });
      secrets.apiKey = ((await key.json()) as { key: string }).key;
      secrets.jwt = await new SignJWT({ name: 'Canary' }).setProtectedHeader({ alg: 'HS256' }).setSubject('canary-subject').setExpirationTime('5m').sign(new TextEncoder().encode(jwtSecret));
      secrets.badKey = 'cpk_CANARYBADKEY0123456789abcdefghijklmnopqrstu';
      secrets.badJwt = `${secrets.jwt.slice(0, -6)}AAAAAA`;
      const chat = { messages: [{ role: 'user', content: 'hello' }] };
      expect((await send('/v1/chat/completions', secrets.apiKey, chat)).status).toBe(200);
      expect((await send('/v1/chat/completions', secrets.jwt, chat)).status).toBe(200);
      expect((await send('/v1/conversations', secrets.badKey)).status).toBe(401);
      expect((await send('/v1/conversations', secrets.badJwt)).status).toBe(401);
      expect((await send('/v1/me', adminKey)).status).toBe(200);
    } finally {
      await running.close();
    }
    const tables =
      dialect === 'sqlite'
        ? (await db.sql(`select name from sqlite_master where type = 'table'`)).map((r) => String(r.name))
        : (await db.sql(`select table_name as name from information_schema.tables where table_schema = 'public'`)).map((r) => String(r.name));
    expect(tables).toEqual(expect.arrayContaining(['users', 'api_keys']));
    let everything = '';
    for (const table of tables) everything += JSON.stringify(await db.sql(`select * from ${table}`));
    expect(everything).toContain('canary-subject'); // the JWT's user is there, by its subject only
    const logs = capture.text();
    expect(logs).toContain('"msg":"request"');
    for (const [name, value] of Object.entries(secrets)) {
      expect(everything, `${name} found in the database`).not.toContain(value);
      expect(logs, `${name} found in the logs`).not.toContain(value);
    }
  });

  it('logs no message content when the database fails under a stream and a request', async () => {
    // Database errors carry the statement's parameters (Drizzle even puts them in its message):
    // here, the text being written. Only their type, code and a message without data may be logged.
    const question = 'CANARY-QUESTION-4e1b7';
    const answerPiece = 'CANARY-ANSWER-8c2d6 ';
    const capture = capturingLogger();
    const config = testConfig({
      OPENAI_BASE_URL: mock.url,
      PORT: '0',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      HISTORY_BATCH_FLUSH_CHARS: '16',
      HISTORY_BATCH_FLUSH_MS: '10',
    });
    const faulty = await startServer(config, { store: db.store, logger: capture.logger });
    const outage = await databaseOutage(db);
    try {
      const session = newSession();
      const send = (content: string, mockOptions: object) =>
        fetch(`${faulty.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session },
          body: JSON.stringify({ messages: [{ role: 'user', content }], stream: true, mock: mockOptions }),
        });
      const streaming = await send(`${question} streamed`, { text: answerPiece.repeat(40), chunks: 40, delay_ms: 5 });
      const reader = streaming.body!.getReader();
      const decoder = new TextDecoder();
      let text = decoder.decode((await reader.read()).value, { stream: true });
      // The request is recorded; now the database goes, while the answer streams on.
      await outage.begin();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value, { stream: true });
      }
      expect(streamedContent(text)).toBe(answerPiece.repeat(40));
      await waitFor(() => capture.text().includes('history write failed; will retry'));

      // A request that cannot be recorded, with its content in the failing statement.
      const refused = await send(`${question} refused`, {});
      expect(refused.status).toBeGreaterThanOrEqual(500);
      await refused.text();
      // Its error is logged (as a fault, or as the expected 503 while the database is away).
      await waitFor(() => /"status":5\d\d/.test(capture.text()));

      await outage.end();
      const id = streaming.headers.get('x-conversation-id')!;
      const stored = await waitFor(async () => {
        const res = await fetch(`${faulty.url}/v1/conversations/${id}`, { headers: { 'x-session-id': session } });
        const answer = ((await res.json()) as { messages?: any[] }).messages?.[1];
        return answer?.status === 'final' ? answer : null;
      }, 20_000);
      expect(stored.content).toBe(answerPiece.repeat(40));
    } finally {
      await outage.end();
      await outage.close();
      await faulty.close();
    }

    const logs = capture.text();
    expect(logs).toContain('history write failed; will retry');
    expect(logs, 'the question in the logs').not.toContain(question);
    expect(logs, 'the answer in the logs').not.toContain(answerPiece.trim());
    // What went wrong is still there: the error's code.
    // (A killed connection shows as the server's 57P01 or, when the socket goes first, ECONNRESET.)
    expect(logs).toMatch(dialect === 'sqlite' ? /"code":"SQLITE_BUSY"/ : /"code":"(55P03|57P01|08\w{3}|ECONNRESET|EPIPE|CONNECTION_\w+)"/);
  });

  it('logs an upstream line that is not SSE as skipped, without its text', async () => {
    const canary = 'CANARYLINE5f2e9';
    const event = (delta: object, finish: string | null = null) =>
      `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    const body = Buffer.from(`${event({ content: 'Hi' })}${canary} said the model\n\n${event({}, 'stop')}data: [DONE]\n\n`);
    const upstream = await startScriptedUpstream(() => ({ contentType: 'text/event-stream', body, at: body.length, then: 'rest' }));
    const capture = capturingLogger();
    try {
      const app = testApp(db.store, { OPENAI_BASE_URL: upstream.url }, capture.logger);
      const res = await app.request('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-session-id': newSession() },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true }),
      });
      expect(await res.text()).toContain(canary); // passed on untouched
      await waitFor(() => capture.text().includes('"stream_outcome"'));
    } finally {
      await upstream.close();
    }
    expect(capture.text()).toContain('skipped an unreadable upstream event');
    expect(capture.text()).not.toContain(canary);
    expect(capture.text()).toContain('unknown-field');
  });
});

/**
 * Makes every write fail until `end`. SQLite: another connection holds the write lock. Postgres:
 * the store's connections are killed, and those it opens again give up on locks after 100 ms
 * while another connection holds the messages table.
 */
async function databaseOutage(db: Awaited<ReturnType<typeof sharedTestStore>>) {
  let down = false;
  if (db.target.dialect === 'sqlite') {
    return {
      begin: async () => void (await db.sql('BEGIN IMMEDIATE'), (down = true)),
      end: async () => void (down && (await db.sql('COMMIT'), (down = false))),
      close: async () => {},
    };
  }
  const name = new URL(db.target.url).pathname.slice(1);
  const admin = postgres(db.target.url, { max: 1, onnotice: () => {} });
  const holder = await admin.reserve();
  return {
    async begin() {
      down = true;
      await holder.unsafe(`alter database "${name}" set lock_timeout = '100ms'`);
      await holder`begin`;
      await holder`lock table messages in exclusive mode`;
      await holder`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
    },
    async end() {
      if (!down) return;
      down = false;
      await holder`commit`;
      await holder.unsafe(`alter database "${name}" reset lock_timeout`);
    },
    async close() {
      await this.end();
      holder.release();
      await admin.end();
    },
  };
}

describe('error serializer', () => {
  it('logs a database error by type, code and cause, without parameters, query or values', () => {
    const secret = 'CANARY-PARAM-91f3a';
    const driver = Object.assign(new Error(`invalid input syntax for type uuid: "${secret}"`), {
      code: '22P02',
      query: `select * from t where id = '${secret}'`,
      parameters: [secret],
      args: [secret],
    });
    class DrizzleQueryError extends Error {
      constructor(
        readonly query: string,
        readonly params: unknown[],
        cause: unknown,
      ) {
        super(`Failed query: ${query}\nparams: ${params}`);
        this.cause = cause;
      }
    }
    const lines: string[] = [];
    const log = createLogger('debug', { write: (line: string) => void lines.push(line) });
    log.warn({ err: new DrizzleQueryError('update messages set content = content || $1', [`${secret} text`], driver) }, 'write failed');
    log.error(new DrizzleQueryError('insert into messages values ($1)', [secret], driver), 'as the first argument');
    expect(lines).toHaveLength(2);
    for (const line of lines) {
      expect(line).not.toContain(secret);
      const { err } = JSON.parse(line);
      expect(err).toMatchObject({
        type: 'DrizzleQueryError',
        code: '22P02',
        message: 'invalid input syntax for type uuid: "…"',
        cause: { type: 'Error', code: '22P02', message: 'invalid input syntax for type uuid: "…"' },
      });
      expect(Object.keys(err).sort()).toEqual(['cause', 'code', 'message', 'stack', 'type']);
      expect(err.stack).toMatch(/^\s+at /);
    }
  });
});
