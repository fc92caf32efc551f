import { createMiddleware } from 'hono/factory';
import type { AppEnv } from '../types.js';

/** One line per request: what was asked, how it ended, how long it took. Never bodies or headers. */
export const accessLog = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const start = performance.now();
    await next();
    c.var.log.info(
      { method: c.req.method, path: c.req.path, status: c.res.status, duration_ms: Math.round((performance.now() - start) * 10) / 10 },
      'request',
    );
  });
