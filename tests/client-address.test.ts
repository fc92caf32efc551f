import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp } from './helpers/app.js';
import { sharedTestStore } from './helpers/dialects.js';

/*
 * Where a request comes from: the socket's address, or behind a reverse proxy (TRUST_PROXY=true)
 * the last X-Forwarded-For hop. Observed through the per-address rate limit, the session
 * cookie's Secure flag and the salted address hash a session records.
 */

/** Counts per address only, so RateLimit-Remaining tells which address a request was counted against. */
const addressCounting = (env: Record<string, string> = {}) =>
  testApp(null, { PERSIST_TRANSCRIPTS: 'false', RATE_LIMIT_MAX: '0', RATE_LIMIT_MAX_PER_ADDRESS: '100', ...env });

const remaining = async (app: ReturnType<typeof addressCounting>, address: string | undefined, headers: Record<string, string> = {}) => {
  const res = await call(app, 'GET', '/v1/conversations', { session: newSession(), address, headers });
  expect(res.status).toBe(501);
  return Number(res.headers.get('ratelimit-remaining'));
};

describe('without TRUST_PROXY (the default)', () => {
  it('counts the socket address and ignores X-Forwarded-For, however it is spelled', async () => {
    const app = addressCounting();
    expect(await remaining(app, '192.0.2.10')).toBe(99);
    for (const spoofed of ['203.0.113.1', '203.0.113.2, 203.0.113.3', '192.0.2.99']) {
      await remaining(app, '192.0.2.10', { 'x-forwarded-for': spoofed });
    }
    expect(await remaining(app, '192.0.2.10')).toBe(95);
    // Nor does a forwarded header make up for a missing socket.
    expect(await remaining(app, undefined, { 'x-forwarded-for': '192.0.2.10' })).toBe(99);
  });

  it('treats an IPv4 client on a dual-stack socket as its IPv4 address', async () => {
    const app = addressCounting();
    expect(await remaining(app, '192.0.2.20')).toBe(99);
    expect(await remaining(app, '::ffff:192.0.2.20')).toBe(98);
  });

  it('never marks the session cookie Secure on X-Forwarded-Proto alone', async () => {
    const res = await call(addressCounting(), 'GET', '/v1/conversations', { headers: { 'x-forwarded-proto': 'https' } });
    expect(res.headers.get('set-cookie')).toMatch(/^cf_session_id=/);
    expect(res.headers.get('set-cookie')).not.toMatch(/Secure/i);
  });
});

describe('with TRUST_PROXY=true', () => {
  const proxied = () => addressCounting({ TRUST_PROXY: 'true' });

  it('counts the last X-Forwarded-For hop, the one the proxy added; hops the client claimed do not matter', async () => {
    const app = proxied();
    const proxy = '10.0.0.2';
    expect(await remaining(app, proxy, { 'x-forwarded-for': '198.51.100.5' })).toBe(99);
    expect(await remaining(app, proxy, { 'x-forwarded-for': '203.0.113.9, 198.51.100.5' })).toBe(98);
    expect(await remaining(app, proxy, { 'x-forwarded-for': 'made-up, 198.51.100.5:51234' })).toBe(97);
    // Another client behind the same proxy has its own count, and so does the proxy itself.
    expect(await remaining(app, proxy, { 'x-forwarded-for': '198.51.100.5, 198.51.100.6' })).toBe(99);
    expect(await remaining(app, proxy, { 'x-forwarded-for': '[2001:db8::7]:443' })).toBe(99);
    expect(await remaining(app, proxy)).toBe(99);
  });

  it('falls back to the socket address when the last hop is not an address', async () => {
    const app = proxied();
    expect(await remaining(app, '10.0.0.3')).toBe(99);
    expect(await remaining(app, '10.0.0.3', { 'x-forwarded-for': '198.51.100.1, unknown' })).toBe(98);
    expect(await remaining(app, '10.0.0.3', { 'x-forwarded-for': ' ' })).toBe(97);
  });

  it('marks the session cookie Secure when the proxy says the client used HTTPS', async () => {
    const cookie = async (proto: string) =>
      (await call(proxied(), 'GET', '/v1/conversations', { headers: { 'x-forwarded-proto': proto } })).headers.get('set-cookie')!;
    expect(await cookie('https')).toMatch(/; Secure/);
    expect(await cookie('http')).not.toMatch(/Secure/i);
    expect(await cookie('https, http')).not.toMatch(/Secure/i);
  });
});

describe('the salted address hash of a session', () => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  beforeAll(async () => {
    db = await sharedTestStore('sqlite');
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it.each([
    ['false', '192.0.2.50'],
    ['true', '198.51.100.50'],
  ])('hashes the client address that TRUST_PROXY=%s gives', async (trustProxy, expected) => {
    const salt = 'a-salt-of-sixteen-chars';
    const app = testApp(db.store, { IP_HASH_SALT: salt, TRUST_PROXY: trustProxy });
    const session = newSession();
    const res = await call(app, 'POST', '/v1/conversations', {
      session,
      body: {},
      address: '192.0.2.50',
      headers: { 'x-forwarded-for': '198.51.100.50' },
    });
    expect(res.status).toBe(201);
    const [row] = await db.sql(`select ip_hash from sessions where id = '${hashSessionId(session)}'`);
    expect(row).toEqual({ ip_hash: createHash('sha256').update(salt).update(expected).digest('hex') });
  });
});

describe('configuration', () => {
  it('defaults TRUST_PROXY to false and names it when it is bad', () => {
    expect(loadConfig({}).trustProxy).toBe(false);
    expect(loadConfig({ TRUST_PROXY: 'true' }).trustProxy).toBe(true);
    expect(() => loadConfig({ TRUST_PROXY: 'sometimes' })).toThrow(ConfigError);
    expect(() => loadConfig({ TRUST_PROXY: 'sometimes' })).toThrow(/TRUST_PROXY .*must be one of true, false/);
  });
});
