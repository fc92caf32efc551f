import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { normalizeMock, readChunks, streamedContent, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();

describe.each(dialects)('token accounting on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;
  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const chat = (session: string, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
    app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session, ...headers },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'How many tokens is this?' }], ...body }),
    });
  const answerOf = (id: string, session: string) =>
    waitFor(async () => {
      const c = (await call(app, 'GET', `/v1/conversations/${id}`, { session })).json;
      const m = c.messages?.at(-1);
      return m?.role === 'assistant' && m.status !== 'streaming' ? { conversation: c, answer: m } : null;
      // The tokenizer loads on first use, which takes a while on a busy machine.
    }, 20_000);

  it('asks the upstream for usage but gives the client exactly the stream it asked for', async () => {
    const session = newSession();
    const res = await chat(session, { stream: true, mock: { chunks: 9 } });
    const { text } = await readChunks(res.body!);
    expect(mock.requests.at(-1)!.body.stream_options).toEqual({ include_usage: true });
    expect(text).not.toContain('usage');
    // Same as what the upstream sends a client that did not ask for usage.
    const plain = await fetch(`${mock.url}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: 'x' }], stream: true, mock: { chunks: 9 } }),
    });
    expect(normalizeMock(text)).toBe(normalizeMock(await plain.text()));
    const { answer, conversation } = await answerOf(res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ tokens_out: 9, tokens_source: 'provider' });
    expect(answer.tokens_in).toBeGreaterThan(0);
    expect(conversation.usage).toEqual({ tokens_in: answer.tokens_in, tokens_out: 9 });
  });

  it('passes usage through when the client asked for it', async () => {
    const session = newSession();
    const res = await chat(session, { stream: true, stream_options: { include_usage: true } });
    const { text } = await readChunks(res.body!);
    expect(text).toContain('"choices":[],"usage":{');
    const { answer } = await answerOf(res.headers.get('x-conversation-id')!, session);
    expect(answer.tokens_source).toBe('provider');
  });

  it('estimates with a tokenizer when the upstream reports no usage, streaming and not', async () => {
    for (const stream of [true, false]) {
      const session = newSession();
      const res = await chat(session, { stream, mock: { usage: false, text: 'Hello there, how are you today?', chunks: 4 } });
      await res.text();
      const { answer, conversation } = await answerOf(res.headers.get('x-conversation-id')!, session);
      expect(answer.tokens_source).toBe('estimated');
      // o200k_base: "Hello there, how are you today?" is 8 tokens.
      expect(answer.tokens_out).toBe(8);
      expect(answer.tokens_in).toBeGreaterThan(5);
      expect(conversation.usage).toEqual({ tokens_in: answer.tokens_in, tokens_out: 8 });
    }
  });

  it('estimates what was generated when a stream is cut short', async () => {
    const session = newSession();
    const res = await chat(session, { stream: true, mock: { fault: 'drop', chunks: 20, drop_after: 6, delay_ms: 5 } });
    const { text } = await readChunks(res.body!);
    const { answer } = await answerOf(res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'error', tokens_source: 'estimated' });
    expect(answer.content).toBe(streamedContent(text));
    expect(answer.tokens_out).toBeGreaterThan(0);

    const aborted = await chat(session, { stream: true, mock: { chunks: 200, delay_ms: 10 } });
    const reader = aborted.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    const cut = (await answerOf(aborted.headers.get('x-conversation-id')!, session)).answer;
    expect(cut).toMatchObject({ status: 'error', finish_reason: 'client_abort', tokens_source: 'estimated' });
    expect(cut.tokens_in).toBeGreaterThan(0);
    expect(cut.tokens_out).not.toBeNull();
  });

  it('sums known counts per conversation and leaves unknown ones null, never 0', async () => {
    const session = newSession();
    const first = await chat(session, { stream: true });
    const id = first.headers.get('x-conversation-id')!;
    await readChunks(first.body!);
    const a1 = (await answerOf(id, session)).answer;
    const second = await chat(session, { messages: [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }, { role: 'user', content: 'Q2' }] }, { 'x-conversation-id': id });
    await second.text();
    const { conversation } = await answerOf(id, session);
    const a2 = conversation.messages.at(-1);
    expect(conversation.usage).toEqual({ tokens_in: a1.tokens_in + a2.tokens_in, tokens_out: a1.tokens_out + a2.tokens_out });
    const listed = (await call(app, 'GET', '/v1/conversations', { session })).json.items.find((c: any) => c.id === id);
    expect(listed.usage).toEqual(conversation.usage);
    // Messages the user wrote carry no counts; a conversation of only those has none known.
    const empty = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
    await call(app, 'POST', `/v1/conversations/${empty.id}/messages`, { session, body: { role: 'user', content: 'hi' } });
    const got = (await call(app, 'GET', `/v1/conversations/${empty.id}`, { session })).json;
    expect(got.usage).toEqual({ tokens_in: null, tokens_out: null });
    expect(got.messages[0]).toMatchObject({ tokens_in: null, tokens_out: null, tokens_source: null });
    // An upstream failure before any answer leaves the counts unknown.
    const failed = await chat(session, { stream: true, mock: { fault: 'status', status: 500 } });
    await failed.text();
    const f = (await answerOf(failed.headers.get('x-conversation-id')!, session)).answer;
    expect(f).toMatchObject({ status: 'error', tokens_in: null, tokens_out: null, tokens_source: null });
  });
});
