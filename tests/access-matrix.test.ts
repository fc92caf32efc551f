import { SignJWT } from 'jose';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newShareToken } from '../app/auth/api-keys.js';
import { newChatCompletionId, newResponseId } from '../db/store.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { signedInUser, type TestUser } from './helpers/users.js';

/**
 * Every endpoint × every kind of caller, with the status each must get, and no row changed by
 * any request that is refused. Whoever may not read a conversation gets 404 for it; whoever may
 * read it but not act gets 403; a credential that fails is a 401 everywhere but the public link.
 */

const mock = useMockUpstream();
const JWT_SECRET = 'matrix-jwt-secret-0123456789-abcdefghij';
const AUDIENCE = 'chat-proxy-tests';
const ISSUER = 'https://idp.test';

type Role = 'owner' | 'editor' | 'viewer' | 'other' | 'anonymous';
const roles: Role[] = ['owner', 'editor', 'viewer', 'other', 'anonymous'];
const badCredentials = ['revoked key', 'expired JWT', 'tampered signature', 'alg none', 'wrong audience'] as const;

interface Fixture {
  id: string;
  /** Its one message. */
  messageId: string;
  linkToken: string;
  someoneElse: TestUser;
  /** The stored completion of the conversation's exchange, and an item of it (the question). */
  completionId: string;
  itemId: string;
  /** The conversation's answer (an assistant message, final). */
  answerId: string;
  /** A response recorded in the conversation (POST /v1/responses). */
  responseId: string;
}

interface Endpoint {
  name: string;
  request(f: Fixture): { method: string; path: string; body?: unknown; conversation?: boolean; headers?: Record<string, string> };
  /** Status per role; callers with bad credentials get 401 unless `public`. */
  expect: Record<Role, number>;
  public?: boolean;
}

const on = (owner: number, editor: number, viewer: number, outsider = 404): Record<Role, number> => ({ owner, editor, viewer, other: outsider, anonymous: outsider });
const everyone = (status: number): Record<Role, number> => ({ owner: status, editor: status, viewer: status, other: status, anonymous: status });
const users = (status: number, anonymous: number): Record<Role, number> => ({ ...everyone(status), anonymous });

