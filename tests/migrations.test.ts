import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { createStore } from '../db/index.js';
import { postgresAvailable, scratchDatabase } from './helpers/dialects.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');

// The committed migrations must be exactly what drizzle-kit generates from the schemas: a schema
// change without its migration would pass every test on a fresh database and fail in production.
describe.each([
  ['sqlite', 'sqlite'],
  ['postgresql', 'pg'],
])('committed %s migrations', (dialect, folder) => {
  it('match the schema (drizzle-kit generate finds nothing to add)', async () => {
    // drizzle-kit reads `out` relative to the working directory, so the scratch copy lives inside the project.
    const work = join(root, 'test-results', `migrations-${folder}-${process.pid}`);
    mkdirSync(work, { recursive: true });
    try {
      cpSync(join(root, 'drizzle', folder), join(work, 'out'), { recursive: true });
      const config = join(work, 'drizzle.config.mjs');
      writeFileSync(
        config,
        `export default ${JSON.stringify({ dialect, schema: join(root, 'db', folder, 'schema.ts'), out: relative(root, join(work, 'out')) })};\n`,
      );
      const before = readdirSync(join(work, 'out')).sort();
      const { stdout, stderr } = await run(join(root, 'node_modules/.bin/drizzle-kit'), ['generate', '--config', config], { cwd: root });
      const output = stdout + stderr;
      expect(readdirSync(join(work, 'out')).sort(), output).toEqual(before);
      expect(output).toMatch(/No schema changes/);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
  }, 60_000);
});

// Several server processes may start against one fresh Postgres at once: the advisory lock
// makes one migrate while the others wait (without it, most fail on "already exists").
describe.skipIf(!postgresAvailable)('Postgres migrations started at once', () => {
  it('all succeed, one after the other', async () => {
    const db = await scratchDatabase('postgres');
    const stores = Array.from({ length: 4 }, () => createStore(db.target, { max: 1 }));
    try {
      const results = await Promise.allSettled(stores.map((s) => s.migrate()));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      expect(await stores[0]!.counts()).toEqual({ conversations: 0, messages: 0 });
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await db.drop();
    }
  });
});
