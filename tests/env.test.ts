import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { parseDbUrl } from '../db/url.js';

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 3001,
      allowedOrigins: ['http://localhost:3000'],
      rateLimit: { windowSec: 60, max: 50 },
      persist: false,
      db: { dialect: 'sqlite', path: './data/dev.db' },
      dbPoolMax: 10,
      retention: { days: 30, deletedDays: 7, batchSize: 500 },
      privacy: { consentRequired: false },
      limits: { conversationsPerSession: 100, messagesPerConversation: 1000 },
      flush: { ms: 250, chars: 512 },
      redactSystemPrompts: false,
      bodyLimitBytes: 1_048_576,
      upstream: { defaultModel: 'gpt-4.1-mini', timeoutMs: 120_000, baseUrl: undefined },
    });
  });

  it('parses lists, booleans and trims the upstream URL', () => {
    const c = loadConfig({
      ALLOWED_ORIGIN: 'http://a.test, http://b.test',
      PERSIST_TRANSCRIPTS: 'true',
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1/',
      DB_URL: 'postgresql://u:p@h:5432/db',
    });
    expect(c.allowedOrigins).toEqual(['http://a.test', 'http://b.test']);
    expect(c.persist).toBe(true);
    expect(c.upstream.baseUrl).toBe('http://127.0.0.1:9/v1');
    expect(c.db).toEqual({ dialect: 'postgres', url: 'postgresql://u:p@h:5432/db' });
  });

  it.each([
    ['PORT', 'abc', /PORT \(got "abc"\): must be a whole number from 0 to 65535/],
    ['PORT', '70000', /PORT/],
    ['PERSIST_TRANSCRIPTS', 'maybe', /PERSIST_TRANSCRIPTS .*must be one of true, false/],
    ['DB_URL', 'mysql://x', /DB_URL .*must start with file:/],
    ['OPENAI_BASE_URL', 'api.openai.com', /OPENAI_BASE_URL .*http:\/\/ or https:\/\//],
    ['HISTORY_BATCH_FLUSH_MS', '0', /HISTORY_BATCH_FLUSH_MS/],
    ['BODY_LIMIT_BYTES', '1.5', /BODY_LIMIT_BYTES .*whole number/],
    ['DB_POOL_MAX', '0', /DB_POOL_MAX/],
  ])('stops on a bad %s naming the variable', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  it('never echoes a password from DB_URL or an API key', () => {
    try {
      loadConfig({ DB_URL: 'mysql://user:hunter2@db/x' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
      expect((err as Error).message).toContain('user:***@');
    }
  });
});

describe('identity settings', () => {
  const SECRET = 's'.repeat(32);

  it('defaults to anonymous access, no admin key and no JWT sign-in', () => {
    expect(loadConfig({}).auth).toEqual({ anonymousAccess: true, adminApiKey: undefined, jwt: null });
  });

  it('reads a shared secret as HS256 only, with the claim checks', () => {
    const c = loadConfig({ AUTH_JWT_SECRET: SECRET, AUTH_JWT_ISSUER: 'https://idp.test', AUTH_JWT_AUDIENCE: 'chat', AUTH_JWT_CLOCK_TOLERANCE_SEC: '0', ANONYMOUS_ACCESS: 'false' });
    expect(c.auth).toEqual({
      anonymousAccess: false,
      adminApiKey: undefined,
      jwt: { kind: 'secret', secret: SECRET, algorithms: ['HS256'], issuer: 'https://idp.test', audience: 'chat', clockToleranceSec: 0 },
    });
  });

  it('reads a key set URL with its algorithms, cooldown and timeout', () => {
    expect(loadConfig({ AUTH_JWKS_URL: 'https://idp.test/jwks.json' }).auth.jwt).toEqual({
      kind: 'jwks',
      url: 'https://idp.test/jwks.json',
      algorithms: ['RS256', 'ES256'],
      cooldownMs: 30_000,
      timeoutMs: 5_000,
      issuer: undefined,
      audience: undefined,
      clockToleranceSec: 60,
    });
    const c = loadConfig({ AUTH_JWKS_URL: 'http://127.0.0.1:9/jwks.json', AUTH_JWT_ALGORITHMS: 'EdDSA, PS256,EdDSA', AUTH_JWKS_COOLDOWN_MS: '0', AUTH_JWKS_TIMEOUT_MS: '250' });
    expect(c.auth.jwt).toMatchObject({ algorithms: ['EdDSA', 'PS256'], cooldownMs: 0, timeoutMs: 250 });
  });

  it.each([
    [{ AUTH_JWT_SECRET: 'short' }, /AUTH_JWT_SECRET: must be at least 32 characters/],
    [{ ADMIN_API_KEY: 'short' }, /ADMIN_API_KEY: must be at least 32 characters/],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_JWKS_URL: 'https://idp.test/jwks.json' }, /AUTH_JWT_SECRET and AUTH_JWKS_URL are both set: pick one/],
    [{ AUTH_JWKS_URL: 'idp.test/jwks.json' }, /AUTH_JWKS_URL \(got "idp.test\/jwks.json"\): must be an http:\/\/ or https:\/\/ URL/],
    [{ AUTH_JWKS_URL: 'ftp://idp.test/jwks.json' }, /AUTH_JWKS_URL .*http:\/\/ or https:\/\//],
    [{ AUTH_JWKS_URL: 'https://u:p@idp.test/jwks.json' }, /AUTH_JWKS_URL .*user:password@/],
    [{ AUTH_JWKS_URL: 'https://idp.test/jwks.json', AUTH_JWT_ALGORITHMS: 'RS256,HS256' }, /AUTH_JWT_ALGORITHMS .*HS256 is signed with a shared secret.*AUTH_JWT_SECRET/],
    [{ AUTH_JWKS_URL: 'https://idp.test/jwks.json', AUTH_JWT_ALGORITHMS: 'none' }, /AUTH_JWT_ALGORITHMS .*must be algorithms from RS256/],
    [{ AUTH_JWKS_URL: 'https://idp.test/jwks.json', AUTH_JWT_ALGORITHMS: 'rs256' }, /AUTH_JWT_ALGORITHMS .*case matters/],
    [{ AUTH_JWKS_URL: 'https://idp.test/jwks.json', AUTH_JWT_ALGORITHMS: ' , ' }, /AUTH_JWT_ALGORITHMS .*must be algorithms/],
    [{ AUTH_JWT_SECRET: SECRET, AUTH_JWT_ALGORITHMS: 'RS256' }, /AUTH_JWT_ALGORITHMS .*with AUTH_JWT_SECRET tokens are HS256/],
    [{ AUTH_JWT_CLOCK_TOLERANCE_SEC: '61' }, /AUTH_JWT_CLOCK_TOLERANCE_SEC .*from 0 to 60/],
    [{ AUTH_JWT_CLOCK_TOLERANCE_SEC: '-1' }, /AUTH_JWT_CLOCK_TOLERANCE_SEC .*from 0 to 60/],
    [{ AUTH_JWKS_COOLDOWN_MS: 'soon' }, /AUTH_JWKS_COOLDOWN_MS .*whole number/],
    [{ AUTH_JWKS_TIMEOUT_MS: '0' }, /AUTH_JWKS_TIMEOUT_MS .*from 100 to 60000/],
    [{ ANONYMOUS_ACCESS: 'nope' }, /ANONYMOUS_ACCESS .*must be one of true, false/],
  ])('refuses to start with %j', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(message);
  });

  it('never echoes the admin key or the JWT secret', () => {
    for (const env of [{ ADMIN_API_KEY: 'hunter2-admin' }, { AUTH_JWT_SECRET: 'hunter2-secret' }, { AUTH_JWT_SECRET: `hunter2-${SECRET}`, AUTH_JWKS_URL: 'https://idp.test/k' }]) {
      const err = (() => {
        try {
          loadConfig(env);
        } catch (e) {
          return e as Error;
        }
      })();
      expect(err).toBeInstanceOf(ConfigError);
      expect(err!.message).not.toContain('hunter2');
    }
  });
});

describe('DB_URL', () => {
  it.each([
    ['file:./data/dev.db', { dialect: 'sqlite', path: './data/dev.db' }],
    ['file:/abs/x.db', { dialect: 'sqlite', path: '/abs/x.db' }],
    ['file::memory:', { dialect: 'sqlite', path: ':memory:' }],
    ['postgres://postgres@127.0.0.1:5432/test', { dialect: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' }],
  ])('parses %s', (raw, target) => {
    expect(parseDbUrl(raw)).toEqual(target);
  });

  it.each(['', 'file:', 'sqlite://x.db', 'mysql://h/db', 'postgres://'])('refuses %j', (raw) => {
    expect(() => parseDbUrl(raw)).toThrow();
  });
});
