import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { call, newSession, testApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { testStore, type TestStore } from './helpers/dialects.js';

/*
 * What one chat request may spend on the operator's key: MODEL_ALLOWLIST, MAX_OUTPUT_TOKENS
 * (with MAX_OUTPUT_TOKENS_FIELD) and MAX_CHOICES. A request over a limit gets a 400 naming the
 * field and the limit, and neither reaches the upstream nor is recorded.
 */

const mock = useMockUpstream();
const ask = (extra: Record<string, unknown> = {}) => ({ messages: [{ role: 'user', content: 'Hi' }], ...extra });

/** A pure proxy to the mock with these settings. */
const proxy = (env: Record<string, string> = {}) => testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, ...env });

/** Sends a chat completion and returns the response with what the upstream received (null: nothing). */
async function send(app: ReturnType<typeof proxy>, body: Record<string, unknown>) {
  const before = mock.requests.length;
  const res = await call(app, 'POST', '/v1/chat/completions', { session: newSession(), body });
  return { ...res, forwarded: mock.requests.length > before ? (mock.requests.at(-1)!.body as Record<string, unknown>) : null };
}

function expectRefused(res: Awaited<ReturnType<typeof send>>, param: string, message: RegExp, code = 'invalid_value') {
  expect(res.status).toBe(400);
  expect(res.json).toEqual({ error: { type: 'invalid_request_error', code, param, message: expect.stringMatching(message) } });
  expect(res.forwarded).toBeNull();
}

describe('MODEL_ALLOWLIST', () => {
  const app = () => proxy({ MODEL_ALLOWLIST: 'gpt-4.1*, gpt-4o-mini', DEFAULT_MODEL: 'gpt-4.1-mini' });

  it.each(['gpt-4.1', 'gpt-4.1-nano', 'gpt-4.1-2025-04-14', 'gpt-4o-mini'])('lets %s through', async (model) => {
    const res = await send(app(), ask({ model }));
    expect(res.status).toBe(200);
    expect(res.forwarded).toMatchObject({ model });
  });

  it('lets a request without a model through with DEFAULT_MODEL', async () => {
    const res = await send(app(), ask());
    expect(res.status).toBe(200);
    expect(res.forwarded).toMatchObject({ model: 'gpt-4.1-mini' });
  });

  it.each(['gpt-4o', 'gpt-4o-mini-2024-07-18', 'GPT-4.1', 'my-gpt-4.1', 'o3', '*'])('refuses %s, naming `model` and the allowed list', async (model) => {
    for (const stream of [false, true]) {
      const res = await send(app(), ask({ model, stream }));
      expectRefused(res, 'model', /is not available on this server\. Allowed models: gpt-4\.1\*, gpt-4o-mini\.$/, 'model_not_allowed');
      expect(res.json.error.message).toContain(JSON.stringify(model));
    }
  });

  it('refuses a very long name without echoing all of it, and stays fast on patterns that would backtrack', async () => {
    const patterns = proxy({ MODEL_ALLOWLIST: '*a*a*a*a*a*a*b,gpt-4.1-mini' });
    const long = 'a'.repeat(100_000);
    const started = performance.now();
    const res = await send(patterns, ask({ model: long }));
    expectRefused(res, 'model', /^The model "a{100}…" is not available/, 'model_not_allowed');
    const near = await send(patterns, ask({ model: 'a'.repeat(250) }));
    expectRefused(near, 'model', /not available/, 'model_not_allowed');
    expect(performance.now() - started).toBeLessThan(1_000);
    expect((await send(patterns, ask({ model: 'xaaaaaaaaaab' }))).status).toBe(200);
  });

  it('lets any model through when unset', async () => {
    const res = await send(proxy(), ask({ model: 'anything-at-all' }));
    expect(res.status).toBe(200);
    expect(res.forwarded).toMatchObject({ model: 'anything-at-all' });
  });
});

