import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { call, testApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { createStore } from '../db/index.js';
import { postgresAvailable, scratchDatabase } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const mock = useMockUpstream();

/** A copy of a dialect's migrations as a previous version shipped them: the first `count`. */
function previousMigrations(folder: string, count: number): string {
  const partial = join(root, 'test-results', `migrations-partial-${folder}-${count}-${process.pid}`);
  cpSync(join(root, 'drizzle', folder), partial, { recursive: true });
  const journal = JSON.parse(readFileSync(join(partial, 'meta/_journal.json'), 'utf8'));
  journal.entries = journal.entries.filter((e: { idx: number }) => e.idx < count);
  writeFileSync(join(partial, 'meta/_journal.json'), JSON.stringify(journal));
  return partial;
}

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

// Upgrading keeps every conversation reachable: rows written by the previous version, which kept
// session ids in clear, are rewritten to the hashes the server now looks them up by.
describe.each(dialects)('upgrading a %s database written before session ids were hashed', (dialect) => {
  it('hashes the stored session ids and counts the stored bytes, so old conversations stay reachable', async () => {
    const db = await sharedTestStore(dialect, { migrate: false });
    const folder = dialect === 'sqlite' ? 'sqlite' : 'pg';
    // The migrations as the previous version shipped them: 0000 and 0001.
    const partial = previousMigrations(folder, 2);
    try {
      await db.migrateWith(partial);
      const now = dialect === 'sqlite' ? String(Date.now()) : 'now()';
      await db.sql(`insert into sessions (id, created_at, last_seen_at) values ('legacy-session-1', ${now}, ${now})`);
      await db.sql(`insert into conversations (id, session_id, title, metadata, last_seq, created_at, updated_at) values ('c-legacy', 'legacy-session-1', 'old', '{}', 2, ${now}, ${now})`);
      await db.sql(`insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at) values ('m-legacy', 'c-legacy', 'user', 'final', 'héllo', 1, ${now}, ${now})`);
      // JSON counts as its compact text in both dialects (jsonb's display form has more spaces).
      await db.sql(`insert into messages (id, conversation_id, role, status, content, content_json, seq, created_at, updated_at) values ('m-legacy-2', 'c-legacy', 'user', 'final', '', '{"a":[1,2]}', 2, ${now}, ${now})`);

      await db.store.migrate();
      const [row] = await db.sql(`select session_id, stored_bytes from conversations where id = 'c-legacy'`);
      expect(row).toMatchObject({ session_id: hashSessionId('legacy-session-1') });
      expect(Number(row!.stored_bytes)).toBe(6 + '{"a":[1,2]}'.length);
      expect((await db.sql(`select id from sessions`)).map((r) => r.id)).toEqual([hashSessionId('legacy-session-1')]);
      const app = testApp(db.store, { ALLOW_CLIENT_SESSION_IDS: 'true' });
      const got = await call(app, 'GET', '/v1/conversations/c-legacy', { session: 'legacy-session-1' });
      expect(got.status).toBe(200);
      expect(got.json.messages.map((m: { content: string }) => m.content)).toEqual(['héllo', '']);
    } finally {
      rmSync(partial, { recursive: true, force: true });
      await db.cleanup();
    }
  }, 60_000);
});

// Before messages formed a tree, none had a parent and a conversation was its messages by seq.
describe.each(dialects)('upgrading a %s database written before messages formed a tree', (dialect) => {
  it('reads an old conversation as one branch, matches its history, and branches from it', async () => {
    const db = await sharedTestStore(dialect, { migrate: false });
    const folder = dialect === 'sqlite' ? 'sqlite' : 'pg';
    const journal = JSON.parse(readFileSync(join(root, 'drizzle', folder, 'meta/_journal.json'), 'utf8'));
    const tree = journal.entries.findIndex((e: { tag: string }) => e.tag.endsWith('message_tree_idempotency'));
    const partial = previousMigrations(folder, tree);
    try {
      await db.migrateWith(partial);
      const now = dialect === 'sqlite' ? String(Date.now()) : 'now()';
      const session = hashSessionId('old-session-1');
      await db.sql(`insert into sessions (id, created_at, last_seen_at) values ('${session}', ${now}, ${now})`);
      await db.sql(`insert into conversations (id, session_id, title, metadata, last_seq, created_at, updated_at) values ('c-old', '${session}', 'old', '{}', 4, ${now}, ${now})`);
      const rows = [
        ['user', 'Hello'],
        ['assistant', 'Hi!'],
        ['user', 'And then?'],
        ['assistant', 'Then this.'],
      ];
      for (const [i, [role, content]] of rows.entries()) {
        await db.sql(`insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at) values ('m-old-${i + 1}', 'c-old', '${role}', 'final', '${content}', ${i + 1}, ${now}, ${now})`);
      }

      await db.store.migrate();
      const app = testApp(db.store, { ALLOW_CLIENT_SESSION_IDS: 'true', OPENAI_BASE_URL: mock.url });
      const got = await call(app, 'GET', '/v1/conversations/c-old', { session: 'old-session-1' });
      expect(got.json.active_message_id).toBe('m-old-4');
      expect(got.json.messages.map((m: any) => [m.id, m.parent_message_id, m.sibling_count])).toEqual([
        ['m-old-1', null, 1],
        ['m-old-2', 'm-old-1', 1],
        ['m-old-3', 'm-old-2', 1],
        ['m-old-4', 'm-old-3', 1],
      ]);
      // The next turn resends the history: it is matched (fingerprints computed on the way), not stored again.
      const history = rows.map(([role, content]) => ({ role, content }));
      const next = await call(app, 'POST', '/v1/chat/completions', {
        session: 'old-session-1',
        headers: { 'x-conversation-id': 'c-old' },
        body: { messages: [...history, { role: 'user', content: 'More?' }], mock: { text: 'More.' } },
      });
      expect(next.status).toBe(200);
      // A regenerate of the old second answer: a sibling of it.
      await call(app, 'POST', '/v1/chat/completions', { session: 'old-session-1', headers: { 'x-conversation-id': 'c-old' }, body: { messages: history.slice(0, 3), mock: { text: 'Other.' } } });
      const all = await call(app, 'GET', '/v1/conversations/c-old?view=tree', { session: 'old-session-1' });
      expect(all.json.messages.map((m: any) => [m.seq, m.content, m.parent_message_id])).toEqual([
        [1, 'Hello', null],
        [2, 'Hi!', 'm-old-1'],
        [3, 'And then?', 'm-old-2'],
        [4, 'Then this.', 'm-old-3'],
        [5, 'More?', 'm-old-4'],
        [6, 'More.', all.json.messages[4].id],
        [7, 'Other.', 'm-old-3'],
      ]);
    } finally {
      rmSync(partial, { recursive: true, force: true });
      await db.cleanup();
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
