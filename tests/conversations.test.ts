import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createStore } from '../db/index.js';
import { hashSessionId, signSessionId } from '../app/session-ids.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { readChunks, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

describe.each(dialects)('conversations API on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store);
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const create = (session: string, body: unknown = {}) => call(app, 'POST', '/v1/conversations', { session, body });
  const list = async (session: string, query = '') => call(app, 'GET', `/v1/conversations${query}`, { session });

  describe('sessions', () => {
    it('mints a signed session when none is sent, as cookie and header, and knows it again', async () => {
      const res = await call(app, 'POST', '/v1/conversations', { body: {} });
      expect(res.status).toBe(201);
      const id = res.headers.get('x-session-id')!;
      expect(id).toMatch(/^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{22}$/);
      expect(res.headers.get('set-cookie')).toContain(`cf_session_id=${id}`);
      expect(res.headers.get('set-cookie')).toContain('HttpOnly');
      const again = await call(app, 'GET', '/v1/conversations', { headers: { cookie: `cf_session_id=${id}` } });
      expect(again.json.items.map((c: any) => c.id)).toEqual([res.json.id]);
      expect(again.headers.get('set-cookie')).toBeNull();
      const byHeader = await call(app, 'GET', '/v1/conversations', { session: id });
      expect(byHeader.json.items.map((c: any) => c.id)).toEqual([res.json.id]);
    });

    it('prefers the x-session-id header over the cookie', async () => {
      const a = newSession();
      const b = newSession();
      const made = await create(a);
      const res = await call(app, 'GET', '/v1/conversations', { session: a, headers: { cookie: `cf_session_id=${b}` } });
      expect(res.headers.get('x-session-id')).toBe(a);
      expect(res.json.items.map((c: any) => c.id)).toEqual([made.json.id]);
    });

    const minted = newSession();
    const [nonce, signature] = minted.split('.') as [string, string];
    const flipped = `${nonce}.${signature[0] === 'A' ? 'B' : 'A'}${signature.slice(1)}`;
    it.each([
      ['made up by the client', { 'x-session-id': 'my-session-1' }, 'x-session-id'],
      ['with a tampered signature', { 'x-session-id': flipped }, 'x-session-id'],
      ['signed with another secret', { 'x-session-id': signSessionId('another-secret-of-at-least-32-chars!') }, 'x-session-id'],
      ['too short', { 'x-session-id': 'abc' }, 'x-session-id'],
      ['with bad characters', { 'x-session-id': 'abc def ghi' }, 'x-session-id'],
      ['too long', { 'x-session-id': 'a'.repeat(129) }, 'x-session-id'],
      ['a malformed cookie', { cookie: 'cf_session_id=%3Cscript%3E' }, 'cf_session_id'],
      ['a cookie the server never issued', { cookie: 'cf_session_id=my-session-1' }, 'cf_session_id'],
    ])('refuses a session id %s with 400 and stores nothing', async (_, headers, param) => {
      const before = await db.store.counts();
      const res = await call(app, 'POST', '/v1/conversations', { headers, body: {} });
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_session_id', param });
      expect(res.json.error.message).toMatch(/issued/);
      expect(res.headers.get('x-session-id')).toBeNull();
      expect(await db.store.counts()).toEqual(before);
      // A browser cannot drop an HttpOnly cookie itself: the server clears it for a fresh start.
      if (param === 'cf_session_id') expect(res.headers.get('set-cookie')).toMatch(/cf_session_id=;.*Max-Age=0/);
    });

    it('accepts ids chosen by the client with ALLOW_CLIENT_SESSION_IDS=true, and still refuses malformed ones', async () => {
      const open = testApp(db.store, { ALLOW_CLIENT_SESSION_IDS: 'true' });
      const session = `client-${crypto.randomUUID()}`;
      const made = await call(open, 'POST', '/v1/conversations', { session, body: {} });
      expect(made.status).toBe(201);
      expect((await call(open, 'GET', '/v1/conversations', { session })).json.items.map((c: any) => c.id)).toEqual([made.json.id]);
      // The ids it signs still work, and the other app (same secret) knows them too.
      const signed = newSession();
      expect((await call(open, 'POST', '/v1/conversations', { session: signed, body: {} })).status).toBe(201);
      const bad = await call(open, 'GET', '/v1/conversations', { session: 'abc def' });
      expect(bad.status).toBe(400);
      expect(bad.json.error.message).toMatch(/8 to 128 characters/);
    });

    it('shares the signing secret of the database between apps when SESSION_SECRET is unset', async () => {
      const first = testApp(db.store, { SESSION_SECRET: '' });
      const second = testApp(db.store, { SESSION_SECRET: '' });
      const res = await call(first, 'POST', '/v1/conversations', { body: {} });
      const id = res.headers.get('x-session-id')!;
      expect(id).toMatch(/\./);
      // Not the test secret: one the database made, which the second app reads back.
      expect((await call(app, 'GET', '/v1/conversations', { session: id })).status).toBe(400);
      const seen = await call(second, 'GET', '/v1/conversations', { session: id });
      expect(seen.status).toBe(200);
      expect(seen.json.items.map((c: any) => c.id)).toEqual([res.json.id]);
    });
  });

  describe('create', () => {
    it('creates a conversation with title, model and metadata', async () => {
      const session = newSession();
      const res = await create(session, { title: 'Trip 🚀 "Paris"', model: 'gpt-x', metadata: { pinned: true, tags: ['a'], n: 1 } });
      expect(res.status).toBe(201);
      expect(res.json).toMatchObject({
        object: 'conversation',
        title: 'Trip 🚀 "Paris"',
        model: 'gpt-x',
        metadata: { pinned: true, tags: ['a'], n: 1 },
        message_count: 0,
        deleted_at: null,
      });
      expect(res.json.id).toMatch(/^[0-9a-f-]{36}$/);
      expect(res.json.created_at).toMatch(ISO);
      expect(res.json.updated_at).toMatch(ISO);
    });

    it.each([
      ['a non-string title', { title: 42 }, 'title'],
      ['an unknown field', { titel: 'typo' }, null],
      ['metadata that is not an object', { metadata: [1, 2] }, 'metadata'],
      ['a too-long title', { title: 'x'.repeat(501) }, 'title'],
    ])('rejects %s with 400 and creates nothing', async (_, body, param) => {
      const session = newSession();
      const res = await create(session, body);
      expect(res.status).toBe(400);
      expect(res.json.error.type).toBe('invalid_request_error');
      if (param) expect(res.json.error.param).toBe(param);
      expect((await list(session)).json.items).toEqual([]);
    });

    it('rejects malformed JSON with 400 in OpenAI shape', async () => {
      const session = newSession();
      const res = await call(app, 'POST', '/v1/conversations', { session, body: '{"title": ' });
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json' });
      expect((await list(session)).json.items).toEqual([]);
    });

    it('stores any Unicode and SQL-looking text exactly; U+0000 becomes U+FFFD in both dialects', async () => {
      const session = newSession();
      const title = `'; DROP TABLE conversations; -- 𝕳é漢字👩‍👩‍👧 \\ " \n`;
      const made = await create(session, { title, metadata: { note: 'a\u0000b', 'k\u0000': 'v' } });
      expect(made.status).toBe(201);
      const got = await call(app, 'GET', `/v1/conversations/${made.json.id}`, { session });
      expect(got.json.title).toBe(title);
      expect(got.json.metadata).toEqual({ note: 'a\uFFFDb', 'k\uFFFD': 'v' });
    });

    const nested = (depth: number): unknown => (depth === 0 ? 1 : { a: nested(depth - 1) });
    it.each(['application/json', 'application/merge-patch+json', 'application/vnd.api+json; charset=utf-8'])(
      'refuses JSON nested past JSON_MAX_DEPTH whatever its JSON media type (%s), with 400',
      async (contentType) => {
        const session = newSession();
        let deep = '1';
        for (let i = 0; i < 2000; i++) deep = `{"a":${deep}}`;
        for (const [method, path] of [['POST', '/v1/conversations'], ['POST', '/v1/chat/completions']] as const) {
          const res = await call(app, method, path, { session, body: `{"metadata":${deep}}`, headers: { 'content-type': contentType } });
          expect(res.status, path).toBe(400);
          expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'json_too_deep' });
        }
        const shallow = testApp(db.store, { JSON_MAX_DEPTH: '5' });
        const res = await call(shallow, 'POST', '/v1/conversations', { session, body: { metadata: nested(5) } });
        expect(res.json.error.code).toBe('json_too_deep');
        expect(res.json.error.message).toMatch(/5 levels deep \(JSON_MAX_DEPTH\)/);
        expect((await list(session)).json.items).toEqual([]);
      },
    );

    it('caps metadata at METADATA_MAX_DEPTH levels and METADATA_MAX_BYTES, on create and on update', async () => {
      const session = newSession();
      const ok = await create(session, { metadata: nested(15) });
      expect(ok.status).toBe(201);
      const tooDeep = await create(session, { metadata: nested(17) });
      expect(tooDeep.status).toBe(400);
      expect(tooDeep.json.error).toMatchObject({ param: 'metadata', message: expect.stringMatching(/more than 16 levels deep \(METADATA_MAX_DEPTH\)/) });
      const big = { note: 'x'.repeat(16 * 1024) };
      const tooBig = await create(session, { metadata: big });
      expect(tooBig.status).toBe(400);
      expect(tooBig.json.error).toMatchObject({ param: 'metadata', message: expect.stringMatching(/16384 this server accepts \(METADATA_MAX_BYTES\)/) });
      for (const metadata of [nested(17), big]) {
        const patched = await call(app, 'PATCH', `/v1/conversations/${ok.json.id}`, { session, body: { metadata } });
        expect(patched.status).toBe(400);
        expect(patched.json.error.param).toBe('metadata');
      }
      const roomier = testApp(db.store, { METADATA_MAX_DEPTH: '20', METADATA_MAX_BYTES: '20000' });
      expect((await call(roomier, 'POST', '/v1/conversations', { session, body: { metadata: big } })).status).toBe(201);
      expect((await list(session)).json.items).toHaveLength(2);
      expect((await call(app, 'GET', `/v1/conversations/${ok.json.id}`, { session })).json.metadata).toEqual(nested(15));
    });

    it('answers 429 limit_exceeded once a session stores MAX_BYTES_PER_SESSION', async () => {
      const limited = testApp(db.store, { MAX_BYTES_PER_SESSION: '1000' });
      const session = newSession();
      const { id } = (await call(limited, 'POST', '/v1/conversations', { session, body: {} })).json;
      const post = (content: string) => call(limited, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content } });
      expect((await post('é'.repeat(300))).status).toBe(201); // 600 bytes in UTF-8
      const over = await post('x'.repeat(401));
      expect(over.status).toBe(429);
      expect(over.json.error).toMatchObject({ type: 'rate_limit_error', code: 'limit_exceeded', message: expect.stringMatching(/1000 bytes, MAX_BYTES_PER_SESSION/) });
      expect((await post('x'.repeat(400))).status).toBe(201);
      // Full: not one more byte (another session is not affected).
      expect((await post('y')).status).toBe(429);
      expect((await call(limited, 'POST', '/v1/conversations', { session: newSession(), body: {} })).status).toBe(201);
      // Deleting frees the space.
      expect((await call(limited, 'DELETE', `/v1/conversations/${id}`, { session })).status).toBe(200);
      expect((await call(limited, 'POST', '/v1/conversations', { session, body: {} })).status).toBe(201);
    });

    it('counts streamed answers towards MAX_BYTES_PER_SESSION once they finish', async () => {
      const limited = testApp(db.store, { MAX_BYTES_PER_SESSION: '2000', OPENAI_BASE_URL: mock.url });
      const session = newSession();
      const chat = (body: Record<string, unknown>) =>
        limited.request('/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session },
          body: JSON.stringify({ stream: true, ...body }),
        });
      const res = await chat({ messages: [{ role: 'user', content: 'hello' }], mock: { text: 'abcdefghij'.repeat(100), chunks: 100 } });
      await readChunks(res.body!);
      const id = res.headers.get('x-conversation-id')!;
      await waitFor(async () => (await call(limited, 'GET', `/v1/conversations/${id}`, { session })).json.messages?.[1]?.status === 'final');
      const stored = await db.store.getConversation({ sessionId: hashSessionId(session), userId: null }, id);
      expect(stored!.storedBytes).toBe(5 + 1000);
      const more = await chat({ conversation_id: id, messages: [{ role: 'user', content: 'x'.repeat(996) }] });
      expect(more.status).toBe(429);
      expect((await more.json()).error.code).toBe('limit_exceeded');
      expect(mock.requests).toHaveLength(1);
    });

    it('answers 429 limit_exceeded beyond MAX_CONVERSATIONS_PER_SESSION', async () => {
      const limited = testApp(db.store, { MAX_CONVERSATIONS_PER_SESSION: '2' });
      const session = newSession();
      for (let i = 0; i < 2; i++) expect((await call(limited, 'POST', '/v1/conversations', { session, body: {} })).status).toBe(201);
      const over = await call(limited, 'POST', '/v1/conversations', { session, body: {} });
      expect(over.status).toBe(429);
      expect(over.json.error).toMatchObject({ code: 'limit_exceeded', type: 'rate_limit_error' });
      // Deleting one frees a place.
      const first = (await call(limited, 'GET', '/v1/conversations', { session })).json.items[0];
      expect((await call(limited, 'DELETE', `/v1/conversations/${first.id}`, { session })).status).toBe(200);
      expect((await call(limited, 'POST', '/v1/conversations', { session, body: {} })).status).toBe(201);
    });
  });

  describe('list', () => {
    it('lists newest first and pages with an opaque cursor', async () => {
      const session = newSession();
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) ids.push((await create(session, { title: `c${i}` })).json.id);
      const seen: string[] = [];
      let cursor: string | null = null;
      let pages = 0;
      do {
        const res: Awaited<ReturnType<typeof list>> = await list(session, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
        expect(res.status).toBe(200);
        expect(res.json.items.length).toBeLessThanOrEqual(2);
        seen.push(...res.json.items.map((c: any) => c.id));
        cursor = res.json.next_cursor;
        pages++;
      } while (cursor);
      expect(pages).toBe(3);
      // Newest first; two made in the same millisecond are ordered by id, not creation order.
      const onePage = (await list(session, '?limit=100')).json.items;
      expect(seen).toEqual(onePage.map((c: any) => c.id));
      expect([...seen].sort()).toEqual([...ids].sort());
      const times = onePage.map((c: any) => c.created_at);
      expect(times).toEqual([...times].sort().reverse());
    });

    it('pages stably through many conversations created in the same millisecond', async () => {
      const session = newSession();
      vi.useFakeTimers({ toFake: ['Date'] });
      vi.setSystemTime(new Date('2026-01-02T03:04:05.678Z'));
      const ids: string[] = [];
      try {
        for (let i = 0; i < 23; i++) ids.push((await create(session)).json.id);
      } finally {
        vi.useRealTimers();
      }
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const res: Awaited<ReturnType<typeof list>> = await list(session, `?limit=5${cursor ? `&cursor=${cursor}` : ''}`);
        for (const c of res.json.items) expect(c.created_at).toBe('2026-01-02T03:04:05.678Z');
        seen.push(...res.json.items.map((c: any) => c.id));
        cursor = res.json.next_cursor;
      } while (cursor);
      expect(seen).toHaveLength(23);
      expect(new Set(seen).size).toBe(23);
      expect(seen).toEqual([...ids].sort().reverse());
    });

    it.each([
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['limit=abc', 'limit'],
      ['cursor=not-a-cursor', 'cursor'],
      ['cursor=WzEsMl0', 'cursor'],
      ['include_deleted=maybe', 'include_deleted'],
    ])('rejects ?%s with 400', async (query, param) => {
      const res = await list(newSession(), `?${query}`);
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', param });
    });

    it('never shows another session its conversations', async () => {
      const a = newSession();
      await create(a);
      expect((await list(newSession())).json).toEqual({ object: 'list', items: [], next_cursor: null });
    });
  });

  describe('read, update, delete', () => {
    it('gets a conversation with its messages paged by seq', async () => {
      const session = newSession();
      const { id } = (await create(session)).json;
      for (let i = 1; i <= 5; i++) {
        const m = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: `m${i}` } });
        expect(m.status).toBe(201);
        expect(m.json).toMatchObject({ seq: i, role: 'user', content: `m${i}`, status: 'final' });
        expect(m.json.created_at).toMatch(ISO);
      }
      const page1 = await call(app, 'GET', `/v1/conversations/${id}?limit=2`, { session });
      expect(page1.json.messages.map((m: any) => m.seq)).toEqual([1, 2]);
      expect(page1.json.next_after_seq).toBe(2);
      expect(page1.json.message_count).toBe(5);
      const page3 = await call(app, 'GET', `/v1/conversations/${id}?limit=2&after_seq=4`, { session });
      expect(page3.json.messages.map((m: any) => m.content)).toEqual(['m5']);
      expect(page3.json.next_after_seq).toBeNull();
      const exact = await call(app, 'GET', `/v1/conversations/${id}?limit=5`, { session });
      expect(exact.json.messages).toHaveLength(5);
      expect(exact.json.next_after_seq).toBeNull();
      for (const q of ['limit=0', 'limit=201', 'after_seq=-1', 'after_seq=x']) {
        const bad = await call(app, 'GET', `/v1/conversations/${id}?${q}`, { session });
        expect(bad.status, q).toBe(400);
      }
    });

    it('patches title and metadata, and validates the patch', async () => {
      const session = newSession();
      const { id, updated_at } = (await create(session, { title: 'old', metadata: { a: 1 } })).json;
      // updated_at has millisecond precision: the patch must land on a later millisecond.
      await waitFor(() => Date.now() > Date.parse(updated_at));
      const res = await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { title: 'new', metadata: { pinned: true } } });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ id, title: 'new', metadata: { pinned: true } });
      expect(res.json.updated_at > updated_at).toBe(true);
      const cleared = await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { title: null } });
      expect(cleared.json).toMatchObject({ title: null, metadata: { pinned: true } });
      const bad = await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { metadata: 'x' } });
      expect(bad.status).toBe(400);
      expect(bad.json.error.param).toBe('metadata');
      const readOnly = await call(app, 'PATCH', `/v1/conversations/${id}`, { session, body: { model: 'other' } });
      expect(readOnly.status).toBe(400);
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { session })).json).toMatchObject({ title: null, model: null, metadata: { pinned: true } });
    });

    it("soft-deletes: 200 with OpenAI's deleted object, then 404 everywhere, hidden unless include_deleted", async () => {
      const session = newSession();
      const keep = (await create(session, { title: 'keep' })).json;
      const gone = (await create(session, { title: 'gone' })).json;
      const deleted = await call(app, 'DELETE', `/v1/conversations/${gone.id}`, { session });
      expect(deleted.status).toBe(200);
      expect(deleted.json).toEqual({ id: gone.id, object: 'conversation.deleted', deleted: true });
      expect((await call(app, 'DELETE', `/v1/conversations/${gone.id}`, { session })).status).toBe(404);
      expect((await call(app, 'GET', `/v1/conversations/${gone.id}`, { session })).status).toBe(404);
      expect((await call(app, 'PATCH', `/v1/conversations/${gone.id}`, { session, body: { title: 'x' } })).status).toBe(404);
      const post = await call(app, 'POST', `/v1/conversations/${gone.id}/messages`, { session, body: { role: 'user', content: 'x' } });
      expect(post.status).toBe(404);
      expect((await list(session)).json.items.map((c: any) => c.id)).toEqual([keep.id]);
      // Created in the same millisecond, the two are ordered by id: find the deleted one by id.
      const all = (await list(session, '?include_deleted=1')).json.items;
      expect(all.map((c: any) => c.id).sort()).toEqual([gone.id, keep.id].sort());
      expect(all.find((c: any) => c.id === gone.id).deleted_at).toMatch(ISO);
    });

    it("answers 404 for someone else's conversation on every endpoint and changes nothing", async () => {
      const owner = newSession();
      const other = newSession();
      const { id } = (await create(owner, { title: 'mine' })).json;
      await call(app, 'POST', `/v1/conversations/${id}/messages`, { session: owner, body: { role: 'user', content: 'hello' } });
      const attempts = [
        call(app, 'GET', `/v1/conversations/${id}`, { session: other }),
        call(app, 'PATCH', `/v1/conversations/${id}`, { session: other, body: { title: 'stolen' } }),
        call(app, 'DELETE', `/v1/conversations/${id}`, { session: other }),
        call(app, 'POST', `/v1/conversations/${id}/messages`, { session: other, body: { role: 'user', content: 'x' } }),
      ];
      for (const res of await Promise.all(attempts)) {
        expect(res.status).toBe(404);
        expect(res.json.error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
        expect(res.json.error.message).toContain(id);
      }
      const mine = await call(app, 'GET', `/v1/conversations/${id}`, { session: owner });
      expect(mine.json).toMatchObject({ title: 'mine', message_count: 1, deleted_at: null });
      expect(mine.json.messages.map((m: any) => m.content)).toEqual(['hello']);
    });

    it('answers 404 for ids that do not exist at all, whatever their shape', async () => {
      for (const id of [crypto.randomUUID(), 'nope', "1' or '1'='1", '%F0%9F%98%80']) {
        expect((await call(app, 'GET', `/v1/conversations/${id}`, { session: newSession() })).status).toBe(404);
      }
    });
  });

  describe('messages', () => {
    it('validates role and content, and writes nothing on bad input', async () => {
      const session = newSession();
      const { id } = (await create(session)).json;
      for (const body of [{ role: 'assistant', content: 'x' }, { role: 'user' }, { role: 'user', content: 5 }, { role: 'user', content: [] }, { role: 'user', content: 'x', extra: 1 }]) {
        const res = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body });
        expect(res.status, JSON.stringify(body)).toBe(400);
        expect(res.json.error.type).toBe('invalid_request_error');
      }
      const got = await call(app, 'GET', `/v1/conversations/${id}`, { session });
      expect(got.json.message_count).toBe(0);
      expect(got.json.messages).toEqual([]);
    });

    it('keeps multimodal parts in content_json and their text in content', async () => {
      const session = newSession();
      const { id } = (await create(session)).json;
      const parts = [
        { type: 'text', text: 'What is ' },
        { type: 'image_url', image_url: { url: 'https://example.com/cat.png' } },
        { type: 'text', text: 'this?' },
      ];
      const res = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: parts } });
      expect(res.status).toBe(201);
      expect(res.json).toMatchObject({ content: 'What is this?', content_json: parts });
      const sys = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'system', content: 'Be brief.' } });
      expect(sys.json).toMatchObject({ seq: 2, role: 'system' });
    });

    it('answers 429 limit_exceeded beyond MAX_MESSAGES_PER_CONVERSATION', async () => {
      const limited = testApp(db.store, { MAX_MESSAGES_PER_CONVERSATION: '3' });
      const session = newSession();
      const { id } = (await call(limited, 'POST', '/v1/conversations', { session, body: {} })).json;
      for (let i = 0; i < 3; i++) {
        expect((await call(limited, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: `${i}` } })).status).toBe(201);
      }
      const over = await call(limited, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: 'x' } });
      expect(over.status).toBe(429);
      expect(over.json.error.code).toBe('limit_exceeded');
      expect((await call(limited, 'GET', `/v1/conversations/${id}`, { session })).json.message_count).toBe(3);
    });

    it('gives 50 concurrent appends the seqs 1..50 exactly once', async () => {
      const session = newSession();
      const { id } = (await create(session)).json;
      const results = await Promise.all(
        Array.from({ length: 50 }, (_, i) => call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: `n${i}` } })),
      );
      expect(results.every((r) => r.status === 201)).toBe(true);
      expect(results.map((r) => r.json.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      const got = await call(app, 'GET', `/v1/conversations/${id}?limit=200`, { session });
      expect(got.json.messages.map((m: any) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      expect(new Set(got.json.messages.map((m: any) => m.content)).size).toBe(50);
    });

    // Only Postgres has several processes on one database; SQLite is one file per process.
    if (dialect === 'postgres') it('keeps seqs dense when two separate connection pools append at once', async () => {
      const session = newSession();
      const { id } = (await create(session)).json;
      const second = createStore(db.target, { max: 5 });
      const otherApp = testApp(second);
      try {
        const results = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            call(i % 2 ? otherApp : app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: `p${i}` } }),
          ),
        );
        expect(results.map((r) => r.status)).toEqual(Array(50).fill(201));
        expect(results.map((r) => r.json.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
      } finally {
        await second.close();
      }
    });
  });

  it('reports persistence in /healthz', async () => {
    const res = await call(app, 'GET', '/healthz');
    expect(res.status).toBe(200);
    // No upstream in this app: history works, chats cannot, so the status says degraded.
    expect(res.json).toMatchObject({ status: 'degraded', upstream: { configured: false }, model: 'gpt-4.1-mini', persistence: { enabled: true, dialect, ok: true } });
    expect(typeof res.json.uptime).toBe('number');
  });
});