describe('MAX_OUTPUT_TOKENS', () => {
  it('sets max_tokens to the cap (8192 by default) when the request sets no limit', async () => {
    expect((await send(proxy(), ask())).forwarded).toMatchObject({ max_tokens: 8192 });
    const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask({ stream: true }));
    expect(res.status).toBe(200);
    expect(res.text).toContain('[DONE]');
    expect(res.forwarded).toMatchObject({ max_tokens: 1000 });
    expect(res.forwarded).not.toHaveProperty('max_completion_tokens');
  });

  it('sets max_completion_tokens instead with MAX_OUTPUT_TOKENS_FIELD=max_completion_tokens', async () => {
    const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000', MAX_OUTPUT_TOKENS_FIELD: 'max_completion_tokens' }), ask());
    expect(res.forwarded).toMatchObject({ max_completion_tokens: 1000 });
    expect(res.forwarded).not.toHaveProperty('max_tokens');
  });

  it('replaces a null limit (no limit, to OpenAI) with the cap', async () => {
    expect((await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask({ max_tokens: null }))).forwarded).toMatchObject({ max_tokens: 1000 });
    const other = await send(proxy({ MAX_OUTPUT_TOKENS: '1000', MAX_OUTPUT_TOKENS_FIELD: 'max_completion_tokens' }), ask({ max_tokens: null }));
    expect(other.forwarded).toMatchObject({ max_completion_tokens: 1000 });
    expect(other.forwarded).not.toHaveProperty('max_tokens');
  });

  it.each([
    [{ max_tokens: 1 }],
    [{ max_tokens: 1000 }],
    [{ max_completion_tokens: 1000 }],
    [{ max_tokens: 500, max_completion_tokens: 700 }],
  ])('passes %j within the cap unchanged, adding nothing', async (limits) => {
    const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask(limits));
    expect(res.status).toBe(200);
    expect(res.forwarded).toEqual({ ...ask(limits), model: 'gpt-4.1-mini' });
  });

  it.each([
    ['max_tokens', 1001],
    ['max_tokens', 100_000],
    ['max_completion_tokens', 100_000],
  ])('refuses %s: %i over the cap, naming the field and the limit', async (field, value) => {
    for (const stream of [false, true]) {
      const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask({ [field]: value, stream }));
      expectRefused(res, field, new RegExp(`^Invalid body '${field}': ${value} is more than this server allows; at most 1000 \\(MAX_OUTPUT_TOKENS\\)\\.$`));
    }
  });

  it('refuses one field over the cap even when the other is within it', async () => {
    const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask({ max_tokens: 10, max_completion_tokens: 5000 }));
    expectRefused(res, 'max_completion_tokens', /at most 1000/);
  });

  it.each(['100000', 10.5, true, [1]])('refuses a limit that is not a whole number (%j), which some servers would coerce', async (value) => {
    const res = await send(proxy({ MAX_OUTPUT_TOKENS: '1000' }), ask({ max_tokens: value }));
    expectRefused(res, 'max_tokens', /^Invalid body 'max_tokens': must be a whole number\.$/);
  });

  it('leaves the limits to the client and the upstream with MAX_OUTPUT_TOKENS=0', async () => {
    const app = proxy({ MAX_OUTPUT_TOKENS: '0' });
    expect((await send(app, ask())).forwarded).toEqual({ ...ask(), model: 'gpt-4.1-mini' });
    const big = await send(app, ask({ max_tokens: 100_000 }));
    expect(big.status).toBe(200);
    expect(big.forwarded).toMatchObject({ max_tokens: 100_000 });
  });
});

