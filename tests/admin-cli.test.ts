import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, testApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';

/*
 * `npm run admin`, run as the operator would: a child process against DB_URL's database, whose
 * users and keys a server on the same database then knows.
 */

const root = resolve(import.meta.dirname, '..');
const STACK_LINE = /^\s+at /m;
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `npm run admin -- …args` with only PATH, DB_URL and `env` set. */
function admin(dbUrl: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', 'scripts/admin.ts', ...args], { cwd: root, env: { PATH: process.env.PATH, DB_URL: dbUrl, ...env } }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** A run that succeeded, its JSON. */
function printed(run: Run): any {
  expect(run.code, run.stderr).toBe(0);
  return JSON.parse(run.stdout);
}

describe.each(dialects)('npm run admin on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let dbUrl: string;
  const run = (...args: string[]) => admin(dbUrl, args);
  const count = async (table: string, where = '') => Number((await db.sql(`select count(*) as n from ${table} ${where}`))[0]!.n);

  beforeAll(async () => {
    // Not migrated: the first command does it, as on a server's very first day.
    db = await sharedTestStore(dialect, { migrate: false });
    dbUrl = db.target.dialect === 'sqlite' ? `file:${db.target.path}` : db.target.url;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it('makes the first admin and their key on a fresh database; a server on it accepts the key', async () => {
    const user = printed(await run('create-user', '--name', 'Ops', '--admin'));
    expect(user).toMatchObject({ object: 'user', name: 'Ops', external_id: null, is_admin: true });

    const expires = new Date(Date.now() + 86_400_000).toISOString();
    const made = await run('create-key', '--user', user.id, '--name', 'laptop', '--expires', expires);
    const key = printed(made);
    expect(key).toEqual({
      id: expect.any(String),
      object: 'api_key',
      name: 'laptop',
      prefix: expect.stringMatching(/^cpk_/),
      key: expect.stringMatching(/^cpk_/),
      created_at: expect.any(String),
      expires_at: expires,
    });
    expect(made.stderr).toMatch(/only time the key is shown/);

    // A server with no ADMIN_API_KEY at all: the user's key is how its operator gets in.
    const app = testApp(db.store);
    const listed = await call(app, 'GET', '/v1/admin/users', { headers: bearer(key.key) });
    expect(listed.status).toBe(200);
    expect(listed.json.items).toEqual([user]);
    expect((await call(app, 'POST', '/v1/conversations', { headers: bearer(key.key), body: {} })).status).toBe(201);

    const all = printed(await run('list-users'));
    expect(all).toEqual([user]);
  });

  it('create-user ties a user to an identity provider, and refuses a taken issuer and subject', async () => {
    const subject = `sub-${crypto.randomUUID()}`;
    const args = ['create-user', '--name', 'Grace', '--external-id', subject, '--issuer', 'https://id.example'];
    expect(printed(await run(...args)).external_id).toEqual({ issuer: 'https://id.example', subject });
    expect(printed(await run('create-user', '--name', 'Bare', '--external-id', subject)).external_id).toEqual({ issuer: '', subject });
    const before = await count('users');
    const twin = await run(...args);
    expect(twin.code).toBe(1);
    expect(twin.stderr.trim()).toMatch(/^admin: A user with issuer 'https:\/\/id\.example' and subject '.*' already exists\.$/);
    expect(await count('users')).toBe(before);
  });

  it('list-users prints every user, oldest first, past one page', async () => {
    // The command reads 100 users at a time.
    const missing = 101 - (await count('users'));
    for (let i = 0; i < missing; i++) await db.store.createUser({ name: `bulk ${i}` });
    expect(await count('users')).toBeGreaterThan(100);
    const all = printed(await run('list-users'));
    const order = await db.sql('select id from users order by created_at, id');
    expect(all.map((u: { id: string }) => u.id)).toEqual(order.map((r) => r.id));
  });

  it('revoke-key: a server refuses the key from then on', async () => {
    const user = printed(await run('create-user', '--name', 'revoked'));
    const key = printed(await run('create-key', '--user', user.id));
    expect((await call(testApp(db.store), 'GET', '/v1/conversations', { headers: bearer(key.key) })).status).toBe(200);
    expect(printed(await run('revoke-key', key.id))).toEqual({ id: key.id, object: 'api_key', revoked: true });
    // A server that had not cached it (a running one forgets it within CREDENTIAL_CACHE_MS).
    const refused = await call(testApp(db.store), 'GET', '/v1/conversations', { headers: bearer(key.key) });
    expect(refused.status).toBe(401);
    expect(refused.json.error.code).toBe('invalid_api_key');
    expect(await count('api_keys', `where id = '${key.id}' and revoked_at is not null`)).toBe(1);
  });

  it('delete-user erases the user and everything of theirs', async () => {
    const user = printed(await run('create-user', '--name', 'leaving'));
    const key = printed(await run('create-key', '--user', user.id));
    const app = testApp(db.store);
    const { id } = (await call(app, 'POST', '/v1/conversations', { headers: bearer(key.key), body: {} })).json;
    await call(app, 'POST', `/v1/conversations/${id}/messages`, { headers: bearer(key.key), body: { role: 'user', content: 'secret words' } });

    const erased = await run('delete-user', user.id);
    expect(printed(erased)).toEqual({ id: user.id, object: 'user.deleted', deleted: { conversations: 1, messages: 1, api_keys: 1, shares: 0 } });
    expect(erased.stdout).not.toContain('secret words');
    for (const [table, where] of [
      ['users', `id = '${user.id}'`],
      ['api_keys', `user_id = '${user.id}'`],
      ['sessions', `user_id = '${user.id}'`],
      ['conversations', `id = '${id}'`],
      ['messages', `conversation_id = '${id}'`],
    ]) {
      expect(await count(table!, `where ${where}`), table).toBe(0);
    }
    expect((await call(testApp(db.store), 'GET', '/v1/conversations', { headers: bearer(key.key) })).status).toBe(401);
  });

  // Side by side: each is a process of its own, and they change nothing.
  it.concurrent.for([
    ['revoke-key', 'a key', ['revoke-key', crypto.randomUUID()], /^admin: No API key found with id '.*'\.$/],
    ['delete-user', 'a user', ['delete-user', crypto.randomUUID()], /^admin: No user found with id '.*'\.$/],
    ['create-key', 'a user', ['create-key', '--user', crypto.randomUUID()], /^admin: No user found with id '.*'\.$/],
  ] as const)('%s for %s that does not exist exits 1 with one line', async ([, , args, message], { expect }) => {
    const res = await run(...args);
    expect(res.code).toBe(1);
    expect(res.stdout).toBe('');
    expect(res.stderr.trim()).toMatch(message);
  });
});

describe('npm run admin: usage', () => {
  let dir: string;
  let dbPath: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'admin-cli-'));
    dbPath = join(dir, 'never.db');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('help lists every command and exits 0', async () => {
    const res = await admin(`file:${dbPath}`, ['help']);
    expect(res.code).toBe(0);
    for (const command of ['create-user', 'create-key', 'revoke-key', 'list-users', 'delete-user']) expect(res.stdout).toContain(command);
  });

  // Side by side: none of them may get as far as the database.
  it.concurrent.for([
    ['no command', [], /no command given/],
    ['an unknown command', ['frobnicate'], /unknown command 'frobnicate'/],
    ['create-user without --name', ['create-user'], /--name is required/],
    ['create-user with an empty --name', ['create-user', '--name', ''], /--name: must not be empty/],
    ['--issuer without --external-id', ['create-user', '--name', 'x', '--issuer', 'https://id.example'], /--issuer needs --external-id/],
    ['an unknown option', ['create-user', '--name', 'x', '--root'], /Unknown option '--root'/],
    ['an option without its value', ['create-key', '--user'], /'--user <value>' argument missing/],
    ['an --expires that has passed', ['create-key', '--user', 'u', '--expires', '2001-01-01T00:00:00Z'], /--expires: must be in the future/],
    ['an --expires that is no date', ['create-key', '--user', 'u', '--expires', 'soon'], /--expires: must be an ISO-8601 date-time/],
    ['revoke-key without an id', ['revoke-key'], /revoke-key needs KEY_ID/],
    ['delete-user with two ids', ['delete-user', 'a', 'b'], /unexpected argument 'b'/],
  ] as [string, string[], RegExp][])('%s: exits 2 with one line, before opening the database', async ([, args, message], { expect }) => {
    const res = await admin(`file:${dbPath}`, args);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    const lines = res.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(message);
    expect(lines[0]).toMatch(/npm run admin -- help/);
    expect(res.stderr).not.toMatch(STACK_LINE);
    expect(existsSync(dbPath)).toBe(false);
  });

  it("reads only the variables it needs: a bad server setting elsewhere does not stop it, a bad DB_URL does", async () => {
    const ok = await admin(`file:${join(dir, 'ok.db')}`, ['list-users'], { PORT: 'not-a-port', ADMIN_API_KEY: 'short' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual([]);
    const bad = await admin('mysql://db/chat', ['list-users']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/DB_URL/);
    expect(bad.stderr).not.toMatch(STACK_LINE);
  });
});
