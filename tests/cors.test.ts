import OpenAI from 'openai';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { testApp, type TestApp } from './helpers/app.js';

/*
 * Browsers call this server from another origin: a page on http://localhost:3000 using the
 * official SDK. Its preflight must pass, a foreign origin must learn nothing, and the loopback
 * spellings of one machine must count as one.
 */

// Headers a browser never lists in Access-Control-Request-Headers: CORS-safelisted ones (with
// the SDK's values) and those a page cannot set.
const NOT_LISTED = new Set(['accept', 'accept-language', 'content-language', 'user-agent', 'content-length']);

/** The headers the openai SDK sends for a chat completion, as a browser lists them in its preflight. */
async function sdkRequestHeaders(): Promise<string> {
  let sent: Headers | undefined;
  const client = new OpenAI({
    apiKey: 'sk-unused',
    baseURL: 'http://proxy.test/v1',
    defaultHeaders: { 'x-session-id': 'session-from-a-first-call' },
    fetch: async (_url, init) => {
      sent = new Headers(init?.headers);
      return new Response(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 0, model: 'm', choices: [] }), {
        headers: { 'content-type': 'application/json' },
      });
    },
  });
  // parse() adds x-stainless-helper-method, a per-request timeout x-stainless-timeout.
  await client.chat.completions.parse({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-conversation-id': 'c' }, timeout: 30_000 });
  // Chrome's form: lowercase, sorted, comma-separated without spaces.
  return [...sent!.keys()].filter((h) => !NOT_LISTED.has(h)).sort().join(',');
}

function preflight(app: TestApp, origin: string, requestHeaders: string, path = '/v1/chat/completions') {
  return app.request(path, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': requestHeaders },
  });
}

const corsHeaders = (res: Response) => [...res.headers.keys()].filter((h) => h.startsWith('access-control-'));

describe('CORS', () => {
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });

  it("passes the openai SDK's preflight, x-stainless-* headers included", async () => {
    const requested = await sdkRequestHeaders();
    // The test is only worth something if the SDK really sends these.
    expect(requested).toContain('x-stainless-os');
    expect(requested).toContain('x-stainless-retry-count');
    expect(requested).toContain('x-stainless-timeout');
    expect(requested).toContain('x-stainless-helper-method');
    expect(requested).toContain('authorization');
    expect(requested).toContain('content-type');

    const res = await preflight(app, 'http://localhost:3000', requested);
    expect(res.status).toBe(204);
    expect(res.headers.get('access-control-allow-origin')).toBe('http://localhost:3000');
    expect(res.headers.get('access-control-allow-credentials')).toBe('true');
    expect(res.headers.get('access-control-allow-methods')).toContain('POST');
    const allowed = new Set(res.headers.get('access-control-allow-headers')!.split(',').map((h) => h.trim().toLowerCase()));
    for (const header of requested.split(',')) expect(allowed.has(header), header).toBe(true);
    expect(res.headers.get('vary')).toMatch(/origin/i);
  });

  it('gives a foreign origin no CORS header at all, on a preflight or a request', async () => {
    const res = await preflight(app, 'http://evil.example', 'authorization,content-type,x-stainless-os');
    expect(res.status).toBe(204);
    expect(corsHeaders(res)).toEqual([]);
    expect(res.headers.get('set-cookie')).toBeNull();
    const simple = await app.request('/healthz', { headers: { origin: 'http://evil.example' } });
    expect(simple.status).toBe(200);
    expect(corsHeaders(simple)).toEqual([]);
    expect(simple.headers.get('vary')).toMatch(/origin/i);
  });

  it.each(['http://localhost:3000', 'http://127.0.0.1:3000', 'http://[::1]:3000'])(
    'admits %s, a spelling of the default origin, with credentials',
    async (origin) => {
      const res = await preflight(app, origin, 'content-type,x-session-id');
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(res.headers.get('access-control-allow-credentials')).toBe('true');
      const simple = await app.request('/healthz', { headers: { origin } });
      expect(simple.headers.get('access-control-allow-origin')).toBe(origin);
      expect(simple.headers.get('access-control-expose-headers')).toContain('x-session-id');
    },
  );

  it.each(['http://localhost:3001', 'https://localhost:3000', 'http://localhost', 'http://127.0.0.2:3000'])(
    'does not stretch loopback to %s (another port, scheme or address)',
    async (origin) => {
      expect(corsHeaders(await preflight(app, origin, 'content-type'))).toEqual([]);
    },
  );

  it('extends any configured loopback origin to its other spellings, and no other host', async () => {
    const custom = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ALLOWED_ORIGIN: 'http://127.0.0.1:5173,https://app.example' });
    for (const origin of ['http://localhost:5173', 'http://127.0.0.1:5173', 'https://app.example']) {
      expect((await preflight(custom, origin, 'content-type')).headers.get('access-control-allow-origin'), origin).toBe(origin);
    }
    expect(corsHeaders(await preflight(custom, 'http://localhost:3000', 'content-type'))).toEqual([]);
    expect(corsHeaders(await preflight(custom, 'https://www.app.example', 'content-type'))).toEqual([]);
  });

  describe("ALLOWED_ORIGIN='*'", () => {
    const open = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ALLOWED_ORIGIN: '*' });

    it('admits any origin without credentials, and exposes x-session-id for the header to be reused', async () => {
      const requested = await sdkRequestHeaders();
      const res = await preflight(open, 'https://anywhere.example', requested);
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(res.headers.get('access-control-allow-headers')).toBe(requested);
      const simple = await open.request('/v1/privacy', { headers: { origin: 'https://anywhere.example' } });
      expect(simple.headers.get('access-control-allow-origin')).toBe('*');
      expect(simple.headers.get('access-control-allow-credentials')).toBeNull();
      expect(simple.headers.get('access-control-expose-headers')).toContain('x-session-id');
      expect(simple.headers.get('x-session-id')).toBeTruthy();
    });

    it('keeps credentials for origins listed beside it', async () => {
      const mixed = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ALLOWED_ORIGIN: '*,http://localhost:3000' });
      const listed = await preflight(mixed, 'http://127.0.0.1:3000', 'content-type');
      expect(listed.headers.get('access-control-allow-origin')).toBe('http://127.0.0.1:3000');
      expect(listed.headers.get('access-control-allow-credentials')).toBe('true');
      const other = await preflight(mixed, 'https://anywhere.example', 'content-type');
      expect(other.headers.get('access-control-allow-origin')).toBe('*');
      expect(other.headers.get('access-control-allow-credentials')).toBeNull();
    });
  });

  it('normalises origins as browsers send them, and refuses what is not an origin', () => {
    expect(loadConfig({ ALLOWED_ORIGIN: 'http://LOCALHOST:3000/, https://app.example:443, *' }).allowedOrigins).toEqual([
      'http://localhost:3000',
      'https://app.example',
      '*',
    ]);
    for (const bad of ['localhost:3000', 'http://localhost:3000/app', 'null']) {
      expect(() => loadConfig({ ALLOWED_ORIGIN: bad }), bad).toThrow(ConfigError);
      expect(() => loadConfig({ ALLOWED_ORIGIN: bad }), bad).toThrow(/ALLOWED_ORIGIN .*not an origin/);
    }
  });
});
