// TEMPORARY: replaced by work-auth's version on merge (same exports).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const sha256 = (v: string) => createHash('sha256').update(v).digest('hex');
export const looksLikeApiKey = (token: string) => token.startsWith('cpk_');
export const hashApiKey = (key: string) => sha256(key);
export const apiKeyPrefix = (key: string) => key.slice(0, 12);
export function newApiKey() {
  const key = `cpk_${randomBytes(32).toString('base64url')}`;
  return { key, prefix: apiKeyPrefix(key), hash: hashApiKey(key) };
}
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
export const sameSecret = (given: string, expected: string) => sameHash(sha256(given), sha256(expected));
export function newShareToken() {
  const token = randomBytes(32).toString('base64url');
  return { token, hash: sha256(token) };
}
export const hashShareToken = (token: string) => sha256(token);
