import { createHash, timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

const digest = (s: string) => createHash('sha256').update(s).digest();

/**
 * Whether the request may see operational detail: always when METRICS_TOKEN is unset, else only
 * with `Authorization: Bearer <METRICS_TOKEN>`. Compared as SHA-256 digests in constant time, so
 * neither the token's content nor its length shows in the timing.
 */
export function hasMetricsAccess(c: Context<AppEnv>): boolean {
  const token = c.get('services').config.metricsToken;
  if (!token) return true;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
  return match !== null && timingSafeEqual(digest(match[1]!), digest(token));
}

/** Refuses the request with 401 unless it carries METRICS_TOKEN (when one is set). */
export const requireMetricsToken = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    if (!hasMetricsAccess(c)) {
      throw new ApiError(
        401,
        'authentication_error',
        'This endpoint needs the METRICS_TOKEN of this server, sent as Authorization: Bearer <token>.',
        'invalid_metrics_token',
        null,
        { 'www-authenticate': 'Bearer' },
      );
    }
    await next();
  });
