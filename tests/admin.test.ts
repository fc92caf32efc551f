import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';

/*
 * The admin API (/v1/admin/*) through HTTP on each dialect: who may call it, users, their API
 * keys, and erasing a user. Rows are counted in the database itself, not through the API under test.
 */

const ADMIN_API_KEY = 'admin-key-for-the-tests-0123456789abcdef';
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe.each(dialects)('admin API on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    // Small erasure batches, so erasing a user with a few conversations takes several.
    app = testApp(db.store, { ADMIN_API_KEY, RETENTION_BATCH_SIZE: '2' });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const admin = (method: string, path: string, body?: unknown) => call(app, method, `/v1/admin${path}`, { headers: bearer(ADMIN_API_KEY), body });
  const newUser = async (body: Record<string, unknown> = {}) => {
    const res = await admin('POST', '/users', { name: 'someone', ...body });
    expect(res.status, res.text).toBe(201);
    return res.json;
  };
  const newKey = async (userId: string, body: Record<string, unknown> = {}) => {
    const res = await admin('POST', `/users/${userId}/api_keys`, body);
    expect(res.status, res.text).toBe(201);
    return res.json;
  };
  const count = async (table: string, where = '') => Number((await db.sql(`select count(*) as n from ${table} ${where}`))[0]!.n);
  const rowCounts = async () => ({
    users: await count('users'),
    api_keys: await count('api_keys'),
    revoked: await count('api_keys', 'where revoked_at is not null'),
    admins: await count('users', dialect === 'sqlite' ? 'where is_admin = 1' : 'where is_admin'),
    conversations: await count('conversations'),
    messages: await count('messages'),
  });

  describe('who may call it', () => {
    it('the operator with ADMIN_API_KEY as a bearer', async () => {
      const res = await admin('GET', '/users');
      expect(res.status).toBe(200);
      expect(res.json.object).toBe('list');
    });

    it("a user with is_admin, through their API key, until the flag is taken away (from this process's next request)", async () => {
      const boss = await newUser({ name: 'boss', is_admin: true });
      const { key } = await newKey(boss.id);
      const made = await call(app, 'POST', '/v1/admin/users', { headers: bearer(key), body: { name: 'made by boss' } });
      expect(made.status).toBe(201);
      expect((await call(app, 'GET', '/v1/admin/users', { headers: bearer(key) })).status).toBe(200);

      expect((await admin('PATCH', `/users/${boss.id}`, { is_admin: false })).json.is_admin).toBe(false);
      const refused = await call(app, 'GET', '/v1/admin/users', { headers: bearer(key) });
      expect(refused.status).toBe(403);
      expect(refused.json.error).toMatchObject({ type: 'permission_error', code: 'permission_denied' });
      // Still a user: the key opens the rest of the API.
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(key) })).status).toBe(200);

      await admin('PATCH', `/users/${boss.id}`, { is_admin: true });
      expect((await call(app, 'GET', '/v1/admin/users', { headers: bearer(key) })).status).toBe(200);
    });

    describe('nobody else: 403 permission_denied, and no row changes', () => {
      let target: { id: string };
      let targetKey: { id: string };
      let plainKey: string;
      beforeAll(async () => {
        target = await newUser({ name: 'target' });
        targetKey = await newKey(target.id);
        plainKey = (await newKey((await newUser({ name: 'plain' })).id)).key;
      });

      const endpoints = (): [string, string, unknown][] => [
        ['GET', '/users', undefined],
        ['POST', '/users', { name: 'intruder', is_admin: true }],
        ['PATCH', `/users/${target.id}`, { is_admin: true }],
        ['DELETE', `/users/${target.id}`, undefined],
        ['POST', `/users/${target.id}/api_keys`, {}],
        ['GET', `/users/${target.id}/api_keys`, undefined],
        ['DELETE', `/api_keys/${targetKey.id}`, undefined],
        // Even a request the admin would get 404 or 400 for says nothing more than 403.
        ['GET', '/users/no-such-user/api_keys', undefined],
        ['POST', '/users', { bad: true }],
      ];

      it.each([
        ["a plain user's API key", () => ({ headers: bearer(plainKey) })],
        ['an anonymous session', () => ({ session: newSession() })],
        ['no credentials at all', () => ({})],
        ['a wrong admin key (taken for an OpenAI placeholder, so anonymous)', () => ({ headers: bearer(`${ADMIN_API_KEY.slice(0, -1)}X`) })],
      ])('%s', async (_, who) => {
        const before = await rowCounts();
        for (const [method, path, body] of endpoints()) {
          const res = await call(app, method, `/v1/admin${path}`, { ...who(), body });
          expect(res.status, `${method} ${path}`).toBe(403);
          expect(res.json.error).toMatchObject({ type: 'permission_error', code: 'permission_denied' });
          expect(res.json.error.message).toMatch(/ADMIN_API_KEY.*is_admin/);
        }
        expect(await rowCounts()).toEqual(before);
        expect((await admin('GET', `/users/${target.id}/api_keys`)).json.items).toMatchObject([{ id: targetKey.id, revoked_at: null }]);
      });
    });

    it('answers 501 when persistence is off, and still 403 to a non-admin', async () => {
      const proxy = testApp(db.store, { ADMIN_API_KEY, PERSIST_TRANSCRIPTS: 'false' });
      const res = await call(proxy, 'GET', '/v1/admin/users', { headers: bearer(ADMIN_API_KEY) });
      expect(res.status).toBe(501);
      expect(res.json.error.code).toBe('persistence_disabled');
      expect((await call(proxy, 'GET', '/v1/admin/users', { session: newSession() })).status).toBe(403);
    });
  });

  describe('users', () => {
    it('creates a user: 201 with its JSON', async () => {
      const res = await admin('POST', '/users', { name: 'Ada 🚀 "L"' });
      expect(res.status).toBe(201);
      expect(res.json).toEqual({ id: expect.stringMatching(/^[0-9a-f-]{36}$/), object: 'user', name: 'Ada 🚀 "L"', external_id: null, is_admin: false, created_at: expect.stringMatching(ISO) });
      expect(await count('users', `where id = '${res.json.id}'`)).toBe(1);
    });

    it('ties a user to an external id: a bare subject takes the default issuer, or both are given', async () => {
      const subject = `sub-${crypto.randomUUID()}`;
      expect((await newUser({ external_id: subject, is_admin: true })).external_id).toEqual({ issuer: '', subject });
      const both = await newUser({ external_id: { issuer: 'https://id.example', subject } });
      expect(both).toMatchObject({ external_id: { issuer: 'https://id.example', subject }, is_admin: false });
    });

    it('answers 409 for an issuer and subject another user has, and creates nothing', async () => {
      const external_id = { issuer: 'https://id.example', subject: `taken-${crypto.randomUUID()}` };
      await newUser({ external_id });
      const before = await count('users');
      const res = await admin('POST', '/users', { name: 'twin', external_id });
      expect(res.status).toBe(409);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'conflict' });
      expect(await count('users')).toBe(before);
    });

    it.each([
      ['no name', {}, 'name'],
      ['an empty name', { name: '' }, 'name'],
      ['a name over 200 characters', { name: 'x'.repeat(201) }, 'name'],
      ['an unknown field', { name: 'a', admin: true }, null],
      ['is_admin that is not a boolean', { name: 'a', is_admin: 'yes' }, 'is_admin'],
      ['an external_id that is a number', { name: 'a', external_id: 42 }, 'external_id'],
      ['an external_id with an empty subject', { name: 'a', external_id: { issuer: 'i', subject: '' } }, 'external_id.subject'],
      ['an external_id with an unknown field', { name: 'a', external_id: { issuer: 'i', subject: 's', aud: 'x' } }, 'external_id'],
      ['a body that is not JSON', '{"name": ', null],
    ])('refuses %s with 400 and creates nothing', async (_, body, param) => {
      const before = await count('users');
      const res = await admin('POST', '/users', body);
      expect(res.status).toBe(400);
      expect(res.json.error.type).toBe('invalid_request_error');
      if (param) expect(res.json.error.param).toBe(param);
      expect(await count('users')).toBe(before);
    });

    it('lists users oldest first, page by page, each user exactly once', async () => {
      const made: string[] = [];
      for (let i = 0; i < 5; i++) made.push((await newUser({ name: `paged ${i}` })).id);
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res = await admin('GET', `/users?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.json.items.length).toBeLessThanOrEqual(2);
        for (const u of res.json.items) expect(Object.keys(u).sort()).toEqual(['created_at', 'external_id', 'id', 'is_admin', 'name', 'object']);
        seen.push(...res.json.items.map((u: { id: string }) => u.id));
        cursor = res.json.next_cursor;
        pages++;
      } while (cursor && pages < 100);
      expect(pages).toBeGreaterThan(2);
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen.length).toBe(await count('users'));
      // Oldest first; users made in the same millisecond in id order.
      const order = await db.sql('select id from users order by created_at, id');
      expect(seen).toEqual(order.map((r) => r.id));
      expect(made.every((id) => seen.includes(id))).toBe(true);
      // The default page is 20.
      expect((await admin('GET', '/users')).json.items).toHaveLength(Math.min(20, seen.length));
    });

    it.each([
      ['a cursor this server did not issue', 'cursor=abc', 'cursor'],
      ['limit 0', 'limit=0', 'limit'],
      ['limit over 100', 'limit=101', 'limit'],
      ['a limit that is not a number', 'limit=ten', 'limit'],
    ])('refuses %s in the list with 400', async (_, query, param) => {
      const res = await admin('GET', `/users?${query}`);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param });
    });

    it('renames a user and sets or clears is_admin with PATCH', async () => {
      const u = await newUser({ name: 'before' });
      const renamed = await admin('PATCH', `/users/${u.id}`, { name: 'after', is_admin: true });
      expect(renamed.status).toBe(200);
      expect(renamed.json).toEqual({ ...u, name: 'after', is_admin: true });
      expect((await admin('PATCH', `/users/${u.id}`, {})).json).toEqual(renamed.json);
      expect((await admin('PATCH', `/users/${u.id}`, { is_admin: false })).json).toEqual({ ...u, name: 'after' });
    });

    it.each([
      ['an unknown field', { nickname: 'x' }],
      ['an empty name', { name: '' }],
      ['is_admin that is not a boolean', { is_admin: 1 }],
    ])('refuses a PATCH with %s (400) and changes nothing', async (_, body) => {
      const u = await newUser({ name: 'unchanged' });
      const res = await admin('PATCH', `/users/${u.id}`, body);
      expect(res.status).toBe(400);
      expect((await db.sql(`select name from users where id = '${u.id}'`))[0]!.name).toBe('unchanged');
    });

    it('answers 404 for a user that does not exist, whatever the id looks like', async () => {
      for (const id of ['no-such-user', crypto.randomUUID(), '%00', 'x'.repeat(300)]) {
        for (const [method, path, body] of [
          ['PATCH', `/users/${id}`, { name: 'x' }],
          ['DELETE', `/users/${id}`, undefined],
          ['POST', `/users/${id}/api_keys`, {}],
          ['GET', `/users/${id}/api_keys`, undefined],
        ] as const) {
          const res = await admin(method, path, body);
          expect(res.status, `${method} ${path}`).toBe(404);
          expect(res.json.error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
        }
      }
    });
  });

  describe('API keys', () => {
    it('makes a key: 201 with the key itself, shown this once; it signs in as its user', async () => {
      const u = await newUser({ name: 'key holder' });
      const res = await admin('POST', `/users/${u.id}/api_keys`, { name: 'laptop' });
      expect(res.status).toBe(201);
      expect(res.json).toEqual({
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        object: 'api_key',
        name: 'laptop',
        prefix: expect.stringMatching(/^cpk_/),
        key: expect.stringMatching(/^cpk_[A-Za-z0-9_-]{40,}$/),
        created_at: expect.stringMatching(ISO),
        expires_at: null,
      });
      expect(res.json.key.startsWith(res.json.prefix)).toBe(true);

      const made = await call(app, 'POST', '/v1/conversations', { headers: bearer(res.json.key), body: { title: 'mine' } });
      expect(made.status).toBe(201);
      expect((await db.sql(`select user_id from conversations where id = '${made.json.id}'`))[0]!.user_id).toBe(u.id);
      const listed = await call(app, 'GET', '/v1/conversations', { headers: bearer(res.json.key) });
      expect(listed.json.items.map((c: { id: string }) => c.id)).toEqual([made.json.id]);
    });

    it("lists a user's keys without their secrets", async () => {
      const u = await newUser({ name: 'two keys' });
      const first = await newKey(u.id, { name: 'one' });
      const second = await newKey(u.id);
      const res = await admin('GET', `/users/${u.id}/api_keys`);
      expect(res.status).toBe(200);
      expect(res.json).toEqual({
        object: 'list',
        items: [first, second].map((k) => ({
          id: k.id,
          object: 'api_key',
          user_id: u.id,
          name: k.name,
          prefix: k.prefix,
          created_at: k.created_at,
          last_used_at: null,
          expires_at: null,
          revoked_at: null,
        })),
      });
      const hashes = (await db.sql(`select hash from api_keys where user_id = '${u.id}'`)).map((r) => String(r.hash));
      expect(hashes).toHaveLength(2);
      for (const secret of [first.key, second.key, ...hashes]) expect(res.text).not.toContain(secret);
      expect((await admin('GET', `/users/${(await newUser()).id}/api_keys`)).json).toEqual({ object: 'list', items: [] });
    });

    it('takes expires_at as an ISO-8601 date-time or Unix seconds', async () => {
      const u = await newUser({ name: 'expiring' });
      expect((await newKey(u.id, { expires_at: '2099-01-31T12:00:00+02:00' })).expires_at).toBe('2099-01-31T10:00:00.000Z');
      expect((await newKey(u.id, { expires_at: 4_102_444_800 })).expires_at).toBe('2100-01-01T00:00:00.000Z');
      const soon = new Date(Date.now() + 3_600_000).toISOString();
      const key = await newKey(u.id, { expires_at: soon, name: null });
      expect(key).toMatchObject({ expires_at: soon, name: null });
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(key.key) })).status).toBe(200);
    });

    it.each([
      ['an expires_at that has passed', { expires_at: '2020-01-01T00:00:00Z' }, 'expires_at', /in the future/],
      ['an expires_at in Unix seconds that has passed', { expires_at: Math.floor(Date.now() / 1000) - 1 }, 'expires_at', /in the future/],
      ['an expires_at that is not a date-time', { expires_at: 'next week' }, 'expires_at', /ISO-8601/],
      ['an expires_at without an offset', { expires_at: '2099-01-01T00:00:00' }, 'expires_at', /ISO-8601/],
      ['an expires_at past the year 9999', { expires_at: 1e15 }, 'expires_at', /10000/],
      ['a name over 200 characters', { name: 'x'.repeat(201) }, 'name', /200/],
      ['an unknown field', { scopes: ['all'] }, null, /scopes/],
    ])('refuses %s with 400 and makes no key', async (_, body, param, message) => {
      const u = await newUser({ name: 'no key' });
      const res = await admin('POST', `/users/${u.id}/api_keys`, body);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param });
      expect(res.json.error.message).toMatch(message);
      expect(await count('api_keys', `where user_id = '${u.id}'`)).toBe(0);
    });

    it('revokes a key: 204, and the very next request with it is refused with 401 invalid_api_key', async () => {
      const u = await newUser({ name: 'revoked' });
      const key = await newKey(u.id);
      const kept = await newKey(u.id);
      // Used first, so this process has it cached as valid.
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(key.key) })).status).toBe(200);
      const res = await admin('DELETE', `/api_keys/${key.id}`);
      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      const refused = await call(app, 'GET', '/v1/conversations', { headers: bearer(key.key) });
      expect(refused.status).toBe(401);
      expect(refused.json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
      expect(refused.json.error.message).toMatch(/revoked/);
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(kept.key) })).status).toBe(200);

      const listed = (await admin('GET', `/users/${u.id}/api_keys`)).json.items;
      expect(listed.find((k: { id: string }) => k.id === key.id).revoked_at).toMatch(ISO);
      expect(listed.find((k: { id: string }) => k.id === kept.id).revoked_at).toBeNull();
      // Revoking again changes nothing; an unknown key is 404.
      expect((await admin('DELETE', `/api_keys/${key.id}`)).status).toBe(204);
      const again = (await admin('GET', `/users/${u.id}/api_keys`)).json.items;
      expect(again.find((k: { id: string }) => k.id === key.id).revoked_at).toBe(listed.find((k: { id: string }) => k.id === key.id).revoked_at);
      const unknown = await admin('DELETE', `/api_keys/${crypto.randomUUID()}`);
      expect(unknown.status).toBe(404);
      expect(unknown.json.error.code).toBe('not_found');
    });
  });

  describe('erasing a user', () => {
    const CANARY = `CANARY-message-content-${crypto.randomUUID()}`;

    it("removes exactly that user's conversations, messages, shares, keys and sessions, in batches", async () => {
      const leaving = await newUser({ name: 'leaving' });
      const staying = await newUser({ name: 'staying' });
      const leavingKey = (await newKey(leaving.id)).key;
      const stayingKey = (await newKey(staying.id)).key;
      await newKey(leaving.id, { name: 'spare' });

      // An anonymous chat in the browser the user then signs in from goes with them.
      const browser = newSession();
      const anonymous = (await call(app, 'POST', '/v1/conversations', { session: browser, body: {} })).json.id;
      await call(app, 'POST', `/v1/conversations/${anonymous}/messages`, { session: browser, body: { role: 'user', content: CANARY } });
      const theirs: string[] = [];
      for (let i = 0; i < 3; i++) {
        const { id } = (await call(app, 'POST', '/v1/conversations', { session: browser, headers: bearer(leavingKey), body: { title: CANARY } })).json;
        for (let j = 0; j <= i; j++) await call(app, 'POST', `/v1/conversations/${id}/messages`, { headers: bearer(leavingKey), body: { role: 'user', content: `${CANARY} ${j}` } });
        theirs.push(id);
      }
      const kept = (await call(app, 'POST', '/v1/conversations', { headers: bearer(stayingKey), body: {} })).json.id;
      await call(app, 'POST', `/v1/conversations/${kept}/messages`, { headers: bearer(stayingKey), body: { role: 'user', content: 'kept' } });
      // A share of theirs (goes with the conversation) and a share given to them.
      await db.store.setShare(theirs[0]!, staying.id, 'viewer');
      await db.store.setShare(kept, leaving.id, 'editor');

      const mine = `user_id = '${leaving.id}'`;
      expect(await count('sessions', `where ${mine}`)).toBeGreaterThan(0);
      const before = await rowCounts();
      const stayingBefore = {
        conversations: await count('conversations', `where user_id = '${staying.id}'`),
        messages: await count('messages', `where conversation_id = '${kept}'`),
        keys: await count('api_keys', `where user_id = '${staying.id}'`),
      };

      // Every admin answer about this user, none of which may carry what they wrote.
      const answers = [
        await admin('GET', '/users?limit=100'),
        await admin('GET', `/users/${leaving.id}/api_keys`),
        await admin('PATCH', `/users/${leaving.id}`, { name: 'leaving soon' }),
      ];
      // Their key is known to this process again (the PATCH forgot it), as it would be mid-use.
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(leavingKey) })).status).toBe(200);
      const res = await admin('DELETE', `/users/${leaving.id}`);
      answers.push(res);
      expect(res.status).toBe(200);
      expect(res.json).toEqual({ id: leaving.id, object: 'user.deleted', deleted: { conversations: 4, messages: 7, api_keys: 2, shares: 2 } });

      for (const table of ['conversations', 'api_keys', 'sessions', 'conversation_shares']) expect(await count(table, `where ${mine}`), table).toBe(0);
      expect(await count('users', `where id = '${leaving.id}'`)).toBe(0);
      expect(await count('conversations', `where id in ('${[anonymous, ...theirs].join("','")}')`)).toBe(0);
      expect(await count('messages', `where conversation_id in ('${[anonymous, ...theirs].join("','")}')`)).toBe(0);
      expect(await count('conversation_shares', `where conversation_id = '${theirs[0]}'`)).toBe(0);
      expect(await rowCounts()).toEqual({ ...before, users: before.users - 1, api_keys: before.api_keys - 2, conversations: before.conversations - 4, messages: before.messages - 7 });
      expect({
        conversations: await count('conversations', `where user_id = '${staying.id}'`),
        messages: await count('messages', `where conversation_id = '${kept}'`),
        keys: await count('api_keys', `where user_id = '${staying.id}'`),
      }).toEqual(stayingBefore);
      expect((await call(app, 'GET', `/v1/conversations/${kept}`, { headers: bearer(stayingKey) })).json.messages).toHaveLength(1);

      for (const answer of answers) expect(answer.text).not.toContain('CANARY');
      expect(await count('messages', `where content like '%CANARY%'`)).toBe(0);

      // Gone: their key is refused at once, and a second erasure finds nobody.
      expect((await call(app, 'GET', '/v1/conversations', { headers: bearer(leavingKey) })).status).toBe(401);
      expect((await admin('DELETE', `/users/${leaving.id}`)).status).toBe(404);
    });
  });
});
