import { createMiddleware } from 'hono/factory';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';
import { callerKeys, scopeLabel } from './caller.js';
import type { RateLimitHit, RateLimitStore } from './stores.js';

export interface RateLimitOptions {
  store: RateLimitStore;
  /** Requests allowed per window per session or signed-in user; 0 = not counted. */
  max: number;
  /** Requests allowed per window per client address, all its sessions together; 0 = not counted. */
  maxPerAddress: number;
  windowSec: number;
}

/**
 * Limits each caller to `max` requests per `windowSec` per session (or signed-in user) and, for
 * anonymous callers, `maxPerAddress` per client address as well: every request counts against
 * both, either one over its limit refuses it, so a fresh session buys nothing. Mount it after
 * `session()`. Counted responses carry RateLimit-Limit/Remaining/Reset/Policy (IETF draft) of the
 * count closest to its limit; over a limit → 429 + Retry-After, saying which. If the store fails
 * (Redis down), the request is allowed: a broken limiter must not take the proxy down.
 */
export const rateLimit = ({ store, max, maxPerAddress, windowSec }: RateLimitOptions) => {
  let lastWarnAt = -Infinity;
  return createMiddleware<AppEnv>(async (c, next) => {
    if ((max === 0 && maxPerAddress === 0) || c.req.method === 'OPTIONS') return next();
    const counted = callerKeys(c)
      .map((k) => ({ ...k, max: k.scope === 'address' ? maxPerAddress : max }))
      .filter((k) => k.max > 0);
    if (!counted.length) return next();
    let hits: RateLimitHit[];
    try {
      hits = await Promise.all(counted.map((k) => store.hit(k.key, windowSec * 1000)));
    } catch (err) {
      // One warning per half minute is enough to notice; one per request would flood the log.
      if (Date.now() - lastWarnAt >= 30_000) {
        lastWarnAt = Date.now();
        c.get('log').warn({ err, store: store.kind }, 'rate limiter unavailable; request allowed without limiting');
      }
      return next();
    }
    const counts = counted.map((k, i) => ({ ...k, ...hits[i]!, remaining: Math.max(0, k.max - hits[i]!.count) }));
    const over = counts.filter((k) => k.count > k.max);
    // Over a limit: the one that ends last decides when to retry. Else the one nearest its limit.
    const shown = over.length
      ? over.reduce((a, b) => (b.resetMs > a.resetMs ? b : a))
      : counts.reduce((a, b) => (b.remaining < a.remaining ? b : a));
    const resetSec = Math.max(1, Math.ceil(shown.resetMs / 1000));
    c.header('RateLimit-Limit', String(shown.max));
    c.header('RateLimit-Remaining', String(shown.remaining));
    c.header('RateLimit-Reset', String(resetSec));
    c.header('RateLimit-Policy', `${shown.max};w=${windowSec}`);
    if (over.length) {
      const limits = over.map((k) => `${k.max} requests per ${windowSec} seconds per ${scopeLabel[k.scope]}`).join(' and ');
      const shared = over.some((k) => k.scope === 'address') ? ' (shared by every session from that address)' : '';
      throw new ApiError(
        429,
        'rate_limit_error',
        `Rate limit exceeded: at most ${limits}${shared}. Retry after ${resetSec} second${resetSec === 1 ? '' : 's'}.`,
        'rate_limit_exceeded',
        null,
        { 'retry-after': String(resetSec) },
      );
    }
    await next();
  });
};