const endpoints: Endpoint[] = [
  {
    name: 'chat into the conversation',
    request: () => ({ method: 'POST', path: '/v1/chat/completions', body: { model: 'mock-model', messages: [{ role: 'user', content: 'more' }] }, conversation: true }),
    expect: on(200, 200, 403),
  },
  { name: 'list conversations', request: () => ({ method: 'GET', path: '/v1/conversations' }), expect: everyone(200) },
  { name: 'create a conversation', request: () => ({ method: 'POST', path: '/v1/conversations', body: { title: 't' } }), expect: everyone(201) },
  { name: 'read the conversation', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}` }), expect: on(200, 200, 200) },
  { name: 'read its whole tree', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}?view=tree` }), expect: on(200, 200, 200) },
  {
    name: 'switch its branch',
    request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/active`, body: { message_id: f.messageId } }),
    expect: on(200, 200, 403),
  },
  // Whoever may read it may copy it into a conversation of their own.
  { name: 'fork it', request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/fork`, body: { message_id: f.messageId } }), expect: on(201, 201, 201) },
  { name: 'rename the conversation', request: (f) => ({ method: 'PATCH', path: `/v1/conversations/${f.id}`, body: { title: 'renamed' } }), expect: on(200, 403, 403) },
  { name: 'delete the conversation', request: (f) => ({ method: 'DELETE', path: `/v1/conversations/${f.id}` }), expect: on(200, 403, 403) },
  { name: 'update it as OpenAI does', request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}`, body: { metadata: { a: 'b' } } }), expect: on(200, 403, 403) },
  { name: 'list its items', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}/items` }), expect: on(200, 200, 200) },
  {
    name: 'add items',
    request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/items`, body: { items: [{ role: 'user', content: 'item' }] } }),
    expect: on(200, 200, 403),
  },
  { name: 'get an item', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}/items/${f.itemId}` }), expect: on(200, 200, 200) },
  { name: 'delete an item', request: (f) => ({ method: 'DELETE', path: `/v1/conversations/${f.id}/items/${f.itemId}` }), expect: on(200, 403, 403) },
  { name: 'list stored completions', request: () => ({ method: 'GET', path: '/v1/chat/completions' }), expect: everyone(200) },
  { name: 'get the stored completion', request: (f) => ({ method: 'GET', path: `/v1/chat/completions/${f.completionId}` }), expect: on(200, 200, 200) },
  { name: "list the completion's messages", request: (f) => ({ method: 'GET', path: `/v1/chat/completions/${f.completionId}/messages` }), expect: on(200, 200, 200) },
  {
    name: "update the completion's metadata",
    request: (f) => ({ method: 'POST', path: `/v1/chat/completions/${f.completionId}`, body: { metadata: { a: 'b' } } }),
    expect: on(200, 403, 403),
  },
  { name: 'delete the stored completion', request: (f) => ({ method: 'DELETE', path: `/v1/chat/completions/${f.completionId}` }), expect: on(200, 403, 403) },
  // Not stored: the owner's session is at its conversation limit by now.
  { name: 'create a response', request: () => ({ method: 'POST', path: '/v1/responses', body: { model: 'mock-model', input: 'hi', store: false } }), expect: everyone(200) },
  {
    name: 'respond into the conversation',
    request: (f) => ({ method: 'POST', path: '/v1/responses', body: { model: 'mock-model', input: 'more', conversation: f.id } }),
    expect: on(200, 200, 403),
  },
  {
    // Someone who may not read it is told it does not exist, as OpenAI says it (400).
    name: 'continue from the response',
    request: (f) => ({ method: 'POST', path: '/v1/responses', body: { model: 'mock-model', input: 'more', previous_response_id: f.responseId } }),
    expect: on(200, 200, 403, 400),
  },
  { name: 'get the response', request: (f) => ({ method: 'GET', path: `/v1/responses/${f.responseId}` }), expect: on(200, 200, 200) },
  { name: "list the response's input items", request: (f) => ({ method: 'GET', path: `/v1/responses/${f.responseId}/input_items` }), expect: on(200, 200, 200) },
  // Not a background response: nothing to cancel, once the caller may.
  { name: 'cancel the response', request: (f) => ({ method: 'POST', path: `/v1/responses/${f.responseId}/cancel` }), expect: on(400, 400, 403) },
  { name: 'delete the response', request: (f) => ({ method: 'DELETE', path: `/v1/responses/${f.responseId}` }), expect: on(200, 403, 403) },
  { name: "list the upstream's models", request: () => ({ method: 'GET', path: '/v1/models' }), expect: everyone(200) },
  {
    name: 'post a message',
    request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/messages`, body: { role: 'user', content: 'note' } }),
    expect: on(201, 201, 403),
  },
  {
    name: 'share it',
    request: (f) => ({ method: 'PUT', path: `/v1/conversations/${f.id}/shares/${f.someoneElse.user.id}`, body: { role: 'viewer' } }),
    expect: on(200, 403, 403),
  },
  { name: 'list its shares', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}/shares` }), expect: on(200, 403, 403) },
  {
    name: 'withdraw a share',
    request: (f) => ({ method: 'DELETE', path: `/v1/conversations/${f.id}/shares/${f.someoneElse.user.id}` }),
    expect: on(204, 403, 403),
  },
  { name: 'make a share link', request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/share_link` }), expect: on(201, 403, 403) },
  { name: 'revoke the share link', request: (f) => ({ method: 'DELETE', path: `/v1/conversations/${f.id}/share_link` }), expect: on(204, 403, 403) },
  { name: 'open the share link', request: (f) => ({ method: 'GET', path: `/v1/shared/${f.linkToken}` }), expect: everyone(200), public: true },
  { name: 'who am I', request: () => ({ method: 'GET', path: '/v1/me' }), expect: everyone(200) },
  { name: 'my usage', request: () => ({ method: 'GET', path: '/v1/me/usage' }), expect: everyone(200) },
  // A signed-in caller who sends no session has none to claim; an anonymous one cannot claim.
  { name: 'claim a session', request: () => ({ method: 'POST', path: '/v1/me/claim' }), expect: users(400, 403) },
  { name: 'read the privacy notice', request: () => ({ method: 'GET', path: '/v1/privacy' }), expect: everyone(200) },
  { name: 'give consent', request: () => ({ method: 'POST', path: '/v1/privacy/consent', body: { consent: 'granted' } }), expect: everyone(200) },
  // Watching and stopping an answer (live answers).
  { name: 'watch the answer', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}/messages/${f.answerId}/stream` }), expect: on(200, 200, 200) },
  { name: 'cancel the answer', request: (f) => ({ method: 'POST', path: `/v1/conversations/${f.id}/messages/${f.answerId}/cancel` }), expect: on(200, 200, 403) },
  // Moving data and finding it.
  { name: 'export what one owns', request: () => ({ method: 'GET', path: '/v1/conversations/export' }), expect: everyone(200) },
  { name: 'export the conversation', request: (f) => ({ method: 'GET', path: `/v1/conversations/${f.id}/export` }), expect: on(200, 200, 200) },
  {
    name: 'import a file',
    request: () => ({
      method: 'POST',
      path: '/v1/conversations/import',
      headers: { 'content-type': 'application/x-ndjson' },
      body: '{"type":"export","format":"chat-proxy","version":1,"exported_at":"2026-01-01T00:00:00.000Z"}\n',
    }),
    expect: everyone(200),
  },
  { name: 'search', request: () => ({ method: 'GET', path: '/v1/conversations/search?q=hello' }), expect: everyone(200) },
  { name: 'list users (admin)', request: () => ({ method: 'GET', path: '/v1/admin/users' }), expect: everyone(403) },
  { name: 'create a user (admin)', request: () => ({ method: 'POST', path: '/v1/admin/users', body: { name: 'x' } }), expect: everyone(403) },
  { name: "create someone's key (admin)", request: (f) => ({ method: 'POST', path: `/v1/admin/users/${f.someoneElse.user.id}/api_keys`, body: {} }), expect: everyone(403) },
  { name: 'erase a user (admin)', request: (f) => ({ method: 'DELETE', path: `/v1/admin/users/${f.someoneElse.user.id}` }), expect: everyone(403) },
];

