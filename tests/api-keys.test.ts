import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { apiKeyPrefix, hashApiKey, hashShareToken, looksLikeApiKey, newApiKey, newShareToken, sameHash, sameSecret } from '../app/auth/api-keys.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

describe('API keys', () => {
  it('are cpk_ and 256 random bits in base64url, shown by a 12-character prefix, kept as SHA-256', () => {
    const { key, prefix, hash } = newApiKey();
    expect(key).toMatch(/^cpk_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(key.slice(4), 'base64url')).toHaveLength(32);
    expect(prefix).toBe(key.slice(0, 12));
    expect(prefix).toMatch(/^cpk_.{8}$/);
    expect(hash).toBe(sha256(key));
    expect(hashApiKey(key)).toBe(hash);
    expect(apiKeyPrefix(key)).toBe(prefix);
  });

  it('are never the same twice', () => {
    const keys = new Set(Array.from({ length: 1000 }, () => newApiKey().key));
    expect(keys.size).toBe(1000);
  });

  it.each([
    ['cpk_abc', true],
    [newApiKey().key, true],
    ['eyJhbGciOiJIUzI1NiJ9.e30.sig', false],
    ['CPK_abc', false],
    [' cpk_abc', false],
    ['', false],
  ])('tells %j from other bearer tokens: %s', (token, expected) => {
    expect(looksLikeApiKey(token)).toBe(expected);
  });
});

describe('sameHash', () => {
  const a = sha256('a');
  it('is true for equal digests only, whatever their case', () => {
    expect(sameHash(a, a)).toBe(true);
    expect(sameHash(a, a.toUpperCase())).toBe(true);
    expect(sameHash(a, sha256('b'))).toBe(false);
  });

  it('is false, without throwing, on a length mismatch or text that is not hex', () => {
    expect(sameHash(a, a.slice(0, 62))).toBe(false);
    expect(sameHash(a.slice(0, 62), a)).toBe(false);
    expect(sameHash(a, '')).toBe(false);
    expect(sameHash('', '')).toBe(true);
    // Buffer.from(…, 'hex') stops at the first non-hex pair: both would decode to the same bytes.
    expect(sameHash(`${a.slice(0, 62)}zz`, `${a.slice(0, 62)}yy`)).toBe(false);
    expect(sameHash(`${a}0`, a)).toBe(false);
  });
});

describe('sameSecret', () => {
  const admin = 'admin-key-0123456789abcdef0123456789';
  it('compares a bearer with ADMIN_API_KEY, any lengths', () => {
    expect(sameSecret(admin, admin)).toBe(true);
    expect(sameSecret(`${admin} `, admin)).toBe(false);
    expect(sameSecret(admin.slice(0, -1), admin)).toBe(false);
    expect(sameSecret('', admin)).toBe(false);
    expect(sameSecret('x'.repeat(10_000), admin)).toBe(false);
  });
});

describe('share tokens', () => {
  it('are 256 random bits in base64url, kept as SHA-256', () => {
    const { token, hash } = newShareToken();
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hash).toBe(sha256(token));
    expect(hashShareToken(token)).toBe(hash);
    expect(newShareToken().token).not.toBe(token);
  });
});
