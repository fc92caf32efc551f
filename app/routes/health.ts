import { Hono } from 'hono';
import type { Store } from '../../db/store.js';
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
  const { config, store } = c.get('deps');
  const ok = store ? await store.ping() : true;
  const totals = store && ok ? await counts(store).catch(() => null) : null;
  const baseUrl = config.upstream.baseUrl;
  return c.json(
    {
      status: ok ? 'ok' : 'degraded',
      uptime: Math.round((Date.now() - startedAt) / 1000),
      provider: baseUrl ? new URL(baseUrl).host : null,
      model: config.upstream.defaultModel,
      persistence: {
        enabled: config.persist,
        dialect: store?.dialect ?? null,
        ok: store ? ok : null,
        // Aggregates only: how much is stored, nothing about whose or what.
        ...(totals && { conversations: totals.conversations, messages: totals.messages }),
      },
    },
    ok ? 200 : 503,
  );
});
