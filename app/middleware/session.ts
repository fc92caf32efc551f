import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { getCookie, setCookie } from 'hono/cookie';
import type { SessionInfo } from '../../db/store.js';
import { createMiddleware } from 'hono/factory';
import { clientAddress, requestIsHttps } from '../client-address.js';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

export const SESSION_HEADER = 'x-session-id';
export const SESSION_COOKIE = 'cf_session_id';
const SESSION_ID = /^[A-Za-z0-9_-]{8,128}$/;

/**
 * Anonymous identity: the x-session-id header wins over the cf_session_id cookie; with neither,
 * a new id is minted and handed back in both.
 */
export const session = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const header = c.req.header(SESSION_HEADER);
    const source = header !== undefined ? SESSION_HEADER : SESSION_COOKIE;
    let id = header ?? getCookie(c, SESSION_COOKIE);
    if (id === undefined) {
      id = crypto.randomUUID();
      setCookie(c, SESSION_COOKIE, id, {
        path: '/',
        httpOnly: true,
        sameSite: 'Lax',
        secure: requestIsHttps(c),
        maxAge: 60 * 60 * 24 * 365,
      });
    } else if (!SESSION_ID.test(id)) {
      throw new ApiError(
        400,
        'invalid_request_error',
        `The session id in ${source} is malformed: it must be 8 to 128 characters of A-Z, a-z, 0-9, '_' or '-'. Omit it to get a new one.`,
        'invalid_session_id',
        source,
      );
    }
    c.header(SESSION_HEADER, id);
    c.set('principal', { sessionId: id, userId: null });
    await next();
  });

/**
 * What a session row records about its client: the user agent, and a salted hash of the
 * address only when IP_HASH_SALT is set (so the address itself is never stored).
 */
export function sessionInfo<E extends AppEnv>(c: Context<E>): SessionInfo {
  const salt = c.get('deps').config.ipHashSalt;
  let ipHash: string | null = null;
  if (salt) {
    const address = clientAddress(c); // null without a socket (app.request in tests): nothing to hash
    if (address) ipHash = createHash('sha256').update(salt).update(address).digest('hex');
  }
  return { userAgent: c.req.header('user-agent') ?? null, ipHash };
}
