import { cors } from 'hono/cors';
import { createMiddleware } from 'hono/factory';
import type { AppEnv } from '../types.js';

export type CorsPolicyOptions = Omit<NonNullable<Parameters<typeof cors>[0]>, 'origin' | 'credentials' | 'allowHeaders'>;

const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/**
 * The origins a list stands for. A loopback origin stands for all its spellings
 * (http://localhost:3000 = http://127.0.0.1:3000 = http://[::1]:3000): they are one machine, and
 * which one a developer's browser shows depends on how the page was opened.
 */
export function expandOrigins(origins: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const origin of origins) {
    out.add(origin);
    if (!URL.canParse(origin)) continue;
    const url = new URL(origin);
    if (!LOOPBACK_HOSTS.includes(url.hostname)) continue;
    for (const host of LOOPBACK_HOSTS) out.add(`${url.protocol}//${host}${url.port ? `:${url.port}` : ''}`);
  }
  return out;
}

/**
 * CORS for ALLOWED_ORIGIN. Listed origins (loopback ones in every spelling) may send cookies
 * (Access-Control-Allow-Credentials); `*` admits any other origin without credentials, so such a
 * page identifies itself with the x-session-id header. An origin not admitted gets no CORS
 * header at all, and its preflight an empty 204.
 *
 * An admitted origin may send whatever headers its preflight asks for: the OpenAI SDKs add
 * x-stainless-* headers that change between versions, and a page trusted with credentials gains
 * nothing from a header allowlist.
 */
export const corsPolicy = (origins: readonly string[], options: CorsPolicyOptions) => {
  const listed = expandOrigins(origins.filter((o) => o !== '*'));
  const anyOrigin = origins.includes('*');
  // allowHeaders left empty: Hono then answers a preflight with the headers it requested.
  const withCredentials = cors({ ...options, origin: (origin) => origin, credentials: true });
  const withoutCredentials = cors({ ...options, origin: () => '*' });
  return createMiddleware<AppEnv>(async (c, next) => {
    const origin = c.req.header('origin');
    if (origin && listed.has(origin)) return withCredentials(c, next);
    if (origin && anyOrigin) return withoutCredentials(c, next);
    // The answer depends on the origin, so caches must not hand it to another one.
    if (origin && c.req.method === 'OPTIONS' && c.req.header('access-control-request-method')) {
      return c.body(null, 204, { vary: 'Origin' });
    }
    await next();
    c.header('vary', 'Origin', { append: true });
  });
};
