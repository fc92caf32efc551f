import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { ApiError, permissionDenied } from '../errors.js';
import { readSession } from '../middleware/session.js';
import { hashSessionId } from '../session-ids.js';
import type { AppEnv, Identity } from '../types.js';
import { looksLikeApiKey, sameSecret } from './api-keys.js';
import { looksLikeJwt } from './jwt.js';

/** Routes anyone may read without credentials: a conversation's public link. */
const PUBLIC = /^\/v1\/shared\/[^/]+$/;
/** What the operator's ADMIN_API_KEY opens: the admin API, and /v1/me to check it. */
const ADMIN_KEY_ROUTES = /^\/v1\/(admin(\/|$)|me$)/;

/**
 * Who is calling, from `Authorization: Bearer`: an API key (`cpk_…`), the operator's
 * ADMIN_API_KEY, or a JWT from the deployment's identity provider. A credential that fails is a
 * 401, never a quiet fall back to anonymous. Any other bearer value (the placeholder key an
 * OpenAI SDK always sends) is ignored, and the caller is its anonymous session, while
 * ANONYMOUS_ACCESS allows it.
 */
export const identify = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (c.req.method === 'GET' && PUBLIC.test(c.req.path)) {
      c.set('identity', { type: 'public', user: null, sessionId: null });
      c.set('principal', { sessionId: '', userId: null });
      return next();
    }
    const identity = await identityOf(c);
    c.set('identity', identity);
    if (identity.type === 'admin') {
      if (!ADMIN_KEY_ROUTES.test(c.req.path)) {
        throw permissionDenied('ADMIN_API_KEY opens only /v1/admin/*: create a user and an API key for it to use the rest of the API.');
      }
      c.set('principal', { sessionId: hashSessionId('admin'), userId: null });
    } else if (identity.type === 'user') {
      // A signed-in caller without a session still has one for its session rows: its own.
      c.set('principal', { sessionId: hashSessionId(identity.sessionId ?? `user:${identity.user.id}`), userId: identity.user.id });
    } else {
      c.set('principal', { sessionId: hashSessionId(identity.sessionId!), userId: null });
    }
    await next();
  });

async function identityOf(c: Context<AppEnv>): Promise<Identity> {
  const { credentials, config } = c.get('services');
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
  if (bearer !== undefined) {
    // The admin key first: an operator may well have chosen one that starts with cpk_.
    if (config.auth.adminApiKey && sameSecret(bearer, config.auth.adminApiKey)) return { type: 'admin', user: null, sessionId: null };
    if (looksLikeApiKey(bearer)) return signedIn(c, await credentials.apiKey(bearer));
    if (credentials.jwtEnabled && looksLikeJwt(bearer)) return signedIn(c, await credentials.token(bearer));
  }
  if (!config.auth.anonymousAccess) {
    throw new ApiError(
      401,
      'authentication_error',
      `This server needs you to sign in: send Authorization: Bearer with an API key (cpk_…)${credentials.jwtEnabled ? ' or a token from the identity provider' : ''}.`,
      'missing_credentials',
    );
  }
  return { type: 'session', user: null, sessionId: (await readSession(c, { mint: true }))! };
}

async function signedIn(c: Context<AppEnv>, who: Awaited<ReturnType<AppEnv['Variables']['services']['credentials']['apiKey']>>): Promise<Identity> {
  // A session sent along (a browser that chatted before signing in) is kept; none is minted.
  return { type: 'user', user: who.user, via: who.via, sessionId: await readSession(c, { mint: false }) };
}
