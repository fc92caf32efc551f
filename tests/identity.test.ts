import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { signedInUser, type TestUser } from './helpers/users.js';

const mock = useMockUpstream();

describe.each(dialects)('signed-in users on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const chat = (headers: Record<string, string>, extra: Record<string, unknown> = {}) =>
    call(app, 'POST', '/v1/chat/completions', { headers, body: { model: 'mock-model', messages: [{ role: 'user', content: 'hello there' }], ...extra } });

  describe('API keys', () => {
    it('signs a caller in as its user, who owns what it makes from any session', async () => {
      const ada = await signedInUser(db.store, 'Ada');
      const me = await call(app, 'GET', '/v1/me', { headers: ada.auth });
      expect(me.json).toEqual({ object: 'principal', type: 'user', user: { id: ada.user.id, name: 'Ada', is_admin: false }, session_id: null });
      // No anonymous session is minted for a signed-in caller.
      expect(me.headers.get('set-cookie')).toBeNull();

      const fromScript = await call(app, 'POST', '/v1/conversations', { headers: ada.auth, body: { title: 'script' } });
      const session = newSession();
      const fromBrowser = await call(app, 'POST', '/v1/conversations', { headers: ada.auth, session, body: { title: 'browser' } });
      expect([fromScript.status, fromBrowser.status]).toEqual([201, 201]);
      const listed = await call(app, 'GET', '/v1/conversations', { headers: ada.auth });
      expect(listed.json.items.map((i: any) => [i.title, i.access])).toEqual([
        ['browser', 'owner'],
        ['script', 'owner'],
      ]);
      // The session alone, without the key, does not reach the user's conversations.
      expect((await call(app, 'GET', `/v1/conversations/${fromBrowser.json.id}`, { session })).status).toBe(404);
      const rows = await db.sql(`select user_id from conversations where id in ('${fromScript.json.id}', '${fromBrowser.json.id}')`);
      expect(rows.map((r) => r.user_id)).toEqual([ada.user.id, ada.user.id]);
    });

    it('refuses unknown, revoked and expired keys with 401 invalid_api_key, and never falls back to anonymous', async () => {
      const revoked = await signedInUser(db.store, 'revoked');
      await db.store.revokeApiKey(revoked.keyId, new Date());
      const expired = await signedInUser(db.store, 'expired', { expiresAt: new Date(Date.now() - 1_000) });
      const unknown = `cpk_${'A'.repeat(43)}`;
      for (const [why, key] of [
        ['revoked', revoked.key],
        ['expired', expired.key],
        ['not one this server issued', unknown],
      ] as const) {
        const res = await call(app, 'GET', '/v1/conversations', { headers: { authorization: `Bearer ${key}` } });
        expect(res.status).toBe(401);
        expect(res.json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' });
        expect(res.json.error.message).toContain(why);
        expect(res.json.error.message).not.toContain(key);
        expect(res.headers.get('set-cookie')).toBeNull();
      }
    });

    it('ignores any other bearer (the placeholder key an OpenAI SDK sends) while anonymous access is on', async () => {
      const res = await call(app, 'GET', '/v1/me', { headers: { authorization: 'Bearer sk-placeholder' } });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ type: 'session', user: null });
      expect(res.json.session_id).toBe(res.headers.get('x-session-id'));
    });

    it('records when a key was last used, at most once a minute', async () => {
      const u = await signedInUser(db.store);
      const keyRow = async () => (await db.store.listApiKeys(u.user.id))[0]!;
      expect((await keyRow()).lastUsedAt).toBeNull();
      await call(app, 'GET', '/v1/me', { headers: u.auth });
      await expect.poll(async () => (await keyRow()).lastUsedAt).not.toBeNull();
      const first = (await keyRow()).lastUsedAt;
      for (let i = 0; i < 3; i++) await call(app, 'GET', '/v1/me', { headers: u.auth });
      expect((await keyRow()).lastUsedAt).toEqual(first);
    });
  });

  describe('with ANONYMOUS_ACCESS=false', () => {
    let closed: TestApp;
    beforeAll(() => {
      closed = testApp(db.store, { OPENAI_BASE_URL: mock.url, ANONYMOUS_ACCESS: 'false' });
    });

    it.each([
      ['GET', '/v1/conversations'],
      ['POST', '/v1/conversations'],
      ['POST', '/v1/chat/completions'],
      ['GET', '/v1/me'],
      ['GET', '/v1/privacy'],
      ['POST', '/v1/privacy/consent'],
    ])('%s %s without credentials is a 401 missing_credentials and mints no session', async (method, path) => {
      for (const headers of [{}, { authorization: 'Bearer sk-placeholder' }, { 'x-session-id': newSession() }] as Record<string, string>[]) {
        const res = await call(closed, method, path, { headers, body: method === 'POST' ? {} : undefined });
        expect(res.status).toBe(401);
        expect(res.json.error).toMatchObject({ type: 'authentication_error', code: 'missing_credentials' });
        expect(res.headers.get('set-cookie')).toBeNull();
      }
    });

    it('still serves a signed-in user and a public share link', async () => {
      const u = await signedInUser(db.store);
      const made = await call(closed, 'POST', '/v1/conversations', { headers: u.auth, body: { title: 'closed server' } });
      expect(made.status).toBe(201);
      const link = await call(closed, 'POST', `/v1/conversations/${made.json.id}/share_link`, { headers: u.auth });
      const res = await call(closed, 'GET', `/v1/shared/${link.json.token}`);
      expect(res.status).toBe(200);
      expect(res.json.title).toBe('closed server');
    });
  });

  describe('claiming an anonymous session', () => {
    it("moves the session's chats to the user who signs in, once", async () => {
      const session = newSession();
      const before = [await chat({ 'x-session-id': session }), await chat({ 'x-session-id': session })];
      const ids = before.map((r) => r.headers.get('x-conversation-id')!);
      const u = await signedInUser(db.store);

      const claim = await call(app, 'POST', '/v1/me/claim', { headers: u.auth, session });
      expect(claim.status).toBe(200);
      expect(claim.json).toEqual({ object: 'session.claim', claimed: 2 });
      expect((await call(app, 'POST', '/v1/me/claim', { headers: u.auth, session })).json.claimed).toBe(0);

      const mine = await call(app, 'GET', '/v1/conversations', { headers: u.auth });
      expect(mine.json.items.map((i: any) => i.id).sort()).toEqual([...ids].sort());
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toEqual([]);
      const sessions = await db.sql(`select user_id from sessions where id = '${hashSessionId(session)}'`);
      expect(sessions).toEqual([{ user_id: u.user.id }]);
    });

    it('needs a signed-in user and the session to claim', async () => {
      const u = await signedInUser(db.store);
      const noSession = await call(app, 'POST', '/v1/me/claim', { headers: u.auth });
      expect(noSession.status).toBe(400);
      expect(noSession.json.error.code).toBe('missing_session');
      const anonymous = await call(app, 'POST', '/v1/me/claim', { session: newSession() });
      expect(anonymous.status).toBe(403);
      expect(anonymous.json.error.code).toBe('permission_denied');
    });
  });

  describe('usage', () => {
    it("sums the tokens and requests of the caller's own conversations", async () => {
      const u = await signedInUser(db.store);
      expect((await chat(u.auth)).status).toBe(200);
      expect((await chat(u.auth, { model: 'other-model' })).status).toBe(200);
      // Someone else's traffic is not counted.
      await chat({ 'x-session-id': newSession() });

      const total = await call(app, 'GET', '/v1/me/usage', { headers: u.auth });
      expect(total.status).toBe(200);
      expect(total.json).toMatchObject({ object: 'usage', group_by: null, data: [] });
      expect(total.json.total.requests).toBe(2);
      expect(total.json.total.tokens_in).toBeGreaterThan(0);
      expect(total.json.total.tokens_out).toBeGreaterThan(0);

      const byModel = await call(app, 'GET', '/v1/me/usage?group_by=model', { headers: u.auth });
      expect(byModel.json.data.map((r: any) => [r.model, r.requests])).toEqual([
        ['mock-model', 1],
        ['other-model', 1],
      ]);
      const byDay = await call(app, 'GET', '/v1/me/usage?group_by=day', { headers: u.auth });
      expect(byDay.json.data).toEqual([{ day: new Date().toISOString().slice(0, 10), ...total.json.total }]);
      const past = await call(app, 'GET', '/v1/me/usage?from=2020-01-01&to=2020-02-01', { headers: u.auth });
      expect(past.json.total).toEqual({ tokens_in: 0, tokens_out: 0, requests: 0 });
    });

    it.each([
      ['from=yesterday', 'from'],
      ['from=2026-02-01&to=2026-01-01', 'from'],
      ['from=2020-01-01&to=2026-01-01', 'from'],
      ['group_by=week', 'group_by'],
    ])('refuses %s with a 400 naming %s', async (query, param) => {
      const res = await call(app, 'GET', `/v1/me/usage?${query}`, { session: newSession() });
      expect(res.status).toBe(400);
      expect(res.json.error.param).toBe(param);
    });
  });

  describe('sharing', () => {
    let owner: TestUser, viewer: TestUser, editor: TestUser, stranger: TestUser;
    let id: string;
    beforeAll(async () => {
      [owner, viewer, editor, stranger] = (await Promise.all(['owner', 'viewer', 'editor', 'stranger'].map((n) => signedInUser(db.store, n)))) as [TestUser, TestUser, TestUser, TestUser];
      const made = await chat(owner.auth);
      id = made.headers.get('x-conversation-id')!;
      expect((await call(app, 'PUT', `/v1/conversations/${id}/shares/${viewer.user.id}`, { headers: owner.auth, body: { role: 'viewer' } })).status).toBe(200);
      const share = await call(app, 'PUT', `/v1/conversations/${id}/shares/${editor.user.id}`, { headers: owner.auth, body: { role: 'editor' } });
      expect(share.json).toMatchObject({ object: 'conversation.share', conversation_id: id, user_id: editor.user.id, role: 'editor' });
    });

    it('lets a viewer read, an editor chat and post, and only the owner change, delete or share', async () => {
      const read = await call(app, 'GET', `/v1/conversations/${id}`, { headers: viewer.auth });
      expect(read.status).toBe(200);
      expect(read.json.access).toBe('viewer');
      expect(read.json.messages.length).toBe(2);

      const post = (who: TestUser) => call(app, 'POST', `/v1/conversations/${id}/messages`, { headers: who.auth, body: { role: 'user', content: 'note' } });
      expect((await post(viewer)).status).toBe(403);
      expect((await post(viewer)).json.error.code).toBe('permission_denied');
      expect((await post(editor)).status).toBe(201);
      expect((await post(stranger)).status).toBe(404);

      const before = mock.requests.length;
      const viewerChat = await chat({ ...viewer.auth, 'x-conversation-id': id });
      expect(viewerChat.status).toBe(403);
      expect(mock.requests.length).toBe(before); // refused before the upstream is called
      const editorChat = await chat({ ...editor.auth, 'x-conversation-id': id });
      expect(editorChat.status).toBe(200);

      for (const who of [viewer, editor]) {
        expect((await call(app, 'PATCH', `/v1/conversations/${id}`, { headers: who.auth, body: { title: 'mine now' } })).status).toBe(403);
        expect((await call(app, 'DELETE', `/v1/conversations/${id}`, { headers: who.auth })).status).toBe(403);
        expect((await call(app, 'GET', `/v1/conversations/${id}/shares`, { headers: who.auth })).status).toBe(403);
        expect((await call(app, 'PUT', `/v1/conversations/${id}/shares/${stranger.user.id}`, { headers: who.auth, body: { role: 'viewer' } })).status).toBe(403);
        expect((await call(app, 'POST', `/v1/conversations/${id}/share_link`, { headers: who.auth })).status).toBe(403);
      }
      for (const path of [`/v1/conversations/${id}`, `/v1/conversations/${id}/shares`]) {
        expect((await call(app, 'GET', path, { headers: stranger.auth })).status).toBe(404);
      }
      const title = await db.sql(`select title from conversations where id = '${id}'`);
      expect(title[0]!.title).toBe('hello there');
    });

    it('lists by scope, each conversation with the caller’s access', async () => {
      const scope = async (who: TestUser, s: string) => (await call(app, 'GET', `/v1/conversations?scope=${s}`, { headers: who.auth })).json.items.map((i: any) => [i.id, i.access]);
      expect(await scope(viewer, 'shared')).toEqual([[id, 'viewer']]);
      expect(await scope(viewer, 'owned')).toEqual([]);
      expect(await scope(viewer, 'all')).toEqual([[id, 'viewer']]);
      expect(await scope(owner, 'shared')).toEqual([]);
      expect(await scope(owner, 'owned')).toEqual([[id, 'owner']]);
      expect((await call(app, 'GET', '/v1/conversations?scope=everything', { headers: owner.auth })).status).toBe(400);
    });

    it('lists and withdraws shares, and refuses shares with oneself or nobody', async () => {
      const list = await call(app, 'GET', `/v1/conversations/${id}/shares`, { headers: owner.auth });
      expect(list.json.items.map((s: any) => [s.user_id, s.role]).sort()).toEqual(
        [
          [viewer.user.id, 'viewer'],
          [editor.user.id, 'editor'],
        ].sort(),
      );
      const self = await call(app, 'PUT', `/v1/conversations/${id}/shares/${owner.user.id}`, { headers: owner.auth, body: { role: 'viewer' } });
      expect(self.status).toBe(400);
      const nobody = await call(app, 'PUT', `/v1/conversations/${id}/shares/${crypto.randomUUID()}`, { headers: owner.auth, body: { role: 'viewer' } });
      expect(nobody.status).toBe(404);
      expect(nobody.json.error.param).toBe('user_id');
      const badRole = await call(app, 'PUT', `/v1/conversations/${id}/shares/${stranger.user.id}`, { headers: owner.auth, body: { role: 'owner' } });
      expect(badRole.status).toBe(400);

      const other = await chat(owner.auth);
      const otherId = other.headers.get('x-conversation-id')!;
      await call(app, 'PUT', `/v1/conversations/${otherId}/shares/${stranger.user.id}`, { headers: owner.auth, body: { role: 'viewer' } });
      expect((await call(app, 'DELETE', `/v1/conversations/${otherId}/shares/${stranger.user.id}`, { headers: owner.auth })).status).toBe(204);
      expect((await call(app, 'DELETE', `/v1/conversations/${otherId}/shares/${stranger.user.id}`, { headers: owner.auth })).status).toBe(404);
      expect((await call(app, 'GET', `/v1/conversations/${otherId}`, { headers: stranger.auth })).status).toBe(404);
    });

    it('opens a public read-only link that shows the title and messages only, until revoked', async () => {
      const link = await call(app, 'POST', `/v1/conversations/${id}/share_link`, { headers: owner.auth });
      expect(link.status).toBe(201);
      expect(link.json.url).toBe(`http://localhost/v1/shared/${link.json.token}`);
      const res = await call(app, 'GET', `/v1/shared/${link.json.token}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(res.headers.get('cache-control')).toContain('no-store');
      expect(Object.keys(res.json).sort()).toEqual(['messages', 'next_after_seq', 'object', 'title']);
      expect(res.json.messages[0]).toMatchObject({ seq: 1, role: 'user', content: 'hello there' });
      for (const secret of [id, owner.user.id, editor.user.id, viewer.user.id]) expect(res.text).not.toContain(secret);
      const stored = await db.sql(`select token_hash from share_links`);
      expect(JSON.stringify(stored)).not.toContain(link.json.token);

      const replaced = await call(app, 'POST', `/v1/conversations/${id}/share_link`, { headers: owner.auth });
      expect((await call(app, 'GET', `/v1/shared/${link.json.token}`)).status).toBe(404);
      expect((await call(app, 'GET', `/v1/shared/${replaced.json.token}?limit=1`)).json.next_after_seq).toBe(1);
      expect((await call(app, 'DELETE', `/v1/conversations/${id}/share_link`, { headers: owner.auth })).status).toBe(204);
      expect((await call(app, 'DELETE', `/v1/conversations/${id}/share_link`, { headers: owner.auth })).status).toBe(404);
      expect((await call(app, 'GET', `/v1/shared/${replaced.json.token}`)).status).toBe(404);
      expect((await call(app, 'GET', '/v1/shared/not-a-token')).status).toBe(404);
    });

    it('closes every door when the owner deletes the conversation', async () => {
      const made = await chat(owner.auth);
      const c = made.headers.get('x-conversation-id')!;
      await call(app, 'PUT', `/v1/conversations/${c}/shares/${viewer.user.id}`, { headers: owner.auth, body: { role: 'viewer' } });
      const link = await call(app, 'POST', `/v1/conversations/${c}/share_link`, { headers: owner.auth });
      expect((await call(app, 'DELETE', `/v1/conversations/${c}`, { headers: owner.auth })).status).toBe(200);
      expect((await call(app, 'GET', `/v1/conversations/${c}`, { headers: viewer.auth })).status).toBe(404);
      expect((await call(app, 'GET', `/v1/shared/${link.json.token}`)).status).toBe(404);
    });
  });

  it('counts rate limits per user, whichever session the user comes from', async () => {
    const limited = testApp(db.store, { OPENAI_BASE_URL: mock.url, RATE_LIMIT_MAX: '2', RATE_LIMIT_MAX_PER_ADDRESS: '0' });
    const u = await signedInUser(db.store);
    const statuses = [];
    for (let i = 0; i < 3; i++) statuses.push((await call(limited, 'GET', '/v1/conversations', { headers: u.auth, session: newSession() })).status);
    expect(statuses).toEqual([200, 200, 429]);
  });
});
