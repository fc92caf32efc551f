import { Hono } from 'hono';
import { requireMetricsToken } from '../middleware/metrics-token.js';
import type { AppEnv } from '../types.js';

/** Prometheus scrape endpoint: aggregates only, nothing about any conversation's content. */
export const metrics = new Hono<AppEnv>().get('/', requireMetricsToken(), async (c) => {
  const { registry } = c.get('services').metrics;
  return c.body(await registry.metrics(), 200, { 'content-type': registry.contentType });
});
