import { Hono } from 'hono';
import type { AppEnv } from '../types.js';

const startedAt = Date.now();

export const health = new Hono<AppEnv>().get('/', async (c) => {
  const { config, store } = c.var.deps;
  const ok = store ? await store.ping() : true;
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
      },
    },
    ok ? 200 : 503,
  );
});
