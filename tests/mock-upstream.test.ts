import net from 'node:net';
import { describe, it, expect, beforeAll, afterAll, beforeEach } from 'vitest';
import OpenAI from 'openai';
import { startMockUpstream, mockAnswer, MOCK_TOOL_CALL, type MockOptions, type MockUpstream } from '../mock/upstream.js';
import { waitFor } from './helpers/streams.js';

let mock: MockUpstream;

beforeAll(async () => {
  mock = await startMockUpstream();
});
afterAll(async () => {
  await mock.close();
});
beforeEach(() => mock.reset());

const messages = [{ role: 'user', content: 'hello world!' }]; // 12 chars -> 3 prompt tokens

function post(body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(`${mock.url}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer test' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...init,
  });
}

/** Raw `data:` payloads of an SSE body, in order. */
function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((e) => e.length > 0)
    .map((e) => {
      expect(e.startsWith('data: ')).toBe(true);
      return e.slice('data: '.length);
    });
}

function contentOf(events: any[]): string {
  return events.map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
}

/** Read a body as far as it goes; never throws. */
async function readAll(res: Response): Promise<{ text: string; error: unknown }> {
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = '';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
    return { text: text + dec.decode(), error: undefined };
  } catch (error) {
    return { text, error };
  }
}

const normalize = (s: string): string =>
  s.replace(/chatcmpl-mock-\d+/g, 'ID').replace(/"created":\d+/g, '"created":0');

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

describe('mockAnswer', () => {
  it('is deterministic, chunk_size code points per chunk, with multi-byte characters', () => {
    const a = mockAnswer({ chunks: 10, chunk_size: 9 });
    expect(a).toBe(mockAnswer({ chunks: 10, chunk_size: 9 }));
    expect(Array.from(a)).toHaveLength(90);
    expect(a).toMatch(/é/);
    expect(a).toMatch(/漢/);
    expect(a).toMatch(/🙂/);
    expect(a).toMatch(/ /);
    expect(mockAnswer({})).toHaveLength(64);
    expect(mockAnswer({ text: 'exact' })).toBe('exact');
    expect(mockAnswer({ tool_calls: true })).toBe('');
  });
});

describe('non-streaming', () => {
  it('returns an OpenAI chat.completion with usage and records the request', async () => {
    const res = await post({ model: 'gpt-x', messages, mock: { chunks: 3, chunk_size: 5 } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const j: any = await res.json();
    expect(j.id).toMatch(/^chatcmpl-mock-\d+$/);
    expect(j.object).toBe('chat.completion');
    expect(typeof j.created).toBe('number');
    expect(j.model).toBe('gpt-x');
    expect(j.choices).toEqual([
      { index: 0, message: { role: 'assistant', content: mockAnswer({ chunks: 3, chunk_size: 5 }) }, finish_reason: 'stop' },
    ]);
    expect(j.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });

    expect(mock.requests).toHaveLength(1);
    const r = mock.requests[0]!;
    expect(r.method).toBe('POST');
    expect(r.path).toBe('/v1/chat/completions');
    expect(r.headers['authorization']).toBe('Bearer test');
    expect(r.body.messages).toEqual(messages);
    expect(r.body.mock).toEqual({ chunks: 3, chunk_size: 5 });
  });

  it('defaults model to mock-model and prompt_tokens to at least 1', async () => {
    const j: any = await (await post({ messages: [] })).json();
    expect(j.model).toBe('mock-model');
    expect(j.usage.prompt_tokens).toBe(1);
    expect(j.choices[0].message.content).toBe(mockAnswer({}));
  });

  it('answers tool calls with content null', async () => {
    const j: any = await (await post({ messages, mock: { tool_calls: true } })).json();
    expect(j.choices[0].finish_reason).toBe('tool_calls');
    expect(j.choices[0].message).toEqual({
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'call_mock_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }],
    });
  });

  it('uses server defaults under per-request options, and reset clears them', async () => {
    mock.defaults.chunks = 2;
    mock.defaults.chunk_size = 3;
    let j: any = await (await post({ messages, mock: { chunk_size: 4 } })).json();
    expect(j.choices[0].message.content).toBe(mockAnswer({ chunks: 2, chunk_size: 4 }));
    mock.reset();
    expect(mock.defaults).toEqual({});
    expect(mock.requests).toHaveLength(0);
    j = await (await post({ messages })).json();
    expect(j.choices[0].message.content).toBe(mockAnswer({}));
  });

  it('rejects invalid JSON with a 400 OpenAI error and still records it', async () => {
    const res = await post('{nope');
    expect(res.status).toBe(400);
    const j: any = await res.json();
    expect(j.error.type).toBe('invalid_request_error');
    expect(mock.requests[0]!.body).toBe('{nope');
  });
});

describe('streaming', () => {
  it('streams role chunk, content chunks, finish chunk and [DONE]', async () => {
    const opts: MockOptions = { chunks: 7, chunk_size: 11 };
    const res = await post({ model: 'm1', messages, stream: true, mock: opts });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const data = sseData(await res.text());
    expect(data.at(-1)).toBe('[DONE]');
    const events = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(events).toHaveLength(1 + 7 + 1);
    for (const e of events) {
      expect(e.object).toBe('chat.completion.chunk');
      expect(e.model).toBe('m1');
      expect(e.id).toBe(events[0].id);
      expect('usage' in e).toBe(false);
    }
    expect(events[0].choices[0]).toEqual({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null });
    expect(events.at(-1).choices[0]).toEqual({ index: 0, delta: {}, finish_reason: 'stop' });
    for (const e of events.slice(1, -1)) expect(Array.from(e.choices[0].delta.content)).toHaveLength(11);
    expect(contentOf(events)).toBe(mockAnswer(opts));
  });

  it('splits explicit text by code points without breaking surrogate pairs', async () => {
    const opts: MockOptions = { text: 'a🙂b🙂🙂c漢é', chunks: 3 };
    const data = sseData(await (await post({ messages, stream: true, mock: opts })).text());
    const events = data.slice(0, -1).map((d) => JSON.parse(d));
    const pieces = events.slice(1, -1).map((e) => e.choices[0].delta.content as string);
    expect(pieces).toHaveLength(3);
    for (const p of pieces) expect(loneSurrogate.test(p)).toBe(false);
    expect(pieces.join('')).toBe(opts.text);
    expect(mockAnswer(opts)).toBe(opts.text);
  });

  it('sends usage:null on every chunk and a final usage chunk with include_usage', async () => {
    const res = await post({ messages, stream: true, stream_options: { include_usage: true }, mock: { chunks: 4 } });
    const data = sseData(await res.text());
    expect(data.at(-1)).toBe('[DONE]');
    const events = data.slice(0, -1).map((d) => JSON.parse(d));
    const last = events.at(-1);
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    for (const e of events.slice(0, -1)) expect(e.usage).toBeNull();
    expect(events.at(-2).choices[0].finish_reason).toBe('stop');
  });

  it('forces usage with the usage option', async () => {
    const data = sseData(await (await post({ messages, stream: true, mock: { usage: true } })).text());
    expect(JSON.parse(data.at(-2)!).usage.completion_tokens).toBe(8);
    const off = sseData(
      await (await post({ messages, stream: true, stream_options: { include_usage: true }, mock: { usage: false } })).text(),
    );
    expect(off.some((d) => d.includes('"usage"'))).toBe(false);
  });

  it('streams a tool call split over several deltas', async () => {
    const data = sseData(await (await post({ messages, stream: true, mock: { tool_calls: true, chunks: 4 } })).text());
    expect(data.at(-1)).toBe('[DONE]');
    const events = data.slice(0, -1).map((d) => JSON.parse(d));
    expect(events[0].choices[0].delta.role).toBe('assistant');
    const calls = events.flatMap((e) => e.choices[0].delta.tool_calls ?? []);
    expect(calls.length).toBeGreaterThan(2);
    expect(calls[0]).toMatchObject({ index: 0, id: 'call_mock_1', type: 'function', function: { name: 'get_weather' } });
    for (const c of calls) expect(c.index).toBe(0);
    expect(calls.map((c: any) => c.function.arguments).join('')).toBe(MOCK_TOOL_CALL.arguments);
    expect(JSON.parse(MOCK_TOOL_CALL.arguments)).toEqual({ city: 'Paris' });
    expect(events.at(-1).choices[0].finish_reason).toBe('tool_calls');
    expect(contentOf(events)).toBe('');
  });

  it('paces chunks with delay_ms and first_byte_delay_ms', async () => {
    const t0 = Date.now();
    const res = await post({ messages, stream: true, mock: { chunks: 3, delay_ms: 25, first_byte_delay_ms: 60 } });
    const tHeaders = Date.now() - t0;
    const text = await res.text();
    const total = Date.now() - t0;
    expect(tHeaders).toBeGreaterThanOrEqual(55);
    // 1 role + 3 content + finish + [DONE] = 6 writes -> 5 gaps
    expect(total).toBeGreaterThanOrEqual(60 + 5 * 25 - 10);
    expect(contentOf(sseData(text).slice(0, -1).map((d) => JSON.parse(d)))).toBe(mockAnswer({ chunks: 3 }));
  });

  it('survives a client disconnecting mid-stream', async () => {
    const ac = new AbortController();
    const res = await post({ messages, stream: true, mock: { chunks: 50, delay_ms: 10 } }, { signal: ac.signal });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await expect(reader.read()).rejects.toThrow();
    // Once the mock has seen the client go (the response closed, its timer stopped), it must still answer.
    await waitFor(() => mock.traffic.ended === mock.traffic.received);
    const j: any = await (await post({ messages })).json();
    expect(j.choices[0].message.content).toBe(mockAnswer({}));
  });
});

describe('faults', () => {
  it('drop (stream): socket destroyed after drop_after chunks, no [DONE]', async () => {
    const opts: MockOptions = { chunks: 6, fault: 'drop', drop_after: 2 };
    const res = await post({ messages, stream: true, mock: opts });
    expect(res.status).toBe(200);
    const { text, error } = await readAll(res);
    expect(text).not.toContain('[DONE]');
    expect(error).toBeDefined();
    const events = sseData(text).map((d) => JSON.parse(d));
    expect(contentOf(events)).toBe(mockAnswer({ chunks: 6 }).slice(0, 16));
  });

  it('drop (stream) defaults to half the chunks', async () => {
    const { text } = await readAll(await post({ messages, stream: true, mock: { fault: 'drop' } }));
    const events = sseData(text).map((d) => JSON.parse(d));
    expect(events).toHaveLength(1 + 4);
  });

  it('drop (non-stream): headers then a truncated body', async () => {
    const res = await post({ messages, mock: { fault: 'drop' } });
    expect(res.status).toBe(200);
    await expect(res.json()).rejects.toThrow();
  });

  it('status: default OpenAI error JSON with 500', async () => {
    const res = await post({ messages, stream: true, mock: { fault: 'status' } });
    expect(res.status).toBe(500);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ error: { message: 'mock failure', type: 'server_error', code: null } });
  });

  it('status: custom code with empty, string and object bodies', async () => {
    let res = await post({ messages, mock: { fault: 'status', status: 429, error_body: null } });
    expect(res.status).toBe(429);
    expect(await res.text()).toBe('');
    res = await post({ messages, mock: { fault: 'status', status: 502, error_body: 'Bad gateway <html>' } });
    expect(res.status).toBe(502);
    expect(res.headers.get('content-type')).toBe('text/plain');
    expect(await res.text()).toBe('Bad gateway <html>');
    res = await post({ messages, mock: { fault: 'status', status: 400, error_body: { error: { message: 'x' } } } });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: { message: 'x' } });
  });

  it('malformed: one unparsable event after malformed_after chunks, then the normal rest', async () => {
    const opts: MockOptions = { chunks: 4, fault: 'malformed', malformed_after: 2 };
    const text = await (await post({ messages, stream: true, mock: opts })).text();
    expect(text).toContain('data: {not json\n\n');
    const data = sseData(text);
    expect(data.at(-1)).toBe('[DONE]');
    const bad = data.indexOf('{not json');
    expect(bad).toBe(1 + 2);
    const events = data.filter((d) => d !== '{not json' && d !== '[DONE]').map((d) => JSON.parse(d));
    expect(contentOf(events)).toBe(mockAnswer(opts));
  });

  it('malformed (non-stream): unparsable JSON body', async () => {
    const res = await post({ messages, mock: { fault: 'malformed' } });
    expect(res.status).toBe(200);
    await expect(res.json()).rejects.toThrow();
  });

  it('hang: never answers; client abort ends it', async () => {
    const t0 = Date.now();
    await expect(post({ messages, stream: true, mock: { fault: 'hang' } }, { signal: AbortSignal.timeout(150) })).rejects.toThrow();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(140);
    expect(mock.requests).toHaveLength(1);
  });

  it('hang_after_first: headers and the first chunk, then nothing', async () => {
    const ac = new AbortController();
    const res = await post({ messages, stream: true, mock: { fault: 'hang_after_first' } }, { signal: ac.signal });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    while (!text.includes(mockAnswer({ chunks: 1 }))) text += dec.decode((await reader.read()).value);
    const timer = setTimeout(() => ac.abort(), 150);
    await expect(reader.read()).rejects.toThrow();
    clearTimeout(timer);
    const events = sseData(text).map((d) => JSON.parse(d));
    expect(events).toHaveLength(2);
    expect(contentOf(events)).toBe(mockAnswer({ chunks: 1 }));
  });

  it('reset: fetch rejects without a response', async () => {
    await expect(post({ messages, stream: true, mock: { fault: 'reset' } })).rejects.toThrow();
    await expect(post({ messages, mock: { fault: 'reset', first_byte_delay_ms: 20 } })).rejects.toThrow();
  });

  it('faults from defaults apply to chat completions but not /v1/models', async () => {
    mock.defaults.fault = 'status';
    expect((await post({ messages })).status).toBe(500);
    expect((await fetch(`${mock.url}/models`)).status).toBe(200);
    expect((await post({ messages, mock: { fault: undefined, chunks: 1 } })).status).toBe(500); // undefined is not sent
  });
});

describe('split_bytes', () => {
  it('produces byte-identical output to the unsplit stream', async () => {
    const base = { chunks: 6, chunk_size: 13 };
    const body = { messages, stream: true, stream_options: { include_usage: true } };
    const whole = await (await post({ ...body, mock: base })).arrayBuffer();
    for (const split of [1, 3, 5]) {
      const pieces = await (await post({ ...body, mock: { ...base, split_bytes: split } })).arrayBuffer();
      expect(normalize(Buffer.from(pieces).toString())).toBe(normalize(Buffer.from(whole).toString()));
    }
    expect(normalize(Buffer.from(whole).toString())).toMatch(/漢|🙂/);
  });

  it('really writes pieces of that many bytes (seen as HTTP chunk frames on the wire)', async () => {
    const payload = JSON.stringify({ messages, stream: true, mock: { chunks: 3, split_bytes: 7 } });
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(mock.port, '127.0.0.1');
      const parts: Buffer[] = [];
      s.on('data', (d) => parts.push(d));
      s.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
      s.on('error', reject);
      s.write(
        `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`,
      );
    });
    const bodyStart = raw.indexOf('\r\n\r\n') + 4;
    expect(raw.slice(0, bodyStart).toLowerCase()).toContain('transfer-encoding: chunked');
    let rest = raw.slice(bodyStart);
    const sizes: number[] = [];
    for (;;) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.slice(0, nl), 16);
      if (size === 0) break;
      sizes.push(size);
      rest = rest.slice(nl + 2 + size + 2);
    }
    expect(sizes.length).toBeGreaterThan(10);
    expect(sizes.slice(0, -1).every((n) => n === 7)).toBe(true);
    expect(sizes.at(-1)).toBeLessThanOrEqual(7);
  });
});

describe('other endpoints', () => {
  it('GET /v1/models', async () => {
    const res = await fetch(`${mock.url}/models`);
    expect(res.status).toBe(200);
    const j: any = await res.json();
    expect(j.object).toBe('list');
    expect(j.data).toHaveLength(1);
    expect(j.data[0]).toMatchObject({ id: 'mock-model', object: 'model', owned_by: 'mock' });
    expect(typeof j.data[0].created).toBe('number');
    expect(mock.requests[0]).toMatchObject({ method: 'GET', path: '/v1/models' });
  });

  it('404 OpenAI-shaped error for anything else', async () => {
    for (const [method, path] of [['GET', '/v1/nope'], ['GET', '/v1/chat/completions'], ['POST', '/v2/x']] as const) {
      const res = await fetch(`http://127.0.0.1:${mock.port}${path}`, { method, body: method === 'POST' ? '{}' : undefined });
      expect(res.status).toBe(404);
      const j: any = await res.json();
      expect(typeof j.error.message).toBe('string');
    }
  });
});

