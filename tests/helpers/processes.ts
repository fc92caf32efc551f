import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { createStore } from '../../db/index.js';
import type { Store } from '../../db/store.js';
import type { DbTarget } from '../../db/url.js';
import { scratchDatabase, type Dialect, type ScratchDb } from './dialects.js';
import { startServerProcess, type ServerProcess } from './server-process.js';

export const dbUrlOf = (t: DbTarget) => (t.dialect === 'sqlite' ? `file:${t.path}` : t.url);

/**
 * Real server processes sharing one scratch database (a file for SQLite, so several processes
 * reach it), for tests of what processes do together. Call inside a describe: the database is
 * made before its tests, and the processes killed and the database dropped after them.
 * `server()` starts one with persistence on and `env()` (read when it starts) plus `extra`;
 * `store` reads the same database from the test.
 */
export function useProcessesOnOneDatabase(dialect: Dialect, name: string, env: () => Record<string, string>) {
  let db: ScratchDb;
  let store: Store | undefined;
  const children: ServerProcess[] = [];

  beforeAll(async () => {
    db =
      dialect === 'sqlite'
        ? { target: { dialect: 'sqlite', path: join(tmpdir(), `${name}-${process.pid}-${Date.now()}.db`) }, drop: async () => {} }
        : await scratchDatabase('postgres');
  });
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
    await store?.close();
    await db?.drop();
    if (db?.target.dialect === 'sqlite') for (const ext of ['', '-wal', '-shm']) rmSync(db.target.path + ext, { force: true });
  });

  return {
    async server(extra: Record<string, string> = {}): Promise<ServerProcess> {
      const s = await startServerProcess({ PERSIST_TRANSCRIPTS: 'true', DB_URL: dbUrlOf(db.target), ...env(), ...extra });
      children.push(s);
      store ??= createStore(db.target, { max: 2 });
      return s;
    },
    /** The shared database, as the test reads it (open once a server has started). */
    get store(): Store {
      return store!;
    },
    get target(): DbTarget {
      return db.target;
    },
  };
}
