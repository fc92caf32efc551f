import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { serve } from '@hono/node-server';
import { describeDbTarget } from '../db/url.js';
import type { Store } from '../db/store.js';
import { createApp } from './app.js';
import type { Config } from './env.js';
import { createLogger, type Logger } from './logger.js';
import { createMemoryRateLimitStore, createRedisRateLimitStore, type RateLimitStore } from './rate-limit/stores.js';
import { scheduleRetention } from './privacy/retention.js';
import { StartupError, databaseStartupError, listenStartupError } from './startup-error.js';
import { ensureUiBundle } from './ui/bundle.js';
import { hasVersionSegment, maskUrl } from './upstream/base-url.js';
import { InFlight } from './streaming/in-flight.js';
import type { AnswerBus } from './streaming/bus.js';

export interface RunningServer {
  url: string;
  port: number;
  store: Store | null;
  inFlight: InFlight;
  /**
   * Graceful stop: no new connections, running streams get SHUTDOWN_GRACE_MS to finish, the
   * rest are interrupted and recorded, then the database is closed.
   */
  close(): Promise<void>;
}

/** Opens the store, migrates it, then listens. Used by `npm start`, `npm run dev` and tests. */
export async function startServer(
  config: Config,
  options: { logger?: Logger; store?: Store | null; rateLimitStore?: RateLimitStore } = {},
): Promise<RunningServer> {
  const logger = options.logger ?? createLogger(config.logLevel, undefined, config.logFormat);
  if (config.ui.enabled) {
    const unbuilt = await ensureUiBundle((message) => logger.warn(message));
    if (unbuilt) throw new StartupError(unbuilt);
  }
  let store: Store | null = null;
  if (config.persist) {
    try {
      // Imported only when needed: a pure proxy never loads a database driver (less memory).
      store = options.store ?? (await import('../db/index.js')).createStore(config.db, { max: config.dbPoolMax });
      await store.migrate();
    } catch (err) {
      await store?.close().catch(() => {});
      // Said in words naming DB_URL (a stack trace from the driver names neither).
      throw databaseStartupError(err, config.db);
    }
  }
  const upstream = config.upstream.baseUrl;
  if (!upstream) {
    logger.warn('OPENAI_BASE_URL is not set: chat completions answer 503 upstream_not_configured and /healthz says degraded (npm run dev starts a mock upstream instead)');
  } else if (!hasVersionSegment(upstream)) {
    logger.warn(
      { upstream: maskUrl(upstream) },
      'OPENAI_BASE_URL has no version segment such as /v1 (e.g. https://api.openai.com/v1); most providers answer 404 without it',
    );
  }
  // Watchers follow answers made by other processes through the database's notifications
  // (Postgres); on SQLite, one process, the in-process bus InFlight makes does it.
  let bus: AnswerBus | undefined;
  if (store?.notifications) {
    try {
      bus = await (await import('./streaming/pg-bus.js')).PgAnswerBus.start(store.notifications, logger);
    } catch (err) {
      if (!options.store) await store.close().catch(() => {});
      throw databaseStartupError(err, config.db);
    }
  }
  const inFlight = new InFlight(store, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: logger, bus });
  // Closes what a previous run left streaming, then keeps sweeping and renewing leases.
  await inFlight.start();
  // Redis when configured (shared by every process using it), else per process. Never throws:
  // an unreachable Redis is logged and requests go unlimited until it answers.
  const rateLimitStore =
    options.rateLimitStore ??
    (config.redisUrl && config.rateLimit.max > 0
      ? await createRedisRateLimitStore({ url: config.redisUrl, prefix: config.rateLimit.redisPrefix, logger })
      : createMemoryRateLimitStore());
  const app = createApp({ config, store, logger, inFlight, rateLimitStore });
  const stopRetention = store ? scheduleRetention(store, config.retention, logger) : () => {};
  let server: Server;
  try {
    server = await new Promise<Server>((resolve, reject) => {
      const s = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, () => resolve(s as Server));
      s.once('error', reject);
    });
  } catch (err) {
    stopRetention();
    await inFlight.shutdown(0);
    await inFlight.bus.close();
    if (!options.rateLimitStore) await rateLimitStore.close().catch(() => {});
    if (!options.store) await store?.close().catch(() => {});
    throw listenStartupError(err, config.host, config.port);
  }
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info(
    {
      port,
      persistence: config.persist ? describeDbTarget(config.db) : 'off',
      upstream: upstream ? maskUrl(upstream) : null,
      rateLimit: config.rateLimit.max === 0 ? 'off' : rateLimitStore.kind,
    },
    'listening',
  );
  let closing: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}`,
    port,
    store,
    inFlight,
    close: () =>
      (closing ??= (async () => {
        stopRetention();
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        await inFlight.shutdown(config.streams.shutdownGraceMs);
        // Streams are over; whatever is left is idle keep-alive, a watcher, or a client that never reads.
        server.closeAllConnections();
        await closed;
        await inFlight.bus.close();
        if (!options.rateLimitStore) await rateLimitStore.close();
        // A store handed in belongs to the caller, like a rate-limit store.
        if (!options.store) await store?.close();
        logger.info('stopped');
      })()),
  };
}
