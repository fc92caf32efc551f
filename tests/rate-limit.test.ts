import { fork, type ChildProcess } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Hono } from 'hono';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../app/app.js';
import { ConfigError, loadConfig } from '../app/env.js';
import { renderError, toApiError } from '../app/errors.js';
import { createLogger } from '../app/logger.js';
import { rateLimit } from '../app/rate-limit/middleware.js';
import { createMemoryRateLimitStore, createRedisRateLimitStore, type RateLimitStore } from '../app/rate-limit/stores.js';
import { startServer } from '../app/server.js';
import { InFlight } from '../app/streaming/in-flight.js';
import type { AppEnv, Services } from '../app/types.js';
import { startMockUpstream } from '../mock/upstream.js';
import { call, newSession, testConfig, TEST_SESSION_SECRET } from './helpers/app.js';
import { waitFor } from './helpers/streams.js';

// Redis is optional on a developer machine and required in CI, as Postgres is (helpers/dialects.ts).
const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const requireRedis = Boolean(process.env.CI || process.env.REQUIRE_REDIS);

async function redisReachable(): Promise<boolean> {
  const client = createClient({ url: REDIS_URL, socket: { connectTimeout: 2_000, reconnectStrategy: false } });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.ping();
    return true;
  } catch (err) {
    if (requireRedis) {
      throw new Error(`Redis is required (CI or REQUIRE_REDIS is set) but ${REDIS_URL} is unreachable: ${(err as Error).message}`);
    }
    console.warn(
      `\n!!! Redis at ${REDIS_URL} is unreachable (${(err as Error).message}).\n!!! Redis rate-limit tests are SKIPPED. Set TEST_REDIS_URL or start Redis; CI fails instead of skipping.\n`,
    );
    return false;
  } finally {
    if (client.isOpen) client.destroy();
  }
}

const redisAvailable = await redisReachable();
// Every key this run writes starts with this, so parallel runs never collide and cleanup is exact.
const PREFIX = `test-ratelimit:${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}:`;
const silent = createLogger('silent');

/** Deletes every key under `prefix`; returns how many there were. */
async function deleteKeys(prefix: string): Promise<number> {
  const client = createClient({ url: REDIS_URL });
  client.on('error', () => {});
  await client.connect();
  try {
    const keys: string[] = [];
    for await (const batch of client.scanIterator({ MATCH: `${prefix}*`, COUNT: 1000 })) keys.push(...batch);
    if (keys.length) await client.del(keys);
    return keys.length;
  } finally {
    client.destroy();
  }
}

afterAll(async () => {
  if (redisAvailable) await deleteKeys(PREFIX);
});

/**
 * A pure-proxy app (history endpoints answer 501, which still counts) with the given limiter.
 * Requests sent without an address all come from "unknown" and share one per-address count
 * across tests, so it is set out of reach unless a test sets it (and its own addresses).
 */
function limitedApp(rateLimitStore: RateLimitStore, env: Record<string, string> = {}, logger = silent) {
  const config = testConfig({ PERSIST_TRANSCRIPTS: 'false', RATE_LIMIT_MAX: '3', RATE_LIMIT_MAX_PER_ADDRESS: '1000000', RATE_LIMIT_WINDOW_SEC: '60', ...env });
  const inFlight = new InFlight(null, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: logger });
  return createApp({ config, store: null, logger, inFlight, rateLimitStore });
}

const limitHeaders = (h: Headers) => ({
  limit: h.get('ratelimit-limit'),
  remaining: h.get('ratelimit-remaining'),
  reset: h.get('ratelimit-reset'),
  policy: h.get('ratelimit-policy'),
  retryAfter: h.get('retry-after'),
});

