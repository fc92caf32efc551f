import { createMiddleware } from 'hono/factory';
import type { AppEnv } from '../types.js';

/**
 * One log line and one metric sample per request: what was asked (route pattern, never ids or
 * query strings), how it ended, how long until the response was ready. Never bodies or headers.
 * Streams log a second line when they end (see streaming/telemetry.ts).
 */
export const accessLog = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const start = performance.now();
    await next();
    const ms = performance.now() - start;
    const route = c.res.status === 404 && c.req.routePath === '/*' ? 'unmatched' : c.req.routePath;
    const { metrics } = c.get('services');
    metrics.requests.inc({ route, method: c.req.method, status: String(c.res.status) });
    metrics.requestDuration.observe({ route }, ms);
    c.get('log').info({ method: c.req.method, path: c.req.path, route, status: c.res.status, duration_ms: Math.round(ms * 10) / 10 }, 'request');
  });
