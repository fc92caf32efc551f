import { Hono } from 'hono';
import { requireMetricsToken } from '../middleware/metrics-token.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';

/** Prometheus scrape endpoint: aggregates only, nothing about any conversation's content. */
export const metrics = new Hono<AppEnv>().get('/', requireMetricsToken(), async (c) => {
  const { registry } = c.get('services').metrics;
  return c.body(await registry.metrics(), 200, { 'content-type': registry.contentType });
});

export const metricsDocs = [
  route({
    method: 'get',
    path: '/metrics',
    tag: 'Operations',
    summary: 'Prometheus metrics',
    description: 'With METRICS_TOKEN set, it needs `Authorization: Bearer <METRICS_TOKEN>`.',
    auth: 'public',
    responses: { 200: { description: 'Prometheus text format', mediaType: 'text/plain' } },
    errors: [401],
  }),
];
