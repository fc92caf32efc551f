import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../app/server.js';
import { postgresAvailable, scratchDatabase, TEST_DATABASE_URL, type ScratchDb } from './helpers/dialects.js';
import { testConfig } from './helpers/app.js';
import { createLogger } from '../app/logger.js';

/** DB_POOL_MAX bounds the connections one server process opens to Postgres, however many requests come. */
describe.skipIf(!postgresAvailable)('DB_POOL_MAX', () => {
  let db: ScratchDb;
  let server: RunningServer;
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });

  beforeAll(async () => {
    db = await scratchDatabase('postgres');
    const url = db.target.dialect === 'postgres' ? db.target.url : '';
    server = await startServer(testConfig({ PERSIST_TRANSCRIPTS: 'true', DB_URL: url, DB_POOL_MAX: '2', PORT: '0', HOST: '127.0.0.1', UI_ENABLED: 'false' }), { logger: createLogger('silent') });
  });
  afterAll(async () => {
    await server?.close();
    await db?.drop();
    await admin.end();
  });

  it('keeps to its pool (plus the one LISTEN connection) under 40 requests at once, and answers them all', async () => {
    const name = new URL(db.target.dialect === 'postgres' ? db.target.url : 'x:').pathname.slice(1);
    const seen: number[] = [];
    const statuses = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await fetch(`${server.url}/v1/conversations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
        const [row] = await admin<{ n: number }[]>`select count(*)::int as n from pg_stat_activity where datname = ${name}`;
        seen.push(row!.n);
        return res.status;
      }),
    );
    expect(statuses.every((s) => s === 201)).toBe(true);
    expect(Math.max(...seen)).toBeLessThanOrEqual(3);
  });
});