/** Every table's rows, minus the columns a mere read may touch (last seen, last used). */
const TABLES: Record<string, string> = {
  users: 'select * from users order by id',
  api_keys: 'select id, user_id, name, prefix, hash, created_at, expires_at, revoked_at from api_keys order by id',
  sessions: 'select id, user_id, created_at, user_agent, ip_hash, consent, consent_at from sessions order by id',
  conversations: 'select * from conversations order by id',
  messages: 'select * from messages order by id',
  conversation_shares: 'select * from conversation_shares order by conversation_id, user_id',
  share_links: 'select * from share_links order by token_hash',
  chat_completions: 'select * from chat_completions order by id',
  responses: 'select * from responses order by id',
  response_events: 'select * from response_events order by response_id, seq',
  server_settings: 'select * from server_settings order by key',
};

async function jwt(claims: Record<string, unknown>, { secret = JWT_SECRET, audience = AUDIENCE, expiresIn = '5m' as string | number } = {}) {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuer(ISSUER)
    .setAudience(audience)
    .setIssuedAt()
    .setExpirationTime(expiresIn)
    .sign(new TextEncoder().encode(secret));
}

describe.each(dialects)('access matrix on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;
  let people: Record<'owner' | 'editor' | 'viewer' | 'other' | 'someoneElse', TestUser>;
  let bad: Record<(typeof badCredentials)[number], Record<string, string>>;
  let fixture: Fixture;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url, AUTH_JWT_SECRET: JWT_SECRET, AUTH_JWT_AUDIENCE: AUDIENCE, AUTH_JWT_ISSUER: ISSUER });
    const made = await Promise.all(['owner', 'editor', 'viewer', 'other', 'someoneElse'].map((n) => signedInUser(db.store, n)));
    people = Object.fromEntries(made.map((u) => [u.user.name, u])) as typeof people;
    const revoked = await signedInUser(db.store, 'revoked');
    await db.store.revokeApiKey(revoked.keyId, new Date());
    const valid = await jwt({ sub: 'matrix-user' });
    const [head, body] = valid.split('.');
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    bad = {
      'revoked key': revoked.auth,
      'expired JWT': bearer(await jwt({ sub: 'matrix-user' }, { expiresIn: Math.floor(Date.now() / 1000) - 3600 })),
      'tampered signature': bearer(`${head}.${b64({ ...JSON.parse(Buffer.from(body!, 'base64url').toString()), sub: 'someone-else' })}.${valid.split('.')[2]}`),
      'alg none': bearer(`${b64({ alg: 'none', typ: 'JWT' })}.${body}.`),
      'wrong audience': bearer(await jwt({ sub: 'matrix-user' }, { audience: 'another-service' })),
    };
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  // A fresh conversation for every case: the owner's, with an exchange recorded as a stored
  // completion, shared with an editor and a viewer, with a public link, and also shared with
  // someone else (for the share routes).
  beforeEach(async () => {
    const owner = { sessionId: `matrix-${crypto.randomUUID()}`, userId: people.owner.user.id };
    const itemId = crypto.randomUUID();
    const answer = crypto.randomUUID();
    const completionId = newChatCompletionId();
    const c = await db.store.createConversation(
      owner,
      { title: 'matrix' },
      {
        maxPerSession: 10_000,
        messages: [
          { id: itemId, role: 'user', content: 'hi' },
          { id: answer, role: 'assistant', content: 'hello' },
        ],
        completion: { id: completionId, messageId: answer, model: 'mock-model', metadata: {} },
      },
    );
    const responseId = newResponseId();
    const responseAnswer = crypto.randomUUID();
    const question = crypto.randomUUID();
    await db.store.appendMessages(owner, c.id, [{ id: question, role: 'user', content: 'and?' }, { id: responseAnswer, role: 'assistant', content: 'so.' }], {
      maxMessages: 10_000,
      response: {
        id: responseId,
        messageId: responseAnswer,
        inputMessageIds: [question],
        model: 'mock-model',
        instructions: null,
        previousResponseId: null,
        params: {},
        metadata: {},
        background: false,
        createdAt: new Date(),
      },
    });
    await db.store.setShare(c.id, people.editor.user.id, 'editor');
    await db.store.setShare(c.id, people.viewer.user.id, 'viewer');
    await db.store.setShare(c.id, people.someoneElse.user.id, 'viewer');
    const link = newShareToken();
    await db.store.setShareLink(c.id, link.hash);
    fixture = { id: c.id, messageId: c.activeMessageId!, linkToken: link.token, someoneElse: people.someoneElse, completionId, itemId, answerId: answer, responseId };
  });

  const snapshot = async () => Object.fromEntries(await Promise.all(Object.entries(TABLES).map(async ([t, q]) => [t, JSON.stringify(await db.sql(q))])));
  const send = (endpoint: Endpoint, headers: Record<string, string>) => {
    const { method, path, body, conversation, headers: own } = endpoint.request(fixture);
    return call(app, method, path, { headers: { ...headers, ...own, ...(conversation && { 'x-conversation-id': fixture.id }) }, body });
  };

  const cases = endpoints.flatMap((e) => [
    ...roles.map((role) => ({ endpoint: e, caller: role as string, status: e.expect[role] })),
    ...badCredentials.map((b) => ({ endpoint: e, caller: b as string, status: e.public ? 200 : 401 })),
  ]);

  it.each(cases.map((c) => [c.endpoint.name, c.caller, c.status, c] as const))('%s as %s → %i', async (_name, caller, status, { endpoint }) => {
    const headers = caller === 'anonymous' ? { 'x-session-id': newSession() } : caller in people ? people[caller as Role & keyof typeof people].auth : bad[caller as (typeof badCredentials)[number]];
    const before = await snapshot();
    const res = await send(endpoint, headers);
    expect(res.status, res.text).toBe(status);
    if (status === 401) {
      expect(res.json.error.type).toBe('authentication_error');
      expect(res.json.error.code).toBe(caller === 'revoked key' ? 'invalid_api_key' : 'invalid_token');
    }
    if (status === 403) expect(res.json.error.code).toBe('permission_denied');
    if (status >= 400) expect(await snapshot()).toEqual(before);
  });
});
