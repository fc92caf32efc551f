import { createHash } from 'node:crypto';
import type { Logger } from '../logger.js';

/** One counted request: how many the key has made in its current window, and when that ends. */
export interface RateLimitHit {
  count: number;
  resetMs: number;
}

/**
 * Fixed-window counters. A key's window opens with its first request and lasts `windowMs`;
 * every request in it increments the count, atomically, whichever process serves it.
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis';
  hit(key: string, windowMs: number): Promise<RateLimitHit>;
  close(): Promise<void>;
}

export interface MemoryRateLimitStoreOptions {
  /** Most keys kept at once; beyond, the oldest window is dropped (that client starts afresh). */
  maxKeys?: number;
  now?: () => number;
}

/** Counters in this process only: fine for one server, not shared between several. */
export function createMemoryRateLimitStore({ maxKeys = 100_000, now = Date.now }: MemoryRateLimitStoreOptions = {}): RateLimitStore {
  // A key is (re)inserted when its window opens, and every window has the same length, so the
  // Map's insertion order is also expiry order: expired entries are always at the front.
  const windows = new Map<string, { count: number; resetAt: number }>();
  return {
    kind: 'memory',
    async hit(key, windowMs) {
      const t = now();
      for (const [k, w] of windows) {
        if (w.resetAt > t) break;
        windows.delete(k);
      }
      let w = windows.get(key);
      if (w && w.resetAt <= t) {
        windows.delete(key);
        w = undefined;
      }
      if (!w) {
        if (windows.size >= maxKeys) windows.delete(windows.keys().next().value!);
        w = { count: 0, resetAt: t + windowMs };
        windows.set(key, w);
      }
      w.count += 1;
      return { count: w.count, resetMs: w.resetAt - t };
    },
    async close() {
      windows.clear();
    },
  };
}

// INCR and the expiry run as one script, so concurrent processes never double-count and a key
// never outlives its window (a key somehow left without a TTL gets one on its next hit).
const HIT_SCRIPT = `
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}`;
const HIT_SCRIPT_SHA = createHash('sha1').update(HIT_SCRIPT).digest('hex');

export interface RedisRateLimitStoreOptions {
  url: string;
  logger: Logger;
  /** Prepended to every key, so several deployments can share one Redis. */
  prefix?: string;
  /** How long start-up waits for the first connection before going on without it. */
  connectWaitMs?: number;
  /** A slower answer counts as a failure (and the request is let through). */
  commandTimeoutMs?: number;
}

/**
 * Counters shared by every process pointed at the same Redis. Connection trouble never throws
 * here: commands fail fast while Redis is away (the middleware then lets requests through), and
 * the client keeps reconnecting in the background.
 */
export async function createRedisRateLimitStore({
  url,
  logger,
  prefix = 'ratelimit:',
  connectWaitMs = 5_000,
  commandTimeoutMs = 1_000,
}: RedisRateLimitStoreOptions): Promise<RateLimitStore> {
  const log = logger.child({ component: 'rate-limit', redis: redactRedisUrl(url) });
  // Loaded only when REDIS_URL is set: the client is not small.
  const { createClient } = await import('redis');
  const client = createClient({
    url,
    disableOfflineQueue: true,
    commandOptions: { timeout: commandTimeoutMs },
    socket: { connectTimeout: commandTimeoutMs * 2, reconnectStrategy: (retries) => Math.min(100 * 2 ** retries, 5_000) },
  });
  // Without an 'error' listener node-redis would crash the process. Reconnects fail repeatedly,
  // so each outage is logged once, and its end once.
  let everReady = false;
  let warned = false;
  const warnOnce = (message: string, err?: unknown) => {
    if (!warned) log.warn({ err }, message);
    warned = true;
  };
  const unreachable = 'Redis is unreachable at start-up; requests are allowed without rate limiting until it connects';
  client.on('error', (err: Error) =>
    warnOnce(everReady ? 'Redis connection lost; requests are allowed without rate limiting until it returns' : unreachable, err),
  );
  client.on('ready', () => {
    if (warned) log.info('Redis connected; rate limiting is active');
    everReady = true;
    warned = false;
  });

  const connecting = client.connect().then(
    () => true,
    () => false, // destroyed before it ever connected
  );
  const connected = await Promise.race([connecting, new Promise<false>((r) => setTimeout(r, connectWaitMs, false).unref())]);
  if (!connected) warnOnce(unreachable);

  return {
    kind: 'redis',
    async hit(key, windowMs) {
      const options = { keys: [prefix + key], arguments: [String(windowMs)] };
      const reply = await client.evalSha(HIT_SCRIPT_SHA, options).catch((err: unknown) => {
        // First use on this Redis (or after SCRIPT FLUSH): send the script itself once.
        if (err instanceof Error && err.message.startsWith('NOSCRIPT')) return client.eval(HIT_SCRIPT, options);
        throw err;
      });
      const [count, ttl] = reply as [number, number];
      return { count, resetMs: ttl };
    },
    async close() {
      if (client.isReady) await client.close().catch(() => client.destroy());
      else if (client.isOpen) client.destroy();
      await connecting;
    },
  };
}

/** The URL without its password, for logs. */
export function redactRedisUrl(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = '***';
  return u.toString();
}
