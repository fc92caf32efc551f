import { CompactSign } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createJwtVerifier, looksLikeJwt, MAX_JWT_LENGTH, type JwtVerifier } from '../app/auth/jwt.js';
import { loadConfig } from '../app/env.js';
import { ApiError } from '../app/errors.js';
import {
  AUDIENCE,
  confusedToken,
  ISSUER,
  newKey,
  NOW,
  nowSec,
  sign,
  signHs256,
  signRs256ByHand,
  signWithWeakRsa,
  startJwksServer,
  tamperClaims,
  tamperSignature,
  unsignedToken,
  type JwksServer,
  type TestKey,
} from './helpers/jwks.js';

const SECRET = 'jwt-secret-0123456789abcdef-0123456789';

function verifierFor(env: Record<string, string>): JwtVerifier {
  const verifier = createJwtVerifier(loadConfig(env).auth, { now: () => NOW });
  if (!verifier) throw new Error('JWT sign-in is off');
  return verifier;
}

/** The ApiError `verify` refuses the token with. */
async function refusal(verifier: JwtVerifier, token: string): Promise<ApiError> {
  const err = await verifier.verify(token).then(
    (identity) => {
      throw new Error(`accepted: ${JSON.stringify(identity)}`);
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

/** A 401 invalid_token whose message matches `message` and quotes no part of the token. */
async function expectInvalid(verifier: JwtVerifier, token: string, message: RegExp) {
  const err = await refusal(verifier, token);
  expect({ status: err.status, type: err.type, code: err.code }).toEqual({ status: 401, type: 'authentication_error', code: 'invalid_token' });
  expect(err.message).toMatch(message);
  for (const part of token.split('.').filter((p) => p.length >= 8)) expect(err.message).not.toContain(part);
  return err;
}

async function expectUnavailable(verifier: JwtVerifier, token: string, message: RegExp) {
  const err = await refusal(verifier, token);
  expect({ status: err.status, type: err.type, code: err.code }).toEqual({ status: 503, type: 'server_error', code: 'auth_unavailable' });
  expect(err.headers['retry-after']).toMatch(/^\d+$/);
  expect(err.message).toMatch(message);
  expect(err.message).toContain('AUTH_JWKS_URL');
  return err;
}

describe('looksLikeJwt', () => {
  it.each([
    ['a signed JWT', 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln', true],
    ['alg none (empty signature), left for the verifier to refuse', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', true],
    ['an API key', 'cpk_abcdefgh', false],
    ['two parts', 'a.b', false],
    ['four parts', 'a.b.c.d', false],
    ['base64 that is not base64url', 'a+b.c.d', false],
    ['an empty header', '.b.c', false],
    ['a token past MAX_JWT_LENGTH', `${'a'.repeat(MAX_JWT_LENGTH)}.b.c`, false],
  ])('%s → %s', (_, token, expected) => {
    expect(looksLikeJwt(token)).toBe(expected);
  });
});

describe('createJwtVerifier', () => {
  it('is null when neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set', () => {
    expect(createJwtVerifier(loadConfig({ AUTH_JWT_ISSUER: ISSUER }).auth)).toBeNull();
  });
});

describe('JWT verifier with a shared secret (AUTH_JWT_SECRET)', () => {
  const verifier = verifierFor({ AUTH_JWT_SECRET: SECRET, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: AUDIENCE });
  let rsa: TestKey;
  beforeAll(async () => {
    rsa = await newKey('RS256', 'rsa-1');
  });

  it('accepts an HS256 token signed with it', async () => {
    expect(await verifier.verify(await signHs256(SECRET, { name: 'Ada' }))).toEqual({ issuer: ISSUER, subject: 'user-1', name: 'Ada' });
  });

  it('refuses one signed with another secret', async () => {
    await expectInvalid(verifier, await signHs256(`${SECRET}-not`), /signature does not verify/);
  });

  it('refuses other algorithms, even HS512 with the right secret', async () => {
    await expectInvalid(verifier, await sign(rsa), /signed with "RS256", which this server does not accept; it accepts HS256/);
    await expectInvalid(verifier, await signHs256(SECRET, {}, { alg: 'HS512' }), /signed with "HS512", which this server does not accept/);
    await expectInvalid(verifier, unsignedToken(), /signed with "none", which this server does not accept/);
  });
});

describe('JWT verifier with a key set (AUTH_JWKS_URL)', () => {
  let rsa: TestKey;
  let ec: TestKey;
  let jwks: JwksServer;
  const others: JwksServer[] = [];
  const env = (extra: Record<string, string> = {}) => ({ AUTH_JWKS_URL: jwks.url, AUTH_JWT_ISSUER: ISSUER, AUTH_JWT_AUDIENCE: AUDIENCE, ...extra });

  beforeAll(async () => {
    [rsa, ec] = await Promise.all([newKey('RS256', 'rsa-1'), newKey('ES256', 'ec-1')]);
    jwks = await startJwksServer([rsa, ec]);
  });
  afterEach(async () => {
    jwks.setKeys([rsa, ec]);
    jwks.behave({ serve: 'keys' });
    await Promise.all(others.splice(0).map((s) => s.close()));
  });
  afterAll(async () => {
    await jwks?.close();
  });

  /** A key set server of the test's own, closed after it. */
  async function ownJwks(keys: TestKey[]) {
    const server = await startJwksServer(keys);
    others.push(server);
    return server;
  }

  describe('accepts', () => {
    it.each(['RS256', 'ES256'] as const)('a valid %s token, naming its issuer, subject and name', async (alg) => {
      const key = alg === 'RS256' ? rsa : ec;
      expect(await verifierFor(env()).verify(await sign(key, { sub: 'u-42', name: 'Grace Hopper' }))).toEqual({ issuer: ISSUER, subject: 'u-42', name: 'Grace Hopper' });
    });

    it('a token without iss when no issuer is required (issuer ""), and keeps name only as a short string', async () => {
      const verifier = verifierFor({ AUTH_JWKS_URL: jwks.url });
      expect(await verifier.verify(await sign(rsa, { iss: undefined, aud: undefined, name: 42 as never }))).toEqual({ issuer: '', subject: 'user-1', name: null });
      const long = '🙂'.repeat(300);
      expect((await verifier.verify(await sign(rsa, { name: long }))).name).toBe('🙂'.repeat(200));
      expect((await verifier.verify(await sign(rsa, { name: '  ' }))).name).toBeNull();
    });

    it('an audience among several', async () => {
      expect((await verifierFor(env()).verify(await sign(rsa, { aud: ['other', AUDIENCE] }))).subject).toBe('user-1');
    });

    it('only the algorithms of AUTH_JWT_ALGORITHMS', async () => {
      const verifier = verifierFor(env({ AUTH_JWT_ALGORITHMS: 'ES256' }));
      expect((await verifier.verify(await sign(ec))).subject).toBe('user-1');
      await expectInvalid(verifier, await sign(rsa), /signed with "RS256", which this server does not accept; it accepts ES256/);
    });
  });

  describe('refuses with 401 invalid_token', () => {
    it('an HS256 token signed with the RSA public key as its secret (HS/RS confusion), before fetching any key', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url }));
      await expectInvalid(verifier, await confusedToken(rsa), /signed with "HS256", which this server does not accept; it accepts RS256, ES256/);
      expect(server.fetches).toBe(0);
    });

    it('alg none', async () => {
      await expectInvalid(verifierFor(env()), unsignedToken({}, rsa.kid), /signed with "none", which this server does not accept/);
    });

    it('a tampered signature, or claims changed under a good signature', async () => {
      const verifier = verifierFor(env());
      const good = await sign(rsa);
      await expectInvalid(verifier, tamperSignature(good), /signature does not verify/);
      await expectInvalid(verifier, tamperClaims(good, { sub: 'admin' }), /signature does not verify/);
      await expectInvalid(verifier, tamperSignature(await sign(ec)), /signature does not verify/);
    });

    it('a token signed by a key the set does not hold under its kid', async () => {
      const stranger = await newKey('RS256', rsa.kid);
      await expectInvalid(verifierFor(env()), await sign(stranger), /signature does not verify/);
    });

    it('an unknown kid, refetching the key set at most once per AUTH_JWKS_COOLDOWN_MS', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url }));
      await verifier.verify(await sign(rsa));
      expect(server.fetches).toBe(1);
      const unknown = await newKey('RS256', 'forged-kid');
      // Fetched a moment ago: within the 30 s cooldown, no refetch for a kid it lacks.
      for (let i = 0; i < 3; i++) await expectInvalid(verifier, await sign(unknown), /no key for this token: its key id \(kid\) is unknown or was retired/);
      expect(server.fetches).toBe(1);
    });

    it.each([
      ['expired beyond the leeway', { exp: nowSec - 61 }, {}, /has expired/],
      ['expired, with no leeway', { exp: nowSec - 1 }, { AUTH_JWT_CLOCK_TOLERANCE_SEC: '0' }, /has expired/],
      ['not valid yet beyond the leeway', { nbf: nowSec + 61 }, {}, /not valid yet \(nbf is in the future\)/],
      ['from another issuer', { iss: 'https://evil.test' }, {}, /issued by another issuer \(iss\)/],
      ['without an issuer when one is required', { iss: undefined }, {}, /has no issuer \(iss\)/],
      ['for another audience', { aud: 'other-service' }, {}, /meant for another audience \(aud\)/],
      ['without an audience when one is required', { aud: undefined }, {}, /has no audience \(aud\)/],
      ['without a subject', { sub: undefined }, {}, /has no subject \(sub\)/],
      ['with an empty subject', { sub: '' }, {}, /subject \(sub\) must be a string of 1 to 255 characters/],
      ['with a subject that is not a string', { sub: 42 as never }, {}, /subject \(sub\) must be a string/],
      ['with a subject too long', { sub: 'x'.repeat(256) }, {}, /subject \(sub\) must be a string of 1 to 255/],
      ['with an exp that is not a number', { exp: 'tomorrow' as never }, {}, /exp claim is not a number/],
    ])('a token %s', async (_, claims, extra, message) => {
      await expectInvalid(verifierFor(env(extra)), await sign(rsa, claims), message);
    });

    it('an iss that is not a string, even with no issuer required', async () => {
      await expectInvalid(verifierFor({ AUTH_JWKS_URL: jwks.url }), await sign(rsa, { iss: ['a'] as never }), /issuer \(iss\) is not a string/);
    });

    it.each([
      ['three parts that are not base64url JSON', 'not.a.jwt', /malformed: it is not a signed JWT/],
      ['two parts', 'eyJhbGciOiJSUzI1NiJ9.e30', /malformed: it is not a signed JWT/],
      ['too long', 'x'.repeat(MAX_JWT_LENGTH + 1), /longer than 16384 characters/],
    ])('a malformed token: %s', async (_, token, message) => {
      await expectInvalid(verifierFor(env()), token, message);
    });

    it('a signed token whose claims are not a JSON object', async () => {
      const token = await new CompactSign(new TextEncoder().encode('[1]')).setProtectedHeader({ alg: 'RS256', kid: rsa.kid }).sign(rsa.privateKey);
      await expectInvalid(verifierFor(env()), token, /malformed: its claims are not a JSON object/);
    });

    it('a critical header extension it does not implement', async () => {
      const token = await signRs256ByHand(rsa.privateKey, { kid: rsa.kid, crit: ['exp-ext'], 'exp-ext': true });
      await expectInvalid(verifierFor(env()), token, /JOSE extension \(crit\) this server does not support/);
    });
  });

  describe('leeway (AUTH_JWT_CLOCK_TOLERANCE_SEC, default 60)', () => {
    it('accepts a token expired or not yet valid by less than it', async () => {
      const verifier = verifierFor(env());
      expect((await verifier.verify(await sign(rsa, { exp: nowSec - 59 }))).subject).toBe('user-1');
      expect((await verifier.verify(await sign(rsa, { nbf: nowSec + 59 }))).subject).toBe('user-1');
    });

    it('is measured against the verifier clock, not the signing time', async () => {
      const token = await sign(rsa, { iat: nowSec - 3600, exp: nowSec + 10 });
      const later = createJwtVerifier(loadConfig(env({ AUTH_JWT_CLOCK_TOLERANCE_SEC: '5' })).auth, { now: () => new Date(NOW.getTime() + 16_000) })!;
      await expectInvalid(later, token, /has expired/);
      const inLeeway = createJwtVerifier(loadConfig(env({ AUTH_JWT_CLOCK_TOLERANCE_SEC: '5' })).auth, { now: () => new Date(NOW.getTime() + 14_000) })!;
      expect((await inLeeway.verify(token)).subject).toBe('user-1');
    });
  });

  describe('key rotation (AUTH_JWKS_COOLDOWN_MS=0)', () => {
    it('accepts a token with the new kid after a rotation, then refuses the retired key', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url, AUTH_JWKS_COOLDOWN_MS: '0' }));
      const before = await sign(rsa);
      expect((await verifier.verify(before)).subject).toBe('user-1');

      const next = await newKey('RS256', 'rsa-2');
      server.setKeys([next]);
      expect((await verifier.verify(await sign(next, { sub: 'after-rotation' }))).subject).toBe('after-rotation');
      expect(server.fetches).toBe(2);
      // The set now fetched no longer holds rsa-1: its tokens are refused (after one more look).
      await expectInvalid(verifier, before, /kid\) is unknown or was retired/);
      expect(server.fetches).toBe(3);
    });

    it('accepts an ES256 key added beside the RSA one', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url, AUTH_JWKS_COOLDOWN_MS: '0' }));
      await verifier.verify(await sign(rsa));
      const added = await newKey('ES256', 'ec-2');
      server.setKeys([rsa, added]);
      expect((await verifier.verify(await sign(added))).subject).toBe('user-1');
      expect((await verifier.verify(await sign(rsa))).subject).toBe('user-1');
    });
  });

  describe('refuses with 503 auth_unavailable when the key set cannot be had', () => {
    it('down (connection refused), and recovers once it is back', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url }));
      const token = await sign(rsa);
      await server.down();
      await expectUnavailable(verifier, token, /could not be reached/);
      // A failed fetch is not cached: the next token fetches again.
      await expectUnavailable(verifier, token, /could not be reached/);
      await server.up();
      expect((await verifier.verify(token)).subject).toBe('user-1');
    });

    it.each([500, 502, 404, 302, 204])('answering %i', async (status) => {
      jwks.behave({ serve: 'status', status });
      await expectUnavailable(verifierFor(env()), await sign(rsa), /answered with an HTTP status other than 200/);
    });

    it('answering with something that is not JSON', async () => {
      jwks.behave({ serve: 'body', contentType: 'text/html', body: '<html>maintenance</html>' });
      await expectUnavailable(verifierFor(env()), await sign(rsa), /answered with a body that is not JSON/);
    });

    it('answering with JSON that is not a key set', async () => {
      jwks.behave({ serve: 'body', contentType: 'application/json', body: '{"keys":"none"}' });
      await expectUnavailable(verifierFor(env()), await sign(rsa), /not a JSON Web Key Set/);
    });

    it.each([false, true])('answering with more than 512 KiB (chunked: %s)', async (chunked) => {
      jwks.behave({ serve: 'body', contentType: 'application/json', body: JSON.stringify({ keys: [rsa.jwk], pad: 'x'.repeat(600 * 1024) }), chunked });
      await expectUnavailable(verifierFor(env()), await sign(rsa), /more than 524288 bytes/);
      // Just under the bound, a padded key set is read.
      jwks.behave({ serve: 'body', contentType: 'application/json', body: JSON.stringify({ keys: [rsa.jwk], pad: 'x'.repeat(500 * 1024) }), chunked });
      expect((await verifierFor(env()).verify(await sign(rsa))).subject).toBe('user-1');
    });

    it('not answering within AUTH_JWKS_TIMEOUT_MS', async () => {
      jwks.behave({ serve: 'hang' });
      await expectUnavailable(verifierFor(env({ AUTH_JWKS_TIMEOUT_MS: '100' })), await sign(rsa), /did not answer within 100 ms \(AUTH_JWKS_TIMEOUT_MS\)/);
    });

    it('publishing a key jose will not use (RSA under 2048 bits)', async () => {
      const weak = await signWithWeakRsa('weak-1');
      jwks.setKeys([rsa, weak]);
      await expectUnavailable(verifierFor(env()), weak.token, /RSA key of 1024 bits/);
    });

    it('for an unknown kid when the refetch fails', async () => {
      const server = await ownJwks([rsa]);
      const verifier = verifierFor(env({ AUTH_JWKS_URL: server.url, AUTH_JWKS_COOLDOWN_MS: '0' }));
      await verifier.verify(await sign(rsa));
      server.behave({ serve: 'status', status: 503 });
      await expectUnavailable(verifier, await sign(await newKey('RS256', 'rsa-new')), /HTTP status other than 200/);
      // Keys already fetched still verify meanwhile.
      expect((await verifier.verify(await sign(rsa))).subject).toBe('user-1');
    });
  });
});
