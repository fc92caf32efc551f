import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';

/**
 * Idempotency-Key: a client that retries a write gets the first outcome and writes nothing; the
 * same key with another request is a 409. Checked in the database, not only in the answers.
 */

const mock = useMockUpstream();

describe.each(dialects)('Idempotency-Key on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const count = async (table: string, where = '') => Number((await db.sql(`select count(*) as n from ${table} ${where}`))[0]!.n);
  const messagesOf = (id: string) => count('messages', `where conversation_id = '${id}'`);
  const key = () => `key-${crypto.randomUUID()}`;

  describe('writes of the conversations API', () => {
    it('POST /v1/conversations: a retry gets the same conversation, and only one exists', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      const first = await call(app, 'POST', '/v1/conversations', { session, headers, body: { title: 'once' } });
      expect(first.status).toBe(201);
      expect(first.headers.get('idempotent-replayed')).toBeNull();
      const retry = await call(app, 'POST', '/v1/conversations', { session, headers, body: { title: 'once' } });
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.json).toEqual(first.json);
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toHaveLength(1);
      // The same body with its keys in another order is the same request.
      const reordered = await call(app, 'POST', '/v1/conversations', { session, headers, body: '{"title":"once"}' });
      expect(reordered.json.id).toBe(first.json.id);
    });

    it('the same key with another body is a 409 idempotency_key_reused, and writes nothing', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      await call(app, 'POST', '/v1/conversations', { session, headers, body: { title: 'one' } });
      const other = await call(app, 'POST', '/v1/conversations', { session, headers, body: { title: 'two' } });
      expect(other.status).toBe(409);
      expect(other.json.error).toMatchObject({ type: 'invalid_request_error', code: 'idempotency_key_reused', param: 'Idempotency-Key' });
      // Another path is another request too.
      const { id } = (await call(app, 'GET', '/v1/conversations', { session })).json.items[0];
      const elsewhere = await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, headers, body: { role: 'user', content: 'x' } });
      expect(elsewhere.status).toBe(409);
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toHaveLength(1);
      expect(await messagesOf(id)).toBe(0);
    });

    it('keys are per caller: another session with the same key writes its own', async () => {
      const headers = { 'idempotency-key': 'shared-key' };
      const a = await call(app, 'POST', '/v1/conversations', { session: newSession(), headers, body: {} });
      const b = await call(app, 'POST', '/v1/conversations', { session: newSession(), headers, body: {} });
      expect(b.headers.get('idempotent-replayed')).toBeNull();
      expect(b.json.id).not.toBe(a.json.id);
    });

    it('POST …/messages and …/fork: a retry stores nothing more', async () => {
      const session = newSession();
      const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
      const headers = { 'idempotency-key': key() };
      const post = () => call(app, 'POST', `/v1/conversations/${id}/messages`, { session, headers, body: { role: 'user', content: 'only once' } });
      const [first, retry] = [await post(), await post()];
      expect(retry.json).toEqual(first.json);
      expect(await messagesOf(id)).toBe(1);
      const forkHeaders = { 'idempotency-key': key() };
      const fork = () => call(app, 'POST', `/v1/conversations/${id}/fork`, { session, headers: forkHeaders, body: { message_id: first.json.id } });
      const [forked, again] = [await fork(), await fork()];
      expect(forked.status).toBe(201);
      expect(again.json.id).toBe(forked.json.id);
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toHaveLength(2);
    });

    it('a write that failed keeps no key: its retry runs again', async () => {
      const limited = testApp(db.store, { MAX_MESSAGES_PER_CONVERSATION: '1' });
      const session = newSession();
      const { id } = (await call(limited, 'POST', '/v1/conversations', { session, body: {} })).json;
      await call(limited, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', content: 'fills it' } });
      const headers = { 'idempotency-key': key() };
      const body = { role: 'user', content: 'over' };
      expect((await call(limited, 'POST', `/v1/conversations/${id}/messages`, { session, headers, body })).status).toBe(429);
      expect((await call(app, 'POST', `/v1/conversations/${id}/messages`, { session, headers, body })).status).toBe(201);
      expect(await messagesOf(id)).toBe(2);
    });

    it.each([
      ['empty', ''],
      ['longer than 255 characters', 'k'.repeat(256)],
      ['not printable ASCII', 'cl\u00e9'],
      ['holding a control character', 'a\tb'],
    ])('refuses a key that is %s with 400', async (_, value) => {
      const session = newSession();
      const res = await call(app, 'POST', '/v1/conversations', { session, headers: { 'idempotency-key': value }, body: {} });
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ code: 'invalid_value', param: 'Idempotency-Key' });
      expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toEqual([]);
    });
  });

  describe('chat completions', () => {
    const post = (session: string, body: Record<string, unknown>, headers: Record<string, string>) =>
      app.request('/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', 'x-session-id': session, ...headers }, body: JSON.stringify(body) });

    it('a retried plain completion gets the recorded answer; the upstream is asked once', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      const body = { messages: [{ role: 'user', content: 'plain' }], mock: { text: 'The answer.' } };
      const first = await post(session, body, headers);
      const firstJson = await first.json();
      const id = first.headers.get('x-conversation-id')!;
      const retry = await post(session, body, headers);
      expect(retry.status).toBe(200);
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      expect(retry.headers.get('x-conversation-id')).toBe(id);
      const json = await retry.json();
      expect(json).toMatchObject({ object: 'chat.completion', model: firstJson.model, choices: [{ index: 0, message: { role: 'assistant', content: 'The answer.' }, finish_reason: 'stop' }] });
      expect(json.usage).toEqual(firstJson.usage);
      expect(mock.requests).toHaveLength(1);
      expect(await messagesOf(id)).toBe(2);
    });

    it('a retried stream is streamed again from the store, usage included when asked for', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      const body = { messages: [{ role: 'user', content: 'stream' }], stream: true, stream_options: { include_usage: true }, mock: { chunks: 5 } };
      const first = await post(session, body, headers);
      const firstText = (await readChunks(first.body!)).text;
      const id = first.headers.get('x-conversation-id')!;
      await waitFor(async () => (await db.sql(`select status from messages where conversation_id = '${id}' and role = 'assistant'`))[0]?.status === 'final');
      const retry = await post(session, body, headers);
      expect(retry.headers.get('content-type')).toBe('text/event-stream');
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      const text = (await readChunks(retry.body!)).text;
      expect(streamedContent(text)).toBe(streamedContent(firstText));
      expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
      const usage = (s: string) => JSON.parse(s.split('\n\n').filter((e) => e.includes('"usage":{')).at(-1)!.slice(6)).usage;
      expect(usage(text)).toEqual(usage(firstText));
      expect(mock.requests).toHaveLength(1);
      expect(await messagesOf(id)).toBe(2);
    });

    it('a retry that comes while the first stream runs waits for its end, then gets the whole answer', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      const body = { messages: [{ role: 'user', content: 'slow' }], stream: true, mock: { text: 'one two three four', chunks: 4, delay_ms: 30 } };
      const first = await post(session, body, headers);
      const retrying = post(session, body, headers);
      const firstText = (await readChunks(first.body!)).text;
      const retry = await retrying;
      expect(streamedContent((await readChunks(retry.body!)).text)).toBe('one two three four');
      expect(streamedContent(firstText)).toBe('one two three four');
      expect(mock.requests).toHaveLength(1);
      expect(await messagesOf(first.headers.get('x-conversation-id')!)).toBe(2);
    });

    it('the same key with another chat request is a 409, nothing sent upstream', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      await (await post(session, { messages: [{ role: 'user', content: 'one' }] }, headers)).text();
      const other = await post(session, { messages: [{ role: 'user', content: 'two' }] }, headers);
      expect(other.status).toBe(409);
      expect((await other.json()).error.code).toBe('idempotency_key_reused');
      expect(mock.requests).toHaveLength(1);
      expect(await count('conversations', `where session_id = '${hashSessionId(session)}'`)).toBe(1);
    });

    it('an upstream failure keeps no key: the retry asks the upstream again, into the same turn', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key() };
      const body = { messages: [{ role: 'user', content: 'flaky' }], mock: { fault: 'status', status: 500 } };
      const failed = await post(session, body, headers);
      expect(failed.status).toBe(500);
      const id = failed.headers.get('x-conversation-id')!;
      mock.defaults.fault = undefined;
      const retry = await post(session, { ...body, conversation_id: id }, headers);
      // Another body (it names the conversation now): a new request, so it runs.
      expect(retry.status).toBe(500);
      expect(mock.requests).toHaveLength(2);
      // One user message, two failed answers to it.
      expect(await db.sql(`select role, status from messages where conversation_id = '${id}' order by seq`)).toEqual([
        { role: 'user', status: 'final' },
        { role: 'assistant', status: 'error' },
        { role: 'assistant', status: 'error' },
      ]);
    });

    it('a request that is not recorded ignores its key', async () => {
      const session = newSession();
      const headers = { 'idempotency-key': key(), 'x-persist': 'off' };
      const body = { messages: [{ role: 'user', content: 'off the record' }] };
      await (await post(session, body, headers)).text();
      await (await post(session, body, headers)).text();
      expect(mock.requests).toHaveLength(2);
      expect(await count('idempotency_keys', `where key = '${headers['idempotency-key']}'`)).toBe(0);
    });
  });

  it('keys are purged by the retention sweep after 24 hours', async () => {
    const session = newSession();
    const headers = { 'idempotency-key': key() };
    await call(app, 'POST', '/v1/conversations', { session, headers, body: {} });
    const where = `where key = '${headers['idempotency-key']}'`;
    expect(await count('idempotency_keys', where)).toBe(1);
    await db.store.purgeExpired({ idleBefore: null, deletedBefore: new Date(0), batchSize: 100, keysBefore: new Date(Date.now() - 60_000) });
    expect(await count('idempotency_keys', where)).toBe(1);
    const purged = await db.store.purgeExpired({ idleBefore: null, deletedBefore: new Date(0), batchSize: 100_000, keysBefore: new Date(Date.now() + 1) });
    expect(purged.idempotencyKeys).toBeGreaterThanOrEqual(1);
    expect(await count('idempotency_keys', where)).toBe(0);
  });
});
