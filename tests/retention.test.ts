import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../app/logger.js';
import { sweepRetention } from '../app/privacy/retention.js';
import { hashSessionId } from '../app/session-ids.js';
import { call, capturingLogger, newSession, testApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';

/*
 * The retention sweep (RETENTION_DAYS, DELETED_RETENTION_DAYS, RETENTION_BATCH_SIZE), on each
 * dialect: what it deletes, what it keeps, and `npm run retention`. Rows are aged by rewriting
 * their timestamps, never by waiting.
 */

describe.each(dialects)('retention on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  beforeAll(async () => {
    db = await sharedTestStore(dialect);
  });
  afterAll(async () => {
    await db?.cleanup();
  });
  const appWith = (env: Record<string, string> = {}) => testApp(db.store, env);

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
      expect((await call(app, 'DELETE', `/v1/conversations/${unreadable}`, { session })).status).toBe(200);
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
