import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, newSession, testApp } from './helpers/app.js';
import { postgresAvailable, sharedTestStore, type Dialect } from './helpers/dialects.js';
import { newChatCompletionId, newResponseId } from '../db/store.js';
import { importFile, seedVaried, sessionPrincipal, withoutExportedAt } from './helpers/portability.js';
import { dbUrlOf, runScript } from './helpers/scripts.js';
import { signedInUser } from './helpers/users.js';

/*
 * Moving a history between the two dialects: through the export format (one owner's, over
 * HTTP) and with npm run db:copy (a whole database). Without Postgres these run SQLite to
 * SQLite (helpers/dialects.ts says loudly that Postgres is skipped).
 */
const pairs: [Dialect, Dialect][] = postgresAvailable
  ? [
      ['sqlite', 'postgres'],
      ['postgres', 'sqlite'],
    ]
  : [['sqlite', 'sqlite']];

type Db = Awaited<ReturnType<typeof sharedTestStore>>;

describe.each(pairs)('from %s to %s', (fromDialect, toDialect) => {
  let from: Db;
  beforeAll(async () => {
    from = await sharedTestStore(fromDialect);
  });
  afterAll(async () => {
    await from?.cleanup();
  });

  it('an export imported on the other dialect exports again to the same bytes, but for exported_at', async () => {
    const to = await sharedTestStore(toDialect);
    try {
      const [source, target] = [testApp(from.store), testApp(to.store)];
      const session = newSession();
      await seedVaried(from.store, sessionPrincipal(session));
      // And a conversation recorded through the proxy's own write path.
      await call(source, 'POST', '/v1/conversations', { session, body: { title: 'via the API', metadata: { b: [true, { y: 1, x: 2 }], a: 'é' } } });
      const first = await call(source, 'GET', '/v1/conversations/export?include_deleted=1', { session });
      expect(first.status).toBe(200);

      const other = newSession();
      const imported = await importFile(target, first.text, { session: other });
      expect(imported.json).toMatchObject({ imported: 5, skipped: 0, failed: [] });
      const second = await call(target, 'GET', '/v1/conversations/export?include_deleted=1', { session: other });
      expect(second.text).not.toBe(first.text);
      expect(withoutExportedAt(second.text)).toBe(withoutExportedAt(first.text));
    } finally {
      await to.cleanup();
    }
  });

  it('npm run db:copy copies the whole database, resumes after an interruption and checks both sides', async () => {
    const to = await sharedTestStore(toDialect, { migrate: false });
    try {
      // Every table holds something: users with keys, a share and a public link, anonymous
      // sessions (one that refused consent), an answer still streaming under a lease.
      const source = testApp(from.store);
      const [ada, bob] = [await signedInUser(from.store, 'Ada', { admin: true }), await signedInUser(from.store, 'Bob')];
      const [adaFirst] = await seedVaried(from.store, { sessionId: 'a'.repeat(64), userId: ada.user.id });
      expect((await call(source, 'PUT', `/v1/conversations/${adaFirst}/shares/${bob.user.id}`, { headers: ada.auth, body: { role: 'viewer' } })).status).toBe(200);
      const link = await call(source, 'POST', `/v1/conversations/${adaFirst}/share_link`, { headers: ada.auth });
      const session = newSession();
      await seedVaried(from.store, sessionPrincipal(session));
      await from.store.setConsent(sessionPrincipal(newSession()).sessionId, 'denied');
      const open = await from.store.createConversation(sessionPrincipal(session), { title: 'open' }, { maxPerSession: 1_000 });
      const answerId = crypto.randomUUID();
      await from.store.appendMessages(
        sessionPrincipal(session),
        open.id,
        [{ id: answerId, role: 'assistant', status: 'streaming', content: 'so far', lease: { holder: 'proc-1', expiresAt: new Date(Date.now() + 60_000) } }],
        // Its stored completion record, as the proxy writes it with the answer.
        { maxMessages: 10, completion: { id: newChatCompletionId(), messageId: answerId, model: 'gpt-4.1', metadata: { topic: 'copy' } } },
      );
      // A background response with its first events, as POST /v1/responses writes them.
      const responseId = newResponseId();
      const responseAnswer = crypto.randomUUID();
      const params = { tools: [], temperature: 0.5 };
      const answered = await from.store.createConversation(sessionPrincipal(session), { title: 'a response' }, { maxPerSession: 1_000 });
      await from.store.appendMessages(
        sessionPrincipal(session),
        answered.id,
        [{ id: responseAnswer, role: 'assistant', status: 'final', content: 'done' }],
        { maxMessages: 10, response: { id: responseId, messageId: responseAnswer, inputMessageIds: [], model: 'gpt-4.1', instructions: 'be kind', previousResponseId: null, params, metadata: { a: 'b' }, background: true, createdAt: new Date() } },
      );
      await from.store.appendResponseEvents(responseId, [
        { seq: 0, data: '{"type":"response.created","sequence_number":0}' },
        { seq: 1, data: '{"type":"response.in_progress","sequence_number":1}' },
      ]);
      await from.store.sharedSetting('session_secret', 'kept-secret');

      const args = ['--from', dbUrlOf(from.target), '--to', dbUrlOf(to.target), '--batch-size', '2'];
      const stopped = await runScript('db-copy', [...args, '--max-batches', '4']);
      expect(stopped.code, stopped.stderr).toBe(3);
      expect(JSON.parse(stopped.stdout)).toMatchObject({ object: 'db_copy.result', status: 'stopped', batches: 4 });
      expect(stopped.stderr).toContain('run the same command again to resume');

      const resumed = await runScript('db-copy', args);
      expect(resumed.code, resumed.stderr).toBe(0);
      const result = JSON.parse(resumed.stdout);
      expect(result.status).toBe('verified');
      for (const [table, report] of Object.entries<any>(result.tables)) {
        expect(report.match, table).toBe(true);
        expect(report.source_rows, table).toBe(report.target_rows);
        expect(report.source_rows, table).toBeGreaterThan(0);
      }
      // The resumed run wrote only what the first one had not.
      const copiedFirst = Object.values<any>(JSON.parse(stopped.stdout).tables).reduce((n, t) => n + t.copied, 0);
      const copiedThen = Object.values<any>(result.tables).reduce((n, t) => n + t.copied, 0);
      expect(copiedFirst + copiedThen).toBe(Object.values<any>(result.tables).reduce((n, t) => n + t.source_rows, 0));
      // Four batches of at most two rows.
      expect(copiedFirst).toBeGreaterThan(4);
      expect(copiedFirst).toBeLessThanOrEqual(8);

      // Again: nothing to copy, still verified.
      const again = await runScript('db-copy', args);
      expect(again.code, again.stderr).toBe(0);
      expect(Object.values<any>(JSON.parse(again.stdout).tables).every((t) => t.copied === 0)).toBe(true);

      // A server on the copy serves everyone as before: keys, sessions, shares, links, byte counts.
      const target = testApp(to.store);
      for (const who of [{ headers: ada.auth }, { session }]) {
        const [a, b] = await Promise.all([call(source, 'GET', '/v1/conversations/export?include_deleted=1', who), call(target, 'GET', '/v1/conversations/export?include_deleted=1', who)]);
        expect(withoutExportedAt(b.text)).toBe(withoutExportedAt(a.text));
      }
      expect((await call(target, 'GET', `/v1/conversations/${adaFirst}`, { headers: bob.auth })).json.access).toBe('viewer');
      expect((await call(target, 'GET', `/v1/shared/${link.json.token}`)).status).toBe(200);
      expect((await call(target, 'GET', '/v1/admin/users', { headers: ada.auth })).status).toBe(200);
      expect(await to.store.sharedSetting('session_secret', 'other')).toBe('kept-secret');
      const bytes = 'select id, stored_bytes, last_seq from conversations order by id';
      expect((await to.sql(bytes)).map((r) => [r.id, Number(r.stored_bytes), Number(r.last_seq)])).toEqual(
        (await from.sql(bytes)).map((r) => [r.id, Number(r.stored_bytes), Number(r.last_seq)]),
      );
      const lease = `select status, lease_owner from messages where conversation_id = '${open.id}'`;
      expect(await to.sql(lease)).toEqual([{ status: 'streaming', lease_owner: 'proc-1' }]);

      // A target whose row differs from the source's is kept as it is, and the check says so
      // (the server above has also written to it: a key's last use, a session's last visit).
      await to.sql(`update messages set content = 'tampered' where id = (select min(id) from messages)`);
      const differs = await runScript('db-copy', args);
      expect(differs.code).toBe(1);
      expect(JSON.parse(differs.stdout).tables.messages).toMatchObject({ match: false, copied: 0 });
      expect(differs.stderr).toMatch(/differs from the source in .*messages/);
    } finally {
      await to.cleanup();
    }
  }, 120_000);
});

describe('npm run db:copy: usage', () => {
  it.each([
    [[], /--from DB_URL is required/],
    [['--from', 'file:/tmp/a.db'], /--to DB_URL is required/],
    [['--from', 'mysql://x/y', '--to', 'file:/tmp/b.db'], /--from must start with file:/],
    [['--from', 'file:/tmp/a.db', '--to', 'file:/tmp/a.db'], /the same database/],
    [['--from', 'file::memory:', '--to', 'file:/tmp/b.db'], /file::memory: is a database of this process only/],
    [['--from', 'file:/tmp/a.db', '--to', 'file:/tmp/b.db', '--batch-size', '0'], /--batch-size must be a whole number/],
  ])('refuses %j with exit 2 and one line', async (args, message) => {
    const res = await runScript('db-copy', args as string[]);
    expect(res.code).toBe(2);
    expect(res.stderr.trim()).toMatch(message);
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
  });
});
