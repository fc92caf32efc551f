import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { SessionInfo } from '../../db/store.js';
import { clientAddress, requestIsHttps } from '../client-address.js';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

export const SESSION_HEADER = 'x-session-id';
export const SESSION_COOKIE = 'cf_session_id';

/**
 * The caller's anonymous session: the x-session-id header wins over the cf_session_id cookie.
 * With neither, `mint` makes a new id and hands it back in both; without `mint` (a signed-in
 * caller needs no session) the answer is null. An id this server did not sign is refused (a
 * cookie holding one is cleared, so a browser gets a fresh id on its next request).
 */
export async function readSession(c: Context<AppEnv>, { mint }: { mint: boolean }): Promise<string | null> {
  const ids = c.get('services').sessionIds;
  const header = c.req.header(SESSION_HEADER);
  const source = header !== undefined ? SESSION_HEADER : SESSION_COOKIE;
  let id = header ?? getCookie(c, SESSION_COOKIE);
  if (id === undefined) {
    if (!mint) return null;
    id = await ids.mint();
    setCookie(c, SESSION_COOKIE, id, {
      path: '/',
      httpOnly: true,
      sameSite: 'Lax',
      secure: requestIsHttps(c),
      maxAge: 60 * 60 * 24 * 365,
    });
  } else if (!(await ids.accepts(id))) {
    if (source === SESSION_COOKIE) deleteCookie(c, SESSION_COOKIE, { path: '/' });
    const allowed = c.get('services').config.session.allowClientIds
      ? `a session id this server issued, or 8 to 128 characters of A-Z, a-z, 0-9, '_' or '-'`
      : 'a session id this server issued (ids cannot be chosen by the client)';
    throw new ApiError(
      400,
      'invalid_request_error',
      `The session id in ${source} is not valid: it must be ${allowed}. Send a request without one to get a new id in the ${SESSION_HEADER} response header, and reuse that.`,
      'invalid_session_id',
      source,
    );
  }
  c.header(SESSION_HEADER, id);
  return id;
}

/**
 * What a session row records about its client: the user agent, and a salted hash of the
 * address only when IP_HASH_SALT is set (so the address itself is never stored).
 */
export function sessionInfo<E extends AppEnv>(c: Context<E>): SessionInfo {
  const salt = c.get('services').config.ipHashSalt;
  let ipHash: string | null = null;
  if (salt) {
    const address = clientAddress(c); // null without a socket (app.request in tests): nothing to hash
    if (address) ipHash = createHash('sha256').update(salt).update(address).digest('hex');
  }
  return { userAgent: c.req.header('user-agent') ?? null, ipHash };
}
