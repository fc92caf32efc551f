import postgres from 'postgres';
import { createStore } from '../../db/index.js';
import type { Store } from '../../db/store.js';
import type { DbTarget } from '../../db/url.js';

/**
 * Every persistence test runs once per dialect through the same code. Postgres tests each get a
 * scratch database (created here, dropped on cleanup) so files can run in parallel.
 */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const requirePostgres = Boolean(process.env.CI || process.env.REQUIRE_POSTGRES);

async function postgresReachable(): Promise<boolean> {
  const sql = postgres(TEST_DATABASE_URL, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch (err) {
    if (requirePostgres) {
      throw new Error(`Postgres is required (CI or REQUIRE_POSTGRES is set) but ${TEST_DATABASE_URL} is unreachable: ${(err as Error).message}`);
    }
    console.warn(
      `\n!!! Postgres at ${TEST_DATABASE_URL} is unreachable (${(err as Error).message}).\n!!! Postgres tests are SKIPPED. Set TEST_DATABASE_URL or start Postgres; CI fails instead of skipping.\n`,
    );
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

export const postgresAvailable = await postgresReachable();

export interface ScratchDb {
  target: DbTarget;
  drop(): Promise<void>;
}

/** A fresh, empty database of the dialect; `drop` removes it (and is safe to call twice). */
export async function scratchDatabase(dialect: Dialect): Promise<ScratchDb> {
  if (dialect === 'sqlite') return { target: { dialect: 'sqlite', path: ':memory:' }, drop: async () => {} };
  const name = `test_${Date.now().toString(36)}_${crypto.randomUUID().replaceAll('-', '').slice(0, 10)}`;
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  return {
    target: { dialect: 'postgres', url: url.toString() },
    async drop() {
      if (dropped) return;
      dropped = true;
      const sql = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
      await sql.unsafe(`drop database if exists "${name}" with (force)`);
      await sql.end();
    },
  };
}

export type Dialect = 'sqlite' | 'postgres';
export const dialects: Dialect[] = postgresAvailable ? ['sqlite', 'postgres'] : ['sqlite'];

export interface TestStore {
  store: Store;
  target: DbTarget;
  cleanup(): Promise<void>;
}

/** A migrated store on a scratch database. */
export async function testStore(dialect: Dialect): Promise<TestStore> {
  const db = await scratchDatabase(dialect);
  const store = createStore(db.target, { max: 4 });
  await store.migrate();
  return {
    store,
    target: db.target,
    async cleanup() {
      await store.close();
      await db.drop();
    },
  };
}

/**
 * A migrated store on a scratch database that other connections can reach too (a SQLite file
 * rather than :memory:), for tests that inspect or tamper with the rows directly.
 */
export async function sharedTestStore(
  dialect: Dialect,
  { migrate = true }: { migrate?: boolean } = {},
): Promise<TestStore & { sql(query: string): Promise<Record<string, unknown>[]>; migrateWith(folder: string): Promise<void> }> {
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  let db: ScratchDb;
  let dir: string | null = null;
  if (dialect === 'sqlite') {
    dir = mkdtempSync(join(tmpdir(), 'chat-proxy-'));
    db = { target: { dialect: 'sqlite', path: join(dir, 'test.db') }, drop: async () => {} };
  } else {
    db = await scratchDatabase('postgres');
  }
  const store = createStore(db.target, { max: 4 });
  if (migrate) await store.migrate();
  const target = db.target;
  const { default: Database } = await import('better-sqlite3');
  const raw = target.dialect === 'sqlite' ? new Database(target.path) : postgres(target.url, { max: 1, onnotice: () => {} });
  // Writes through this connection fire the search index's triggers, which call this function.
  if (raw instanceof Database) (await import('../../db/sqlite/search-index.js')).registerSearchFunctions(raw);
  return {
    store,
    target,
    /** Applies the migrations of another folder (e.g. an older version's) on a connection of its own. */
    async migrateWith(folder) {
      if (raw instanceof Database) {
        // As the SQLite store registers it before it migrates (0003 hashes session ids with it).
        const { createHash } = await import('node:crypto');
        raw.function('chat_proxy_sha256_hex', { deterministic: true }, (v: unknown) => (v == null ? null : createHash('sha256').update(String(v)).digest('hex')));
        const { drizzle } = await import('drizzle-orm/better-sqlite3');
        const { migrate } = await import('drizzle-orm/better-sqlite3/migrator');
        migrate(drizzle(raw), { migrationsFolder: folder });
      } else {
        const { drizzle } = await import('drizzle-orm/postgres-js');
        const { migrate } = await import('drizzle-orm/postgres-js/migrator');
        await migrate(drizzle(raw as postgres.Sql), { migrationsFolder: folder });
      }
    },
    async sql(query) {
      if (raw instanceof Database) {
        const statement = raw.prepare(query);
        return statement.reader ? (statement.all() as Record<string, unknown>[]) : (statement.run(), []);
      }
      return [...(await (raw as postgres.Sql).unsafe(query))] as Record<string, unknown>[];
    },
    async cleanup() {
      await store.close();
      if (raw instanceof Database) raw.close();
      else await (raw as postgres.Sql).end();
      await db.drop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    },
  };
}