describe('MAX_CHOICES', () => {
  it('allows one choice by default and refuses more, naming `n` and the limit', async () => {
    expect((await send(proxy(), ask({ n: 1 }))).status).toBe(200);
    const res = await send(proxy(), ask({ n: 2 }));
    expectRefused(res, 'n', /^Invalid body 'n': 2 is more than this server allows; at most 1 \(MAX_CHOICES\)\.$/);
    // The request: every limit exceeded at once is still refused.
    expect((await send(proxy(), ask({ n: 128, max_tokens: 100_000, stream: true }))).status).toBe(400);
  });

  it('allows up to MAX_CHOICES, adds nothing when n is absent, and refuses a non-number', async () => {
    const app = proxy({ MAX_CHOICES: '4' });
    const four = await send(app, ask({ n: 4 }));
    expect(four.status).toBe(200);
    expect(four.forwarded).toMatchObject({ n: 4 });
    expect((await send(app, ask())).forwarded).not.toHaveProperty('n');
    expectRefused(await send(app, ask({ n: 128 })), 'n', /at most 4 \(MAX_CHOICES\)/);
    expectRefused(await send(app, ask({ n: '2' })), 'n', /must be a whole number/);
  });
});

describe('with persistence on', () => {
  let db: TestStore;
  beforeAll(async () => {
    db = await testStore('sqlite');
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it.each([
    ['a model not allowed', { model: 'gpt-4o' }],
    ['too many output tokens', { max_tokens: 100_000 }],
    ['too many choices', { n: 3 }],
  ])('records nothing for %s', async (_, extra) => {
    const app = testApp(db.store, { OPENAI_BASE_URL: mock.url, MODEL_ALLOWLIST: 'gpt-4.1*', MAX_OUTPUT_TOKENS: '1000' });
    const session = newSession();
    for (const stream of [false, true]) {
      const res = await call(app, 'POST', '/v1/chat/completions', { session, body: ask({ ...extra, stream }) });
      expect(res.status).toBe(400);
      expect(res.headers.get('x-conversation-id')).toBeNull();
    }
    expect((await call(app, 'GET', '/v1/conversations', { session })).json.items).toEqual([]);
    expect(mock.requests).toHaveLength(0);
  });
});

describe('configuration', () => {
  it('has the documented defaults', () => {
    expect(loadConfig({}).chatLimits).toEqual({
      modelAllowlist: null,
      maxOutputTokens: 8192,
      maxOutputTokensField: 'max_tokens',
      maxChoices: 1,
    });
    expect(loadConfig({ MODEL_ALLOWLIST: ' gpt-4.1* ,, gpt-4o-mini ' }).chatLimits.modelAllowlist).toEqual(['gpt-4.1*', 'gpt-4o-mini']);
  });

  it('refuses a DEFAULT_MODEL outside MODEL_ALLOWLIST at start-up, naming both', () => {
    for (const env of [{ MODEL_ALLOWLIST: 'gpt-4o*' }, { MODEL_ALLOWLIST: 'gpt-4o*', DEFAULT_MODEL: 'gpt-4.1' }]) {
      expect(() => loadConfig(env)).toThrow(ConfigError);
      expect(() => loadConfig(env)).toThrow(/DEFAULT_MODEL.*"gpt-4\.1(-mini)?" is not in MODEL_ALLOWLIST \(gpt-4o\*\)/);
    }
    expect(loadConfig({ MODEL_ALLOWLIST: 'gpt-4o*', DEFAULT_MODEL: 'gpt-4o-mini' }).upstream.defaultModel).toBe('gpt-4o-mini');
  });

  it.each([
    ['MODEL_ALLOWLIST', ' , ', /MODEL_ALLOWLIST .*must be model names \(no spaces\) separated by commas/],
    ['MODEL_ALLOWLIST', 'gpt 4', /MODEL_ALLOWLIST/],
    ['MAX_OUTPUT_TOKENS', '-1', /MAX_OUTPUT_TOKENS .*whole number from 0/],
    ['MAX_OUTPUT_TOKENS', 'lots', /MAX_OUTPUT_TOKENS/],
    ['MAX_OUTPUT_TOKENS_FIELD', 'max_output_tokens', /MAX_OUTPUT_TOKENS_FIELD .*must be max_tokens or max_completion_tokens/],
    ['MAX_CHOICES', '0', /MAX_CHOICES .*whole number from 1 to 128/],
    ['MAX_CHOICES', '129', /MAX_CHOICES/],
  ])('stops on a bad %s (%j), naming it', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });
});