describe('with persistence off', () => {
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });
  const id = crypto.randomUUID();
  it.each([
    ['POST', '/v1/conversations'],
    ['GET', '/v1/conversations'],
    ['GET', `/v1/conversations/${id}`],
    ['PATCH', `/v1/conversations/${id}`],
    ['DELETE', `/v1/conversations/${id}`],
    ['POST', `/v1/conversations/${id}/messages`],
  ])('%s %s answers 501', async (method, path) => {
    const res = await call(app, method, path, { session: newSession(), body: method === 'GET' || method === 'DELETE' ? undefined : {} });
    expect(res.status).toBe(501);
    expect(res.json.error).toMatchObject({ type: 'not_implemented_error', code: 'persistence_disabled' });
    expect(res.json.error.message).toContain('PERSIST_TRANSCRIPTS');
  });

  it('reports persistence disabled in /healthz', async () => {
    const res = await call(app, 'GET', '/healthz');
    expect(res.json.persistence).toEqual({ enabled: false, dialect: null, ok: null });
  });
});

describe('HTTP edges', () => {
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', BODY_LIMIT_BYTES: '1024' });
  it('answers unknown routes with a 404 in OpenAI shape', async () => {
    const res = await call(app, 'GET', '/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'unknown_route' });
    expect(res.json.error.message).toContain('GET /v1/nothing-here');
  });

  it('answers bodies over BODY_LIMIT_BYTES with 413', async () => {
    const res = await call(app, 'POST', '/v1/conversations', { session: newSession(), body: { title: 'x'.repeat(2000) } });
    expect(res.status).toBe(413);
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
    expect(res.json.error.message).toContain('BODY_LIMIT_BYTES');
  });

  it('answers CORS preflight for the allowed origin and exposes our headers', async () => {
    const res = await app.request('/v1/conversations', {
      method: 'OPTIONS',
      headers: { origin: 'http://localhost:3000', 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-session-id' },
    });
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    const simple = await app.request('/healthz', { headers: { origin: 'http://localhost:3000' } });
    expect(simple.headers.get('access-control-expose-headers')).toContain('x-conversation-id');
    const other = await app.request('/healthz', { headers: { origin: 'http://evil.example' } });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
  });
});
