import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../db/store.js';
import type { Config } from './env.js';
import type { Logger } from './logger.js';

/** What ALLOW_CLIENT_SESSION_IDS accepts besides the ids this server signs. */
const CLIENT_SESSION_ID = /^[A-Za-z0-9_-]{8,128}$/;
/** A minted id: 18 random bytes and 16 bytes of HMAC-SHA256 over them, both base64url. */
const SIGNED_SESSION_ID = /^([A-Za-z0-9_-]{24})\.([A-Za-z0-9_-]{22})$/;
const SECRET_SETTING = 'session_secret';

const signatureOf = (secret: string, nonce: string) => createHmac('sha256', secret).update(nonce).digest().subarray(0, 16);

/** A new session id signed with `secret`: only a holder of the secret can make one. */
export function signSessionId(secret: string): string {
  const nonce = randomBytes(18).toString('base64url');
  return `${nonce}.${signatureOf(secret, nonce).toString('base64url')}`;
}

/** Whether `id` was signed with `secret` (compared in constant time). */
export function isSignedSessionId(secret: string, id: string): boolean {
  const m = SIGNED_SESSION_ID.exec(id);
  if (!m) return false;
  const given = Buffer.from(m[2]!, 'base64url');
  return given.length === 16 && timingSafeEqual(given, signatureOf(secret, m[1]!));
}

/**
 * What the database keeps of a session id: its SHA-256, so a dump of the database hands over no
 * session. Ids are random (or, with ALLOW_CLIENT_SESSION_IDS, the client's own), so no salt.
 */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/**
 * Mints and checks session ids. The signing secret is SESSION_SECRET, else one generated once
 * and kept in the database so that every process of the deployment shares it; with neither
 * (persistence off), one per process.
 */
export class SessionIds {
  private secret: Promise<string> | undefined;

  constructor(
    private readonly options: Config['session'],
    private readonly store: Store | null,
    private readonly log: Logger,
  ) {}

  private key(): Promise<string> {
    if (this.options.secret) return Promise.resolve(this.options.secret);
    const generated = randomBytes(32).toString('base64url');
    if (!this.store) {
      this.log.info('SESSION_SECRET is not set and persistence is off: session ids are signed with a key of this process only');
      return (this.secret ??= Promise.resolve(generated));
    }
    // Not cached when it fails (database down): the next request tries again.
    return (this.secret ??= this.store.sharedSetting(SECRET_SETTING, generated).catch((err) => {
      this.secret = undefined;
      throw err;
    }));
  }

  async mint(): Promise<string> {
    return signSessionId(await this.key());
  }

  async accepts(id: string): Promise<boolean> {
    if (isSignedSessionId(await this.key(), id)) return true;
    return this.options.allowClientIds && CLIENT_SESSION_ID.test(id);
  }
}
