import { Hono } from 'hono';
import type { Store } from '../../db/store.js';
import { hasMetricsAccess } from '../middleware/metrics-token.js';
import { z } from 'zod';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';

const startedAt = Date.now();

// Counting rows is not free on a large table, and health is polled often: reuse a recent count.
const COUNTS_TTL_MS = 10_000;
const countsCache = new WeakMap<object, { at: number; value: Promise<{ conversations: number; messages: number }> }>();

function counts(store: Store) {
  const hit = countsCache.get(store);
  if (hit && Date.now() - hit.at < COUNTS_TTL_MS) return hit.value;
  const value = store.counts();
  countsCache.set(store, { at: Date.now(), value });
  value.catch(() => countsCache.delete(store));
  return value;
}

export const health = new Hono<AppEnv>().get('/', async (c) => {
  const { config, store } = c.get('services');
  const ok = store ? await store.ping() : true;
  const baseUrl = config.upstream.baseUrl;
  // No upstream: the process is up and history works, but every chat answers 503. Degraded,
  // yet 200: restarting would not fix a missing setting (503 is kept for a database that is down).
  const status = ok && baseUrl ? 'ok' : 'degraded';
  const code = ok ? 200 : 503;
  // With METRICS_TOKEN set, callers without it learn the status and nothing else.
  if (!hasMetricsAccess(c)) return c.json({ status }, code);
  const totals = store && ok ? await counts(store).catch(() => null) : null;
  return c.json(
    {
      status,
      uptime: Math.round((Date.now() - startedAt) / 1000),
      provider: baseUrl ? new URL(baseUrl).host : null,
      model: config.upstream.defaultModel,
      upstream: { configured: Boolean(baseUrl) },
      persistence: {
        enabled: config.persist,
        dialect: store?.dialect ?? null,
        ok: store ? ok : null,
        // Aggregates only: how much is stored, nothing about whose or what.
        ...(totals && { conversations: totals.conversations, messages: totals.messages }),
      },
    },
    code,
  );
});

export const healthDocs = [
  route({
    method: 'get',
    path: '/healthz',
    tag: 'Operations',
    summary: 'Health: the process, the database and the upstream setting',
    description: 'With METRICS_TOKEN set, a caller without it gets `{status}` only.',
    auth: 'public',
    responses: {
      200: { description: 'ok, or degraded without an upstream', schema: z.object({ status: z.enum(['ok', 'degraded']) }).loose() },
      503: { description: 'degraded: the database is down', schema: z.object({ status: z.literal('degraded') }).loose() },
    },
  }),
];