/** A logger whose lines land in an array, to assert on warnings (and, at 'info', on recoveries). */
function capturingLogger(level: 'warn' | 'info' = 'warn') {
  const lines: Array<Record<string, any>> = [];
  const logger = createLogger(level, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

/** A documentation-range IPv4 address (198.18.0.0/15, benchmarking) no other test uses. */
const newAddress = () => `198.${18 + Math.floor(Math.random() * 2)}.${Math.floor(Math.random() * 256)}.${Math.floor(Math.random() * 256)}`;

type Kind = 'memory' | 'redis';
const kinds: Kind[] = redisAvailable ? ['memory', 'redis'] : ['memory'];

describe.each(kinds)('rate limiting with the %s store', (kind) => {
  let store: RateLimitStore;

  beforeAll(async () => {
    store = kind === 'redis' ? await createRedisRateLimitStore({ url: REDIS_URL, prefix: PREFIX, logger: silent }) : createMemoryRateLimitStore();
  });
  afterAll(async () => {
    await store?.close();
  });

  it('counts down RateLimit-Remaining, then answers 429 in OpenAI error shape with Retry-After', async () => {
    const app = limitedApp(store);
    const session = newSession();
    const seen = [];
    for (let i = 0; i < 3; i++) {
      const res = await call(app, 'GET', '/v1/conversations', { session });
      expect(res.status).toBe(501); // persistence is off: the request still counts
      seen.push(limitHeaders(res.headers));
    }
    expect(seen.map((h) => h.remaining)).toEqual(['2', '1', '0']);
    for (const h of seen) {
      expect(h).toMatchObject({ limit: '3', policy: '3;w=60', retryAfter: null });
      expect(Number(h.reset)).toBeGreaterThanOrEqual(59);
      expect(Number(h.reset)).toBeLessThanOrEqual(60);
    }

    const over = await call(app, 'POST', '/v1/conversations', { session, body: {} });
    expect(over.status).toBe(429);
    expect(over.json).toEqual({
      error: {
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        param: null,
        message: expect.stringMatching(/at most 3 requests per 60 seconds.*Retry after \d+ seconds?\./),
      },
    });
    const h = limitHeaders(over.headers);
    expect(h).toMatchObject({ limit: '3', remaining: '0', policy: '3;w=60' });
    expect(Number(h.retryAfter)).toBeGreaterThanOrEqual(1);
    expect(Number(h.retryAfter)).toBeLessThanOrEqual(60);
    expect(h.reset).toBe(h.retryAfter);
    expect(over.json.error.message).toContain(`Retry after ${h.retryAfter} second`);
    expect(over.headers.get('x-session-id')).toBe(session);
    expect(over.headers.get('x-request-id')).toBeTruthy();
  });

  it('gives each session its own budget, whether sent as header or cookie', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '2' });
    const [a, b] = [newSession(), newSession()];
    for (let i = 0; i < 2; i++) expect((await call(app, 'GET', '/v1/conversations', { session: a })).status).toBe(501);
    expect((await call(app, 'GET', '/v1/conversations', { session: a })).status).toBe(429);
    // The same session as a cookie is the same caller.
    expect((await call(app, 'GET', '/v1/conversations', { headers: { cookie: `cf_session_id=${a}` } })).status).toBe(429);

    const first = await call(app, 'GET', '/v1/conversations', { headers: { cookie: `cf_session_id=${b}` } });
    expect(first.status).toBe(501);
    expect(first.headers.get('ratelimit-remaining')).toBe('1');
    expect((await call(app, 'GET', '/v1/conversations', { session: b })).status).toBe(501);
    expect((await call(app, 'GET', '/v1/conversations', { session: b })).status).toBe(429);
  });

  it('counts requests without a session against the client address, not the freshly minted id', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '2', RATE_LIMIT_MAX_PER_ADDRESS: '3' });
    const address = newAddress();
    const minted = [];
    for (let i = 0; i < 2; i++) {
      const res = await call(app, 'GET', '/v1/conversations', { address });
      expect(res.status).toBe(501);
      expect(limitHeaders(res.headers)).toMatchObject({ limit: '3', remaining: String(2 - i), policy: '3;w=60' });
      minted.push(res.headers.get('x-session-id'));
    }
    expect(new Set(minted).size).toBe(2);
    // A minted session, once sent back, has a budget of its own, within its address's.
    const back = await call(app, 'GET', '/v1/conversations', { session: minted[0]!, address });
    expect(back.status).toBe(501);
    const over = await call(app, 'GET', '/v1/conversations', { address });
    expect(over.status).toBe(429);
    expect(over.headers.get('retry-after')).toBeTruthy();
    expect(over.json.error.message).toMatch(/at most 3 requests per 60 seconds per client address/);
    // The address is spent, so its sessions are too.
    expect((await call(app, 'GET', '/v1/conversations', { session: minted[1]!, address })).status).toBe(429);
    expect((await call(app, 'GET', '/v1/conversations', { address: newAddress() })).status).toBe(501);
  });

  it('counts every anonymous request against its address too: fresh sessions buy nothing', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '5', RATE_LIMIT_MAX_PER_ADDRESS: '12' });
    const address = newAddress();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await call(app, 'GET', '/v1/conversations', { session: newSession(), address })).status);
    expect(statuses).toEqual([...Array(12).fill(501), ...Array(18).fill(429)]);
    const over = await call(app, 'GET', '/v1/conversations', { session: newSession(), address });
    expect(over.json.error).toMatchObject({ type: 'rate_limit_error', code: 'rate_limit_exceeded' });
    expect(over.json.error.message).toMatch(/^Rate limit exceeded: at most 12 requests per 60 seconds per client address \(shared by every session from that address\)\. Retry after \d+ seconds?\.$/);
    expect(limitHeaders(over.headers)).toMatchObject({ limit: '12', remaining: '0', policy: '12;w=60' });
    // Another address, and the same session from it, are counted apart.
    const elsewhere = await call(app, 'GET', '/v1/conversations', { session: newSession(), address: newAddress() });
    expect(elsewhere.status).toBe(501);
  });

  it('refuses a session over its own limit while its address has room, saying which', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '2', RATE_LIMIT_MAX_PER_ADDRESS: '10' });
    const [address, session] = [newAddress(), newSession()];
    for (let i = 0; i < 2; i++) expect((await call(app, 'GET', '/v1/conversations', { session, address })).status).toBe(501);
    const over = await call(app, 'GET', '/v1/conversations', { session, address });
    expect(over.status).toBe(429);
    expect(over.json.error.message).toMatch(/^Rate limit exceeded: at most 2 requests per 60 seconds per session\. Retry after/);
    // Its refused request still counted against the address: 3 of 10 spent.
    const other = await call(app, 'GET', '/v1/conversations', { session: newSession(), address });
    expect(other.status).toBe(501);
    expect(limitHeaders(other.headers)).toMatchObject({ limit: '2', remaining: '1' });
    for (let i = 0; i < 5; i++) await call(app, 'GET', '/v1/conversations', { session: newSession(), address });
    // The headers follow whichever count is nearer its limit: now the address (9 of 10 spent).
    const near = await call(app, 'GET', '/v1/conversations', { session: newSession(), address });
    expect(limitHeaders(near.headers)).toMatchObject({ limit: '10', remaining: '0', policy: '10;w=60' });
  });

  it('counts an IPv6 /64 as one address', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX_PER_ADDRESS: '2' });
    const prefix = `2001:db8:${Math.floor(Math.random() * 0xffff).toString(16)}:${Math.floor(Math.random() * 0xffff).toString(16)}`;
    expect((await call(app, 'GET', '/v1/conversations', { address: `${prefix}::1` })).status).toBe(501);
    expect((await call(app, 'GET', '/v1/conversations', { address: `${prefix}:0:0:0:abcd` })).status).toBe(501);
    expect((await call(app, 'GET', '/v1/conversations', { address: `${prefix}:ffff::2` })).status).toBe(429);
    expect((await call(app, 'GET', '/v1/conversations', { address: `${prefix.replace(/:[0-9a-f]+$/, ':0')}::1` })).status).toBe(501);
  });

  it('turns the per-address count off with RATE_LIMIT_MAX_PER_ADDRESS=0, and limits by address alone with RATE_LIMIT_MAX=0', async () => {
    const sessionsOnly = limitedApp(store, { RATE_LIMIT_MAX: '1', RATE_LIMIT_MAX_PER_ADDRESS: '0' });
    const address = newAddress();
    for (let i = 0; i < 4; i++) expect((await call(sessionsOnly, 'GET', '/v1/conversations', { session: newSession(), address })).status).toBe(501);
    const addressOnly = limitedApp(store, { RATE_LIMIT_MAX: '0', RATE_LIMIT_MAX_PER_ADDRESS: '2' });
    const session = newSession();
    expect((await call(addressOnly, 'GET', '/v1/conversations', { session, address })).status).toBe(501);
    expect((await call(addressOnly, 'GET', '/v1/conversations', { session, address })).status).toBe(501);
    expect((await call(addressOnly, 'GET', '/v1/conversations', { session, address })).status).toBe(429);
  });

  it('opens a new window once the old one ends', async () => {
    // The window ends on the store's clock: the memory store's is this test's to move; Redis
    // expires the keys itself, and the test waits until it has (seeing which keys were counted).
    let now = Date.now();
    const base = kind === 'memory' ? createMemoryRateLimitStore({ now: () => now }) : store;
    const counted = new Set<string>();
    const watched: RateLimitStore = { kind, hit: (key, windowMs) => (counted.add(key), base.hit(key, windowMs)), close: async () => {} };
    const app = limitedApp(watched, { RATE_LIMIT_MAX: '2', RATE_LIMIT_WINDOW_SEC: '1' });
    // An address of its own, so every key counted here opened its window in this test.
    const [session, address] = [newSession(), newAddress()];
    await call(app, 'GET', '/v1/conversations', { session, address });
    await call(app, 'GET', '/v1/conversations', { session, address });
    const over = await call(app, 'GET', '/v1/conversations', { session, address });
    expect(over.status).toBe(429);
    expect(limitHeaders(over.headers)).toMatchObject({ retryAfter: '1', reset: '1', policy: '2;w=1' });
    if (kind === 'memory') {
      now += 999;
      expect((await call(app, 'GET', '/v1/conversations', { session, address })).status).toBe(429); // not a moment early
      now += 1;
    } else {
      const redis = createClient({ url: REDIS_URL });
      redis.on('error', () => {});
      await redis.connect();
      try {
        await waitFor(async () => (await redis.exists([...counted].map((k) => PREFIX + k))) === 0);
      } finally {
        redis.destroy();
      }
    }
    const again = await call(app, 'GET', '/v1/conversations', { session, address });
    expect(again.status).toBe(501);
    expect(again.headers.get('ratelimit-remaining')).toBe('1');
  });

  it('never counts /healthz, and RATE_LIMIT_MAX=0 turns limiting off', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '1' });
    for (let i = 0; i < 5; i++) {
      const res = await call(app, 'GET', '/healthz');
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit-limit')).toBeNull();
    }
    const session = newSession();
    expect((await call(app, 'GET', '/v1/conversations', { session })).status).toBe(501);
    expect((await call(app, 'GET', '/v1/conversations', { session })).status).toBe(429);

    // Unset (empty), the per-address limit is 4 × RATE_LIMIT_MAX: off too.
    const unlimited = limitedApp(store, { RATE_LIMIT_MAX: '0', RATE_LIMIT_MAX_PER_ADDRESS: '' });
    for (let i = 0; i < 20; i++) {
      const res = await call(unlimited, 'GET', '/v1/conversations', { session });
      expect(res.status).toBe(501);
      expect(res.headers.get('ratelimit-limit')).toBeNull();
    }
  });

  it('never counts CORS preflights, and exposes the RateLimit headers to browsers', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '2' });
    const session = newSession();
    const origin = 'http://localhost:3000';
    for (let i = 0; i < 4; i++) {
      const res = await call(app, 'OPTIONS', '/v1/conversations', {
        session,
        headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'x-session-id' },
      });
      expect(res.status).toBe(204);
    }
    const res = await call(app, 'GET', '/v1/conversations', { session, headers: { origin } });
    expect(res.headers.get('ratelimit-remaining')).toBe('1');
    const exposed = res.headers.get('access-control-expose-headers')!.split(',').map((s) => s.trim().toLowerCase());
    expect(exposed).toEqual(
      expect.arrayContaining(['retry-after', 'ratelimit-limit', 'ratelimit-remaining', 'ratelimit-reset', 'ratelimit-policy']),
    );
  });

  it('limits chat completions too, with headers on the streamed response', async () => {
    const mock = await startMockUpstream({ record: false });
    try {
      const app = limitedApp(store, { RATE_LIMIT_MAX: '1', OPENAI_BASE_URL: mock.url, OPENAI_API_KEY: 'sk-test' });
      const session = newSession();
      const send = () =>
        app.request('/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session },
          body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], stream: true }),
        });
      const ok = await send();
      expect(ok.status).toBe(200);
      expect(ok.headers.get('content-type')).toContain('text/event-stream');
      expect(limitHeaders(ok.headers)).toMatchObject({ limit: '1', remaining: '0', policy: '1;w=60' });
      expect(await ok.text()).toContain('[DONE]');
      const over = await send();
      expect(over.status).toBe(429);
      expect((await over.json()).error.code).toBe('rate_limit_exceeded');
    } finally {
      await mock.close();
    }
  });

  it('counts a signed-in user per user only, wherever it connects from', async () => {
    // Nothing signs users in yet: the principal is set by hand, as that code would.
    const userId = `u_${crypto.randomUUID()}`;
    const app = new Hono<AppEnv>()
      .use(async (c, next) => {
        c.set('services', { config: testConfig() } as Services);
        c.set('log', silent);
        c.set('principal', { sessionId: newSession(), userId });
        await next();
      })
      .use(rateLimit({ store, max: 2, maxPerAddress: 1, windowSec: 60 }))
      .get('/', (c) => c.text('ok'))
      .onError((err, c) => renderError(toApiError(err), c));
    expect((await call(app, 'GET', '/', { address: newAddress() })).status).toBe(200);
    expect((await call(app, 'GET', '/', { address: newAddress() })).status).toBe(200);
    const over = await call(app, 'GET', '/', { address: newAddress() });
    expect(over.status).toBe(429);
    expect(over.json.error.message).toMatch(/^Rate limit exceeded: at most 2 requests per 60 seconds per user\. /);
  });

  it('counts concurrent requests exactly', async () => {
    const app = limitedApp(store, { RATE_LIMIT_MAX: '7' });
    const session = newSession();
    const results = await Promise.all(Array.from({ length: 30 }, () => call(app, 'GET', '/v1/conversations', { session })));
    expect(results.filter((r) => r.status === 501)).toHaveLength(7);
    expect(results.filter((r) => r.status === 429)).toHaveLength(23);
    const remaining = results.filter((r) => r.status === 501).map((r) => Number(r.headers.get('ratelimit-remaining')));
    expect(remaining.sort()).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });
});

