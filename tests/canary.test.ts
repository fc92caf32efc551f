import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/middleware/session.js';
import { startServer, type RunningServer } from '../app/server.js';
import { capturingLogger, newSession, testConfig } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { waitFor } from './helpers/streams.js';

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
});
