import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { errorExcerpt, maskSecrets } from '../app/upstream/error-text.js';
import { call, capturingLogger, newSession, testApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';

/*
 * An upstream error reaches the client with its status and message, minus anything that looks
 * like a key; a body that is not OpenAI's error JSON only as a short cleaned excerpt. The log
 * keeps the status and the same cleaned text. A 404 tells the operator where to look.
 */

const mock = useMockUpstream();
const SERVER_KEY = 'server-own-key-CANARY-0b7d2e';
const KEYS = {
  openai: 'sk-proj-Q1w2E3r4T5y6U7i8O9p0AsDfGhJkL',
  legacy: 'sk-A1b2C3d4E5f6G7h8I9j0K1l2M3n4',
  bearer: 'eyJ0eXAiOiJKV1QiLCJhbGciOi.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl',
  opaque: 'tok_CANARY_9f8e7d6c5b4a',
};

function setup(env: Record<string, string> = {}) {
  const log = capturingLogger();
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, OPENAI_API_KEY: SERVER_KEY, ...env }, log.logger);
  const chat = (mockOptions: Record<string, unknown>, stream = false) =>
    call(app, 'POST', '/v1/chat/completions', {
      session: newSession(),
      body: { messages: [{ role: 'user', content: 'hi' }], stream, mock: mockOptions },
    });
  const upstreamLines = () =>
    log.lines.map((l) => JSON.parse(l)).filter((l) => l.msg === 'upstream answered an error');
  return { app, chat, log, upstreamLines };
}

const expectNoKeys = (text: string) => {
  for (const [name, key] of Object.entries({ ...KEYS, server: SERVER_KEY })) expect(text, name).not.toContain(key);
};