describe('rate limiting through a real server', () => {
  it('keys requests by the socket address, session or not, and ignores X-Forwarded-For without TRUST_PROXY', async () => {
    const config = testConfig({ PERSIST_TRANSCRIPTS: 'false', RATE_LIMIT_MAX: '2', RATE_LIMIT_MAX_PER_ADDRESS: '3', PORT: '0', HOST: '127.0.0.1' });
    const server = await startServer(config, { logger: silent });
    try {
      const get = (headers: Record<string, string> = {}) => fetch(`${server.url}/v1/conversations`, { headers });
      expect((await get()).status).toBe(501);
      expect((await get({ 'x-forwarded-for': '203.0.113.7' })).status).toBe(501);
      const withSession = await get({ 'x-session-id': newSession(), 'x-forwarded-for': '203.0.113.8' });
      expect(withSession.status).toBe(501);
      expect(withSession.headers.get('ratelimit-remaining')).toBe('0');
      // The address is spent: a fresh session or a claimed address does not help.
      for (const headers of [{}, { 'x-session-id': newSession() }, { 'x-forwarded-for': '198.51.100.1' }] as Record<string, string>[]) {
        const over = await get(headers);
        expect(over.status).toBe(429);
        expect(over.headers.get('retry-after')).toBeTruthy();
        expect((await over.json()).error.message).toContain('per client address');
      }
    } finally {
      await server.close();
    }
  });
});

