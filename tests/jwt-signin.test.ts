import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { AUDIENCE, ISSUER, newKey, sign, startJwksServer, type JwksServer, type TestKey } from './helpers/jwks.js';

/** Signing in through HTTP with tokens of a local identity provider, its key set served over HTTP. */
describe.each(dialects)('JWT sign-in through a JWKS on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let idp: JwksServer;
  let app: TestApp;
  let first: TestKey;

  const now = () => Math.floor(Date.now() / 1000);
  const token = (key: TestKey, claims: Record<string, unknown> = {}) => sign(key, { iat: now(), exp: now() + 300, ...claims });
  const asBearer = async (t: Promise<string> | string) => ({ authorization: `Bearer ${await t}` });

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    first = await newKey('RS256', 'first');
    idp = await startJwksServer([first]);
    app = testApp(db.store, {
      AUTH_JWKS_URL: idp.url,
      AUTH_JWT_ISSUER: ISSUER,
      AUTH_JWT_AUDIENCE: AUDIENCE,
      // Every unknown kid may refetch at once: rotation is seen by the very next token.
      AUTH_JWKS_COOLDOWN_MS: '0',
    });
  });
  afterAll(async () => {
    await idp?.close();
    await db?.cleanup();
  });

  it('makes the user on first sight from iss + sub, with the name claim, and knows them again', async () => {
    const headers = await asBearer(token(first, { sub: 'alice', name: 'Alice' }));
    const me = await call(app, 'GET', '/v1/me', { headers });
    expect(me.status).toBe(200);
    expect(me.json).toMatchObject({ type: 'user', user: { name: 'Alice', is_admin: false }, session_id: null });
    const made = await call(app, 'POST', '/v1/conversations', { headers, body: { title: 'from a token' } });
    expect(made.status).toBe(201);
    const again = await call(app, 'GET', '/v1/conversations', { headers: await asBearer(token(first, { sub: 'alice', name: 'Alice' })) });
    expect(again.json.items.map((i: any) => i.id)).toEqual([made.json.id]);
    const rows = await db.sql(`select id, name, issuer, subject from users where subject = 'alice'`);
    expect(rows).toEqual([{ id: me.json.user.id, name: 'Alice', issuer: ISSUER, subject: 'alice' }]);
  });

  it('follows a key rotation: the new key is fetched for its first token, the retired one refused', async () => {
    const second = await newKey('ES256', 'second');
    idp.setKeys([second]);
    const fresh = await call(app, 'GET', '/v1/me', { headers: await asBearer(token(second, { sub: 'bob' })) });
    expect(fresh.status).toBe(200);
    expect(fresh.json.user.name).toBe('bob'); // no name claim: the subject stands in
    const retired = await call(app, 'GET', '/v1/me', { headers: await asBearer(token(first, { sub: 'carol' })) });
    expect(retired.status).toBe(401);
    expect(retired.json.error.code).toBe('invalid_token');
    expect(await db.sql(`select id from users where subject = 'carol'`)).toEqual([]);
    idp.setKeys([first]);
  });

  it('answers 503 auth_unavailable while the key set cannot be fetched, and never lets the caller in as anonymous', async () => {
    await idp.down();
    try {
      const res = await call(app, 'GET', '/v1/conversations', { headers: await asBearer(token(await newKey('RS256', 'unknown'), { sub: 'dave' })) });
      expect(res.status).toBe(503);
      expect(res.json.error.code).toBe('auth_unavailable');
      expect(res.headers.get('retry-after')).toBeTruthy();
      expect(res.headers.get('set-cookie')).toBeNull();
    } finally {
      await idp.up();
    }
  });

  it.each([
    ['expired', { exp: Math.floor(Date.now() / 1000) - 3600 }],
    ['for another audience', { aud: 'someone-else' }],
    ['from another issuer', { iss: 'https://evil.test' }],
    ['without a subject', { sub: undefined }],
  ])('refuses a token %s with 401 invalid_token and makes no user', async (_why, claims) => {
    const before = await db.sql('select count(*) as n from users');
    const res = await call(app, 'GET', '/v1/me', { headers: await asBearer(token(first, { sub: 'erin', ...claims })) });
    expect(res.status).toBe(401);
    expect(res.json.error).toMatchObject({ type: 'authentication_error', code: 'invalid_token' });
    expect(await db.sql('select count(*) as n from users')).toEqual(before);
  });
});