describe('upstream errors as the client and the log see them', () => {
  it.each([false, true])('masks keys in an OpenAI error message, keeping status, type and code (stream: %s)', async (stream) => {
    const { chat, log, upstreamLines } = setup();
    const message = `Incorrect API key provided: ${KEYS.openai}. Header was Bearer ${KEYS.bearer}; yours is ${SERVER_KEY}.`;
    const res = await chat({ fault: 'status', status: 401, error_body: { error: { message, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } } }, stream);
    expect(res.status).toBe(401);
    expect(res.json.error).toEqual({
      message: 'Incorrect API key provided: sk-***. Header was Bearer ***; yours is ***.',
      type: 'invalid_request_error',
      param: null,
      code: 'invalid_api_key',
    });
    expect(upstreamLines()).toEqual([
      expect.objectContaining({ level: 40, upstream_status: 401, upstream_error: 'Incorrect API key provided: sk-***. Header was Bearer ***; yours is ***.' }),
    ]);
    expectNoKeys(res.text);
    expectNoKeys(log.text());
  });

  it('quotes a body that is not JSON as a short excerpt: one line, control characters out, keys masked', async () => {
    const { chat, log, upstreamLines } = setup();
    const body = `<html>\r\n\u001b[31mGateway\u0000 error\u202e for key=${KEYS.opaque}\t${KEYS.legacy}\n${'padding '.repeat(300)}END-OF-BODY</html>`;
    const res = await chat({ fault: 'status', status: 502, error_body: body });
    expect(res.status).toBe(502);
    expect(res.json.error).toMatchObject({ type: 'upstream_error', code: 'upstream_502' });
    const message: string = res.json.error.message;
    expect(message).toMatch(/^The upstream provider answered 502: <html> \[31mGateway error for key=\*\*\* sk-\*\*\* padding padding/);
    expect(message).not.toContain('END-OF-BODY');
    expect(message).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    const excerpt = message.slice('The upstream provider answered 502: '.length);
    expect(Array.from(excerpt).length).toBeLessThanOrEqual(200);
    expect(excerpt.endsWith('…')).toBe(true);
    expect(upstreamLines()).toEqual([expect.objectContaining({ level: 40, upstream_status: 502, upstream_error: excerpt })]);
    expectNoKeys(res.text);
    expectNoKeys(log.text());
  });

  it('masks a key that straddles the excerpt cut', () => {
    const text = `${'x'.repeat(190)} ${KEYS.openai}`;
    const excerpt = errorExcerpt(text);
    expect(excerpt).not.toContain(KEYS.openai.slice(0, 12));
    expect(excerpt).toContain('sk-***');
  });

  it('masks keys in JSON that is not in OpenAI shape, and in its nested strings', async () => {
    const { chat } = setup();
    const res = await chat({ fault: 'status', status: 403, error_body: { detail: `forbidden for ${KEYS.openai}` } });
    expect(res.status).toBe(403);
    expect(res.json.error.message).toBe('The upstream provider answered 403: {"detail":"forbidden for sk-***"}');
    const nested = await chat({ fault: 'status', status: 400, error_body: { error: { message: 'bad', type: 'x', details: [{ header: `Bearer ${KEYS.opaque}` }] } } });
    expect(nested.json.error.details).toEqual([{ header: 'Bearer ***' }]);
    expectNoKeys(res.text + nested.text);
  });

  it('logs a refused request at info, an upstream fault at warn', async () => {
    const { chat, upstreamLines } = setup();
    await chat({ fault: 'status', status: 400, error_body: { error: { message: 'bad model parameter', type: 'invalid_request_error' } } });
    await chat({ fault: 'status', status: 429, error_body: { error: { message: 'slow down', type: 'rate_limit_error' } } });
    expect(upstreamLines().map((l) => [l.level, l.upstream_status])).toEqual([
      [30, 400],
      [40, 429],
    ]);
  });

  it.each([
    ['key=value', `see https://x.test/?key=${KEYS.opaque}&a=1`, 'see https://x.test/?key=***&a=1'],
    ['api_key in JSON', `{"api_key": "${KEYS.opaque}"}`, '{"api_key": "***"}'],
    ['Groq', 'gsk_0123456789abcdefghijABCDEFGHIJ', 'gsk-***'],
    ['Google', 'AIzaSyA-0123456789abcdefghijklmnopqrstu', 'AIza***'],
    ['a partly starred key', 'sk-proj-abc1**************************wxyz', 'sk-***'],
    ['words that only look alike', 'task-list desk-lamp max_tokens: 5 tokens', 'task-list desk-lamp max_tokens: 5 tokens'],
  ])('maskSecrets: %s', (_, text, masked) => {
    expect(maskSecrets(text)).toBe(masked);
  });
});

describe('a 404 from the upstream', () => {
  const mockRoot = () => mock.url.replace(/\/v1$/, '');

  it.each([false, true])('points at OPENAI_BASE_URL when its /v1 is missing (stream: %s)', async (stream) => {
    // The mock, like OpenAI, answers a wrong path with 404 and an OpenAI error ("Invalid URL").
    const { chat, upstreamLines } = setup({ OPENAI_BASE_URL: mockRoot() });
    const res = await chat({}, stream);
    expect(res.status).toBe(404);
    expect(res.json.error.message).toBe(
      'Invalid URL (POST /chat/completions) (the upstream answered 404 for /chat/completions; OPENAI_BASE_URL usually ends in /v1)',
    );
    expect(upstreamLines()[0]).toMatchObject({ level: 40, upstream_status: 404, upstream_url: `${mockRoot()}/chat/completions` });
  });

  it('adds the hint to a 404 that is not JSON', async () => {
    const { chat } = setup();
    const res = await chat({ fault: 'status', status: 404, error_body: 'Not Found' });
    expect(res.json.error.message).toBe(
      'The upstream provider answered 404: Not Found (the upstream answered 404 for /v1/chat/completions; OPENAI_BASE_URL usually ends in /v1)',
    );
  });

  it('says nothing of the URL when the 404 is about the model', async () => {
    const { chat } = setup();
    const error = { message: 'The model `gpt-9` does not exist or you do not have access to it.', type: 'invalid_request_error', param: null, code: 'model_not_found' };
    const res = await chat({ fault: 'status', status: 404, error_body: { error } });
    expect(res.json).toEqual({ error });
  });

  it('names only the host of an unreachable upstream, never its query string', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    await new Promise((r) => server.close(r));
    const { chat, log } = setup({ OPENAI_BASE_URL: `http://127.0.0.1:${port}/v1?key=${KEYS.opaque}` });
    const res = await chat({});
    expect(res.status).toBe(502);
    expect(res.json.error).toMatchObject({ code: 'upstream_unreachable', message: expect.stringContaining(`upstream provider at 127.0.0.1:${port} (ECONNREFUSED)`) });
    expectNoKeys(res.text);
    expectNoKeys(log.text());
  });

  it('keeps the query string of OPENAI_BASE_URL out of what the client sees', async () => {
    const { chat, log } = setup({ OPENAI_BASE_URL: `${mockRoot()}?key=${KEYS.opaque}` });
    const res = await chat({});
    expect(res.status).toBe(404);
    expect(res.json.error.message).toContain('OPENAI_BASE_URL usually ends in /v1');
    // The endpoint keeps its query string: the key reached the upstream, and nothing else.
    expect(mock.requests.at(-1)!.path).toBe(`/chat/completions?key=${KEYS.opaque}`);
    expectNoKeys(res.text);
    expectNoKeys(log.text());
  });
});