describe('configuration', () => {
  it('accepts redis:// and rediss:// URLs and defaults to no Redis', () => {
    expect(loadConfig({}).redisUrl).toBeUndefined();
    expect(loadConfig({}).rateLimit).toEqual({ windowSec: 60, max: 50, maxPerAddress: 200, redisPrefix: 'ratelimit:' });
    expect(loadConfig({ REDIS_URL: 'rediss://:pw@cache.example:6380/2' }).redisUrl).toBe('rediss://:pw@cache.example:6380/2');
  });

  it.each(['http://127.0.0.1:6379', '127.0.0.1:6379', 'redis://', 'redis://bad host'])('refuses REDIS_URL=%s, naming it', (value) => {
    expect(() => loadConfig({ REDIS_URL: value })).toThrow(ConfigError);
    expect(() => loadConfig({ REDIS_URL: value })).toThrow(/REDIS_URL.*redis:\/\/ or rediss:\/\//);
  });

  it('never echoes a Redis password in the error', () => {
    expect(() => loadConfig({ REDIS_URL: 'redis://user:hunter2@bad host' })).toThrow(/user:\*\*\*@/);
    expect(() => loadConfig({ REDIS_URL: 'redis://user:hunter2@bad host' })).not.toThrow(/hunter2/);
  });
});

describe('in-memory store bounds', () => {
  it('drops expired windows and never holds more than maxKeys', async () => {
    let now = 0;
    const store = createMemoryRateLimitStore({ maxKeys: 3, now: () => now });
    for (const k of ['a', 'b', 'c']) await store.hit(k, 1_000);
    expect(await store.hit('a', 1_000)).toEqual({ count: 2, resetMs: 1_000 });
    // Full: a fourth key evicts the oldest window ('a'), which then starts afresh.
    await store.hit('d', 1_000);
    expect(await store.hit('a', 1_000)).toEqual({ count: 1, resetMs: 1_000 }); // evicts 'b'
    expect(await store.hit('c', 1_000)).toEqual({ count: 2, resetMs: 1_000 });
    now = 1_000;
    expect(await store.hit('c', 1_000)).toEqual({ count: 1, resetMs: 1_000 });
  });
});

describe('fail open', () => {
  it('allows requests and logs a warning when Redis is unreachable', async () => {
    const { logger, lines } = capturingLogger();
    // Port 1: nothing listens there, connections are refused at once.
    const store = await createRedisRateLimitStore({ url: 'redis://127.0.0.1:1', prefix: PREFIX, logger, connectWaitMs: 200 });
    try {
      expect(lines.some((l) => /unreachable at start-up/.test(l.msg))).toBe(true);
      const app = limitedApp(store, { RATE_LIMIT_MAX: '1' }, logger);
      const session = newSession();
      for (let i = 0; i < 3; i++) {
        const res = await call(app, 'GET', '/v1/conversations', { session });
        expect(res.status).toBe(501);
        expect(res.headers.get('ratelimit-limit')).toBeNull();
      }
      const warnings = lines.filter((l) => l.msg === 'rate limiter unavailable; request allowed without limiting');
      expect(warnings).toHaveLength(1); // throttled, not one per request
      expect(warnings[0]).toMatchObject({ level: 40, store: 'redis', request_id: expect.any(String) });
    } finally {
      await store.close();
    }
  });

  it.skipIf(!redisAvailable)('lets requests through while Redis is away and limits again once it is back', async () => {
    // A TCP relay in front of Redis that the test can cut, as a network failure would.
    const sockets = new Set<Socket>();
    const relay = (port = 0) =>
      new Promise<Server>((resolve) => {
        const target = new URL(REDIS_URL);
        const srv = createServer((client) => {
          const redis = connect(Number(target.port || 6379), target.hostname);
          for (const s of [client, redis]) {
            sockets.add(s);
            s.on('close', () => sockets.delete(s));
            s.on('error', () => {});
          }
          client.pipe(redis).pipe(client);
        });
        srv.listen(port, '127.0.0.1', () => resolve(srv));
      });
    const cut = async (srv: Server) => {
      await new Promise<void>((resolve) => {
        srv.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
    };

    let srv = await relay();
    const port = (srv.address() as AddressInfo).port;
    const { logger, lines } = capturingLogger('info');
    const store = await createRedisRateLimitStore({ url: `redis://127.0.0.1:${port}`, prefix: PREFIX, logger });
    try {
      const app = limitedApp(store, { RATE_LIMIT_MAX: '1' }, logger);
      const session = newSession();
      expect((await call(app, 'GET', '/v1/conversations', { session })).status).toBe(501);
      expect((await call(app, 'GET', '/v1/conversations', { session })).status).toBe(429);

      await cut(srv);
      const started = Date.now();
      for (let i = 0; i < 3; i++) expect((await call(app, 'GET', '/v1/conversations', { session })).status).toBe(501);
      expect(Date.now() - started).toBeLessThan(3_000); // fails fast, does not hang on Redis
      expect(lines.some((l) => /Redis connection lost/.test(l.msg))).toBe(true);
      expect(lines.some((l) => /rate limiter unavailable/.test(l.msg))).toBe(true);

      srv = await relay(port);
      // The client reconnects on its own backoff; it says so once it is ready again.
      await waitFor(() => lines.some((l) => l.msg === 'Redis connected; rate limiting is active'), 10_000);
      const status = (await call(app, 'GET', '/v1/conversations', { session })).status;
      expect(status).toBe(429); // the counter survived in Redis; limiting resumed
    } finally {
      await store.close();
      await cut(srv);
    }
  });
});

describe.skipIf(!redisAvailable)('two server processes sharing one Redis', () => {
  const MAX = 5;
  const children: ChildProcess[] = [];
  let urls: string[] = [];

  function spawnServer(): Promise<string> {
    const child = fork(fileURLToPath(new URL('./helpers/rate-limit-child.ts', import.meta.url)), {
      execArgv: ['--import', 'tsx'],
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        PERSIST_TRANSCRIPTS: 'false',
        REDIS_URL,
        RATE_LIMIT_REDIS_PREFIX: PREFIX,
        RATE_LIMIT_MAX: String(MAX),
        // Every request here comes from 127.0.0.1; these tests are about one session's budget.
        RATE_LIMIT_MAX_PER_ADDRESS: '1000000',
        RATE_LIMIT_WINDOW_SEC: '60',
        LOG_LEVEL: 'silent',
        // Without a database the processes share no secret: the deployment sets one.
        SESSION_SECRET: TEST_SESSION_SECRET,
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    return new Promise((resolve, reject) => {
      child.once('message', (m: any) => resolve(m.url));
      child.once('exit', (code) => reject(new Error(`server process exited early with code ${code}`)));
    });
  }

  beforeAll(async () => {
    urls = await Promise.all([spawnServer(), spawnServer()]);
  }, 30_000);
  afterAll(async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
            child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            child.send('stop');
          }),
      ),
    );
  });

  const get = (url: string, session: string) => fetch(`${url}/v1/conversations`, { headers: { 'x-session-id': session } });

  it('runs two distinct processes', () => {
    expect(urls).toHaveLength(2);
    expect(urls[0]).not.toBe(urls[1]);
  });

  it('shares one budget: the (max+1)-th request overall is refused, whichever process gets it', async () => {
    const session = newSession();
    const statuses: number[] = [];
    const remaining: Array<string | null> = [];
    for (let i = 0; i < MAX + 3; i++) {
      const res = await get(urls[i % 2]!, session);
      statuses.push(res.status);
      remaining.push(res.headers.get('ratelimit-remaining'));
      await res.arrayBuffer();
    }
    expect(statuses).toEqual([...Array(MAX).fill(501), 429, 429, 429]);
    expect(remaining).toEqual(['4', '3', '2', '1', '0', '0', '0', '0']);
  });

  it('never double-counts under concurrent requests to both processes', async () => {
    const session = newSession();
    const results = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const res = await get(urls[i % 2]!, session);
        await res.arrayBuffer();
        return res.status;
      }),
    );
    expect(results.filter((s) => s === 501)).toHaveLength(MAX);
    expect(results.filter((s) => s === 429)).toHaveLength(24 - MAX);
  });

  it('stores hashed keys that expire with the window', async () => {
    const client = createClient({ url: REDIS_URL });
    client.on('error', () => {});
    await client.connect();
    try {
      const session = newSession();
      await (await get(urls[0]!, session)).arrayBuffer();
      const keys: string[] = [];
      for await (const batch of client.scanIterator({ MATCH: `${PREFIX}*`, COUNT: 1000 })) keys.push(...batch);
      expect(keys.length).toBeGreaterThan(0);
      expect(keys.every((k) => !k.includes(session))).toBe(true); // a session id is a credential
      for (const k of keys) {
        const ttl = await client.pTTL(k);
        expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(60_000);
      }
    } finally {
      client.destroy();
    }
  });
});