describe('server lifecycle', () => {
  it('record:false records nothing; close() ends hung connections', async () => {
    const m = await startMockUpstream({ record: false, defaults: { fault: 'hang' } });
    const pending = fetch(`${m.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ messages }) });
    const hung = pending.then(
      () => 'resolved',
      () => 'rejected',
    );
    // Hung inside the mock (and, unrecorded, in no list) before close() is asked to end it.
    await waitFor(() => m.traffic.received === 1);
    expect(m.traffic.ended).toBe(0);
    const t0 = Date.now();
    await m.close();
    expect(Date.now() - t0).toBeLessThan(500);
    expect(await hung).toBe('rejected');
    expect(m.requests).toHaveLength(0);
    await m.close(); // idempotent
  });

  it('reset() restores the start-up defaults', async () => {
    const m = await startMockUpstream({ defaults: { chunks: 2 } });
    try {
      m.defaults.chunks = 5;
      m.defaults.fault = 'reset';
      m.reset();
      expect(m.defaults).toEqual({ chunks: 2 });
      const j: any = await (await fetch(`${m.url}/chat/completions`, { method: 'POST', body: JSON.stringify({ messages }) })).json();
      expect(j.choices[0].message.content).toBe(mockAnswer({ chunks: 2 }));
    } finally {
      await m.close();
    }
  });
});

describe('official openai SDK', () => {
  it('chat.completions.create non-streaming, passing mock through the body', async () => {
    const client = new OpenAI({ baseURL: mock.url, apiKey: 'x', maxRetries: 0 });
    const opts: MockOptions = { chunks: 3, chunk_size: 6 };
    const r = await client.chat.completions.create({
      model: 'sdk-model',
      messages: [{ role: 'user', content: 'hi' }],
      mock: opts,
    } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming);
    expect(r.choices[0]!.message.content).toBe(mockAnswer(opts));
    expect(r.usage?.completion_tokens).toBe(3);
    expect(mock.requests[0]!.body.mock).toEqual(opts);
    expect(mock.requests[0]!.headers['authorization']).toBe('Bearer x');
  });

  it('chat.completions.create streaming with include_usage', async () => {
    const client = new OpenAI({ baseURL: mock.url, apiKey: 'x', maxRetries: 0 });
    const opts: MockOptions = { chunks: 5, chunk_size: 7, split_bytes: 9 };
    const stream = await client.chat.completions.create({
      model: 'sdk-model',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
      stream_options: { include_usage: true },
      mock: opts,
    } as OpenAI.Chat.ChatCompletionCreateParamsStreaming);
    let text = '';
    let usage: OpenAI.CompletionUsage | null | undefined;
    let finish: string | null | undefined;
    for await (const c of stream) {
      text += c.choices[0]?.delta.content ?? '';
      finish ??= c.choices[0]?.finish_reason;
      if (c.usage) usage = c.usage;
    }
    expect(text).toBe(mockAnswer(opts));
    expect(finish).toBe('stop');
    expect(usage).toEqual({ prompt_tokens: 1, completion_tokens: 5, total_tokens: 6 });
  });

  it('SDK surfaces status faults as APIError', async () => {
    const client = new OpenAI({ baseURL: mock.url, apiKey: 'x', maxRetries: 0 });
    await expect(
      client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }],
        mock: { fault: 'status', status: 503 },
      } as OpenAI.Chat.ChatCompletionCreateParamsNonStreaming),
    ).rejects.toMatchObject({ status: 503 });
  });
});
