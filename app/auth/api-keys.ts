import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Marks our API keys, so a bearer token can be told from a JWT at a glance (and by secret scanners). */
export const API_KEY_PREFIX = 'cpk_';
/** Characters of a key kept in the clear to show it in lists: `cpk_` and 8 more (48 of its 256 random bits). */
const SHOWN_PREFIX_LENGTH = API_KEY_PREFIX.length + 8;

const sha256Hex = (value: string) => createHash('sha256').update(value).digest('hex');

/**
 * A new API key: `cpk_` then 32 random bytes in base64url. The database keeps `hash` (SHA-256;
 * the key is random, so no salt or slow hash is needed) and `prefix`; the key itself is shown
 * once, to its owner.
 */
export function newApiKey(): { key: string; prefix: string; hash: string } {
  const key = API_KEY_PREFIX + randomBytes(32).toString('base64url');
  return { key, prefix: apiKeyPrefix(key), hash: hashApiKey(key) };
}

export const hashApiKey = (key: string): string => sha256Hex(key);

export const apiKeyPrefix = (key: string): string => key.slice(0, SHOWN_PREFIX_LENGTH);

export const looksLikeApiKey = (token: string): boolean => token.startsWith(API_KEY_PREFIX);

/** Two hex digests compared in constant time; false when their lengths differ. */
export function sameHash(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  // Buffer.from drops what is not hex, so compare the decoded lengths against the text too.
  if (a.length !== b.length || a.length * 2 !== aHex.length || b.length * 2 !== bHex.length) return false;
  return timingSafeEqual(a, b);
}

/**
 * Whether `given` equals `expected` (ADMIN_API_KEY), in time that depends on neither: their
 * SHA-256 digests are compared, so even the length of the secret does not leak.
 */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(createHash('sha256').update(given).digest(), createHash('sha256').update(expected).digest());
}

/** A share link's token (32 random bytes, base64url) and the SHA-256 the database keeps of it. */
export function newShareToken(): { token: string; hash: string } {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: hashShareToken(token) };
}

export const hashShareToken = (token: string): string => sha256Hex(token);
