import type { Store, User } from '../../db/store.js';
import { ApiError } from '../errors.js';
import type { Logger } from '../logger.js';
import { apiKeyPrefix, hashApiKey, sameHash } from './api-keys.js';
import type { JwtVerifier } from './jwt.js';

/**
 * How long a verified credential is trusted without asking the database again. A revoked key, a
 * deleted user or a changed admin flag is seen by every process within this time.
 */
export const CREDENTIAL_CACHE_MS = 4_000;
/** `last_used_at` is written at most once per this period per key. */
export const KEY_TOUCH_MS = 60_000;
const CACHE_ENTRIES = 10_000;

export interface SignedIn {
  user: User;
  via: 'api_key' | 'jwt';
  /** The API key's id, when signed in with one. */
  keyId: string | null;
}

const invalidKey = (why: string) =>
  new ApiError(401, 'authentication_error', `${why} Ask an administrator for a new key, or send no Authorization header to use the API anonymously where this server allows it.`, 'invalid_api_key');

/**
 * Turns a bearer credential (an API key or a JWT) into its user, through a short cache. Keys are
 * looked up by their display prefix and their hashes compared in constant time; only hashes are
 * ever stored or cached.
 */
export class Credentials {
  private readonly cache = new Map<string, { signedIn: SignedIn; at: number }>();
  private readonly touched = new Map<string, number>();

  constructor(
    private readonly store: Store | null,
    private readonly jwt: JwtVerifier | null,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get jwtEnabled(): boolean {
    return this.jwt !== null;
  }

  async apiKey(key: string): Promise<SignedIn> {
    const hash = hashApiKey(key);
    const signedIn = this.cached(`key:${hash}`) ?? (await this.lookUpKey(key, hash));
    if (signedIn.keyId) this.touch(signedIn.keyId);
    return signedIn;
  }

  async token(token: string): Promise<SignedIn> {
    const identity = await this.jwt!.verify(token);
    const cacheKey = `jwt:${JSON.stringify([identity.issuer, identity.subject, identity.name])}`;
    const hit = this.cached(cacheKey);
    if (hit) return hit;
    const user: User = this.store
      ? await this.store.userForExternalId(identity.issuer, identity.subject, identity.name ?? identity.subject)
      : // Persistence off: nothing is stored, so the user exists for this request only.
        { id: hashApiKey(`jwt:${identity.issuer}:${identity.subject}`), name: identity.name ?? identity.subject, issuer: identity.issuer, subject: identity.subject, isAdmin: false, createdAt: new Date(0) };
    return this.remember(cacheKey, { user, via: 'jwt', keyId: null });
  }

  /** Forgets a revoked key at once in this process (other processes within CREDENTIAL_CACHE_MS). */
  forgetKey(keyId: string): void {
    for (const [k, v] of this.cache) if (v.signedIn.keyId === keyId) this.cache.delete(k);
  }

  /** Forgets everything cached about a user (erased, or their admin flag changed). */
  forgetUser(userId: string): void {
    for (const [k, v] of this.cache) if (v.signedIn.user.id === userId) this.cache.delete(k);
  }

  private async lookUpKey(key: string, hash: string): Promise<SignedIn> {
    if (!this.store) throw invalidKey('API keys need the database, and persistence is off on this server (PERSIST_TRANSCRIPTS=false).');
    const candidates = await this.store.apiKeysByPrefix(apiKeyPrefix(key));
    const match = candidates.find((c) => sameHash(c.key.hash, hash));
    if (!match) throw invalidKey('This API key is not one this server issued.');
    if (match.key.revokedAt) throw invalidKey('This API key has been revoked.');
    if (match.key.expiresAt && match.key.expiresAt.getTime() <= this.now()) throw invalidKey(`This API key expired at ${match.key.expiresAt.toISOString()}.`);
    const signedIn = this.remember(`key:${hash}`, { user: match.user, via: 'api_key', keyId: match.key.id });
    // An expiry within the cache time must still be honoured to the second.
    if (match.key.expiresAt) this.cache.get(`key:${hash}`)!.at = Math.min(this.now(), match.key.expiresAt.getTime() - CREDENTIAL_CACHE_MS);
    return signedIn;
  }

  private cached(key: string): SignedIn | undefined {
    const hit = this.cache.get(key);
    if (!hit) return undefined;
    if (this.now() - hit.at < CREDENTIAL_CACHE_MS) return hit.signedIn;
    this.cache.delete(key);
    return undefined;
  }

  private remember(key: string, signedIn: SignedIn): SignedIn {
    if (this.cache.size >= CACHE_ENTRIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(key, { signedIn, at: this.now() });
    return signedIn;
  }

  /** Records a key's use off the request path, at most once a minute (the store checks too, across processes). */
  private touch(keyId: string): void {
    const now = this.now();
    const last = this.touched.get(keyId);
    if (last !== undefined && now - last < KEY_TOUCH_MS) return;
    if (this.touched.size >= CACHE_ENTRIES) this.touched.delete(this.touched.keys().next().value!);
    this.touched.set(keyId, now);
    this.store?.touchApiKey(keyId, new Date(now), new Date(now - KEY_TOUCH_MS)).catch((err) => this.log.warn({ err }, 'could not record an API key use'));
  }
}
