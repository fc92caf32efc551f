import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chatCompletionSchema, storeMessageSchema } from '../app/chat/stored.js';
import { listSchema } from '../app/openai/lists.js';
import { startMockUpstream, type MockUpstream } from '../mock/upstream.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';
import { signedInUser, type TestUser } from './helpers/users.js';

/**
 * OpenAI's stored chat completions (`client.chat.completions.list/retrieve/update/delete`,
 * `.messages.list`) over what this server recorded, with the official SDK as the client.
 */

const mock = useMockUpstream();
const MODEL = 'mock-model';
const ask = (content: string) => [{ role: 'user' as const, content }];
/** A stored completion's metadata: OpenAI's API gives it, the SDK's ChatCompletion type does not name it. */
const metadataOf = (completion: OpenAI.ChatCompletion) => (completion as OpenAI.ChatCompletion & { metadata: unknown }).metadata;
/** A list page as the server sent it (the SDK keeps `first_id` and `last_id` out of its page type). */
const rawPage = (page: object) => (page as unknown as { body: unknown }).body;

describe.each(dialects)('stored chat completions through the openai SDK on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    // Every streamed character written at once, so a running answer shows what it has.
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url, HISTORY_BATCH_FLUSH_CHARS: '1' });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const rows = async (table: string) => Number((await db.sql(`select count(*) as n from ${table}`))[0]!.n);
  const userClient = async (name = 'user') => {
    const user = await signedInUser(db.store, name);
    return { user, ...sdk(app, { apiKey: user.key }) };
  };

  /** One exchange, streamed or not; returns our completion id and the upstream's. */
  async function exchange(client: OpenAI, options: { stream?: boolean; metadata?: Record<string, string>; model?: string; content?: string; extra?: object } = {}) {
    const body = { model: options.model ?? MODEL, messages: ask(options.content ?? 'hello'), ...(options.metadata && { metadata: options.metadata }), ...options.extra };
    if (options.stream) {
      const { data, response } = await client.chat.completions.create({ ...body, stream: true }).withResponse();
      let upstreamId = '';
      for await (const chunk of data) upstreamId ||= chunk.id;
      return { id: response.headers.get('x-chat-completion-id')!, upstreamId, conversation: response.headers.get('x-conversation-id')! };
    }
    const { data, response } = await client.chat.completions.create(body).withResponse();
    return { id: response.headers.get('x-chat-completion-id')!, upstreamId: data.id, conversation: response.headers.get('x-conversation-id')! };
  }

  /** Waits until the completion's answer has ended (a stream's end is recorded just after the client's last chunk). */
  const finished = (client: OpenAI, id: string) => expect.poll(async () => (await client.chat.completions.retrieve(id)).choices[0]!.finish_reason).not.toBeNull();

  it('lists every recorded exchange, streamed or not, oldest first, paging with `after` as the SDK sends it', async () => {
    const { client, requests } = await userClient();
    const made: string[] = [];
    for (let i = 0; i < 9; i++) made.push((await exchange(client, { stream: i % 2 === 0, content: `turn ${i}` })).id);
    expect(new Set(made).size).toBe(9);
    for (const id of made) expect(id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);

    requests.length = 0;
    const listed: string[] = [];
    for await (const completion of client.chat.completions.list({ limit: 2 })) {
      expect(chatCompletionSchema.safeParse(completion).error).toBeUndefined();
      listed.push(completion.id);
    }
    expect(listed).toEqual(made);
    // Five pages of 2, 2, 2, 2, 1: each asks `after` the last id of the one before, and the last
    // says has_more: false, so no sixth request is made.
    expect(requests.map((r) => r.query.get('after'))).toEqual([null, made[1], made[3], made[5], made[7]]);

    requests.length = 0;
    const newestFirst: string[] = [];
    for await (const completion of client.chat.completions.list({ limit: 3, order: 'desc' })) newestFirst.push(completion.id);
    expect(newestFirst).toEqual([...made].reverse());
    // 9 in pages of 3: the third page knows it is the last.
    expect(requests).toHaveLength(3);

    const page = await client.chat.completions.list({ limit: 4 });
    expect(rawPage(page)).toMatchObject({ object: 'list', first_id: made[0], last_id: made[3], has_more: true });
    expect(listSchema(chatCompletionSchema).safeParse(rawPage(page)).error).toBeUndefined();
    const last = await client.chat.completions.list({ after: made[4], limit: 4 });
    expect(rawPage(last)).toMatchObject({ first_id: made[5], last_id: made[8], has_more: false });

    // Another user sees none of them.
    const other = await userClient('other');
    expect((await other.client.chat.completions.list()).data).toEqual([]);
  });

  it('shows a completion as OpenAI does, built from the stored answer', async () => {
    const { client } = await userClient();
    const { id, upstreamId } = await exchange(client, { metadata: { topic: 'shape' } });
    const completion = await client.chat.completions.retrieve(id);
    expect(completion).toEqual({
      id,
      object: 'chat.completion',
      created: expect.any(Number),
      model: MODEL,
      choices: [{ index: 0, message: { role: 'assistant', content: expect.any(String), refusal: null, annotations: [] }, finish_reason: 'stop', logprobs: null }],
      usage: { prompt_tokens: expect.any(Number), completion_tokens: expect.any(Number), total_tokens: expect.any(Number) },
      metadata: { topic: 'shape' },
    });
    expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(60);
    expect(upstreamId).toMatch(/^chatcmpl-mock-/);
    expect(chatCompletionSchema.safeParse(completion).error).toBeUndefined();
  });

  it('filters by metadata pairs and by model', async () => {
    const { client } = await userClient();
    const a1 = (await exchange(client, { metadata: { topic: 'a', n: '1' } })).id;
    const b = (await exchange(client, { metadata: { topic: 'b' }, stream: true })).id;
    const a2 = (await exchange(client, { metadata: { topic: 'a', n: '2' }, model: 'other-model' })).id;
    const ids = async (query: OpenAI.Chat.Completions.ChatCompletionListParams) => (await client.chat.completions.list(query)).data.map((c) => c.id);
    expect(await ids({ metadata: { topic: 'a' } })).toEqual([a1, a2]);
    expect(await ids({ metadata: { topic: 'a', n: '2' } })).toEqual([a2]);
    expect(await ids({ metadata: { topic: 'b' } })).toEqual([b]);
    expect(await ids({ metadata: { topic: 'c' } })).toEqual([]);
    expect(await ids({ model: 'other-model' })).toEqual([a2]);
    expect(await ids({ model: MODEL, metadata: { topic: 'a' } })).toEqual([a1]);
    const none = await client.chat.completions.list({ metadata: { topic: 'nothing' } });
    expect(rawPage(none)).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false });
  });

  it("retrieves by our id or by the upstream's, the caller's own most recent first", async () => {
    // Fresh mocks all number their answers from 1: the same upstream id, three times.
    const mocks: MockUpstream[] = await Promise.all([startMockUpstream(), startMockUpstream(), startMockUpstream()]);
    try {
      const apps = mocks.map((m) => testApp(db.store, { OPENAI_BASE_URL: m.url }));
      const ada = await signedInUser(db.store, 'ada');
      const bob = await signedInUser(db.store, 'bob');
      const as = (u: TestUser, i: number) => sdk(apps[i]!, { apiKey: u.key }).client;
      const adaFirst = await exchange(as(ada, 0));
      const bobs = await exchange(as(bob, 1));
      const adaLater = await exchange(as(ada, 2));
      expect(new Set([adaFirst.upstreamId, bobs.upstreamId, adaLater.upstreamId])).toEqual(new Set(['chatcmpl-mock-1']));
      // Bob may read Ada's later conversation, yet his own answer comes first to him.
      await call(app, 'PUT', `/v1/conversations/${adaLater.conversation}/shares/${bob.user.id}`, { headers: ada.auth, body: { role: 'viewer' } });

      expect((await as(ada, 0).chat.completions.retrieve(adaFirst.id)).id).toBe(adaFirst.id);
      expect((await as(ada, 0).chat.completions.retrieve('chatcmpl-mock-1')).id).toBe(adaLater.id);
      expect((await as(bob, 0).chat.completions.retrieve('chatcmpl-mock-1')).id).toBe(bobs.id);
      expect((await as(bob, 0).chat.completions.retrieve(adaLater.id)).id).toBe(adaLater.id);
      const stranger = sdk(app, { headers: { 'x-session-id': newSession() } }).client;
      await expect(stranger.chat.completions.retrieve('chatcmpl-mock-1')).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      await expect(stranger.chat.completions.retrieve(adaFirst.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
      // The upstream's id finds a completion for GET only: changing one takes our id.
      await expect(as(ada, 0).chat.completions.update('chatcmpl-mock-1', { metadata: {} })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    } finally {
      await Promise.all(mocks.map((m) => m.close()));
    }
  });

  it("shows a streamed answer as it stands while it runs, found by its chunks' id too", async () => {
    const { client } = await userClient();
    // The first piece of text, then nothing until the client leaves.
    const { data: stream, response } = await client.chat.completions
      .create({ model: MODEL, messages: ask('still going'), stream: true, mock: { text: 'first|second', chunks: 2, fault: 'hang_after_first' } } as never)
      .withResponse();
    const id = response.headers.get('x-chat-completion-id')!;
    let upstreamId = '';
    for await (const chunk of stream as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>) {
      upstreamId = chunk.id;
      if (chunk.choices[0]?.delta?.content) break;
    }
    // Leaving the loop cancels the stream: the answer ends as the client left it (the first end
    // of a file also loads the tokenizer for its estimate: a generous bound).
    await expect.poll(async () => (await client.chat.completions.retrieve(id)).choices[0]!.finish_reason, { timeout: 15_000 }).toBe('client_abort');
    const seen = await client.chat.completions.retrieve(upstreamId);
    expect(seen.id).toBe(id);
    expect(seen.choices[0]!.message.content).toBe('first|');
  });

  it('shows a running answer with no finish_reason yet', async () => {
    const { client } = await userClient();
    const { data: stream, response } = await client.chat.completions
      .create({ model: MODEL, messages: ask('running'), stream: true, mock: { text: 'ab', chunks: 2, fault: 'hang_after_first' } } as never)
      .withResponse();
    const id = response.headers.get('x-chat-completion-id')!;
    const reader = (stream as unknown as AsyncIterable<OpenAI.ChatCompletionChunk>)[Symbol.asyncIterator]();
    let chunk: OpenAI.ChatCompletionChunk;
    do chunk = (await reader.next()).value;
    while (!chunk.choices[0]?.delta?.content);
    // The upstream's id is noted once its first chunk arrives; the text as it is written.
    await expect.poll(async () => (await client.chat.completions.retrieve(chunk.id)).choices[0]!.message.content).toBe('a');
    const running = await client.chat.completions.retrieve(id);
    expect(running.choices[0]).toMatchObject({ finish_reason: null, message: { content: 'a' } });
    // Done reading: the SDK cancels the body, as a client that leaves does.
    await reader.return?.();
    await expect.poll(async () => (await client.chat.completions.retrieve(id)).choices[0]!.finish_reason, { timeout: 15_000 }).toBe('client_abort');
  });

  it('updates the metadata (null clears it), and deletes the record while the conversation keeps its messages', async () => {
    const { client, user } = await userClient();
    const { id, conversation } = await exchange(client, { metadata: { keep: 'no' } });
    expect(metadataOf(await client.chat.completions.update(id, { metadata: { project: 'x', step: '2' } }))).toEqual({ project: 'x', step: '2' });
    expect(metadataOf(await client.chat.completions.retrieve(id))).toEqual({ project: 'x', step: '2' });
    expect((await client.chat.completions.list({ metadata: { project: 'x' } })).data.map((c) => c.id)).toEqual([id]);
    expect(metadataOf(await client.chat.completions.update(id, { metadata: null }))).toEqual({});

    expect(await client.chat.completions.delete(id)).toEqual({ id, object: 'chat.completion.deleted', deleted: true });
    await expect(client.chat.completions.retrieve(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.chat.completions.delete(id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    expect((await client.chat.completions.list()).data.map((c) => c.id)).not.toContain(id);
    const kept = await call(app, 'GET', `/v1/conversations/${conversation}`, { headers: user.auth });
    expect(kept.json.messages.map((m: any) => m.role)).toEqual(['user', 'assistant']);
  });

  it('refuses metadata past OpenAI\'s limits, with 400 naming it', async () => {
    const { client } = await userClient();
    const id = (await exchange(client)).id;
    const seventeen = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    for (const metadata of [seventeen, { ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(513) }, { k: 1 }]) {
      await expect(client.chat.completions.update(id, { metadata } as never)).rejects.toMatchObject({ status: 400, param: expect.stringMatching(/^metadata/) });
    }
    expect(metadataOf(await client.chat.completions.retrieve(id))).toEqual({});
  });

  it('lists the messages that led to a completion, paged both ways', async () => {
    const { client } = await userClient();
    const history = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'first question' },
    ];
    const first = await client.chat.completions.create({ model: MODEL, messages: history }).withResponse();
    const conversation = first.response.headers.get('x-conversation-id')!;
    const firstId = first.response.headers.get('x-chat-completion-id')!;
    const answer = first.data.choices[0]!.message.content!;
    const second = await client.chat.completions
      .create({ model: MODEL, messages: [...history, { role: 'assistant', content: answer }, { role: 'user', content: 'second question' }] }, { headers: { 'x-conversation-id': conversation } })
      .withResponse();
    const secondId = second.response.headers.get('x-chat-completion-id')!;

    const all = (await client.chat.completions.messages.list(secondId)).data;
    expect(all.map((m) => [m.role, m.content])).toEqual([
      ['system', 'Be brief.'],
      ['user', 'first question'],
      ['assistant', answer],
      ['user', 'second question'],
    ]);
    expect(listSchema(storeMessageSchema).safeParse(rawPage(await client.chat.completions.messages.list(secondId))).error).toBeUndefined();
    const backwards: string[] = [];
    for await (const m of client.chat.completions.messages.list(secondId, { limit: 1, order: 'desc' })) backwards.push(m.id);
    expect(backwards).toEqual(all.map((m) => m.id).reverse());
    const forwards: string[] = [];
    for await (const m of client.chat.completions.messages.list(secondId, { limit: 3 })) forwards.push(m.id);
    expect(forwards).toEqual(all.map((m) => m.id));
    expect((await client.chat.completions.messages.list(firstId)).data.map((m) => m.content)).toEqual(['Be brief.', 'first question']);
    await expect(client.chat.completions.messages.list(firstId, { after: all[3]!.id })).rejects.toMatchObject({ status: 400, param: 'after' });
  });

  it('shows tool calls as OpenAI does, streamed or not, and the tool results that follow them', async () => {
    const { client } = await userClient();
    const tools = [{ type: 'function' as const, function: { name: 'get_weather', parameters: { type: 'object', properties: {} } } }];
    const plain = await exchange(client, { extra: { tools, mock: { tool_calls: true } } });
    const streamed = await exchange(client, { stream: true, extra: { tools, mock: { tool_calls: true } } });
    await finished(client, streamed.id);
    for (const { id } of [plain, streamed]) {
      const choice = (await client.chat.completions.retrieve(id)).choices[0]!;
      expect(choice.finish_reason).toBe('tool_calls');
      expect(choice.message.content).toBeNull();
      expect(choice.message.tool_calls).toEqual([{ id: 'call_mock_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
    }
    const call0 = (await client.chat.completions.retrieve(plain.id)).choices[0]!.message;
    const next = await client.chat.completions
      .create(
        { model: MODEL, messages: [...ask('hello'), call0, { role: 'tool', tool_call_id: 'call_mock_1', content: 'sunny' }] } as never,
        { headers: { 'x-conversation-id': plain.conversation } },
      )
      .withResponse();
    const led = (await client.chat.completions.messages.list(next.response.headers.get('x-chat-completion-id')!)).data;
    expect(led.at(-1)).toMatchObject({ role: 'tool', content: 'sunny', tool_call_id: 'call_mock_1' });
    expect(led.at(-2)).toMatchObject({ role: 'assistant', content: null, tool_calls: [{ id: 'call_mock_1' }] });
  });

  it('store: false proxies and records nothing; store and metadata never reach the upstream', async () => {
    const { client } = await userClient();
    const before = await Promise.all(['conversations', 'messages', 'chat_completions'].map(rows));
    for (const stream of [false, true]) {
      const { response } = await client.chat.completions.create({ model: MODEL, messages: ask('off the record'), store: false, metadata: { secret: 'x' }, stream } as never).withResponse();
      expect(response.status).toBe(200);
      expect(response.headers.get('x-conversation-id')).toBeNull();
      expect(response.headers.get('x-chat-completion-id')).toBeNull();
      if (stream) await response.text();
      const sent = mock.requests.at(-1)!.body;
      expect(sent).not.toHaveProperty('store');
      expect(sent).not.toHaveProperty('metadata');
    }
    expect(await Promise.all(['conversations', 'messages', 'chat_completions'].map(rows))).toEqual(before);

    const recorded = await exchange(client, { metadata: { secret: 'kept here' }, extra: { store: true } });
    const sent = mock.requests.at(-1)!.body;
    expect(sent).not.toHaveProperty('store');
    expect(sent).not.toHaveProperty('metadata');
    expect(JSON.stringify(mock.requests.map((r) => r.body))).not.toContain('kept here');
    expect(metadataOf(await client.chat.completions.retrieve(recorded.id))).toEqual({ secret: 'kept here' });
  });

  it('refuses bad metadata on a chat before anything is sent or written', async () => {
    const { client } = await userClient();
    const before = await Promise.all(['conversations', 'messages', 'chat_completions'].map(rows));
    const sentBefore = mock.requests.length;
    const seventeen = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
    for (const metadata of [seventeen, { ['k'.repeat(65)]: 'v' }, { k: 'v'.repeat(513) }, { k: 1 }, 'text']) {
      await expect(client.chat.completions.create({ model: MODEL, messages: ask('x'), metadata } as never)).rejects.toMatchObject({ status: 400, param: expect.stringMatching(/^metadata/) });
    }
    expect(mock.requests.length).toBe(sentBefore);
    expect(await Promise.all(['conversations', 'messages', 'chat_completions'].map(rows))).toEqual(before);
  });

  it('keeps no completion for an exchange the upstream refused', async () => {
    const { client } = await userClient();
    for (const stream of [false, true]) {
      await expect(client.chat.completions.create({ model: MODEL, messages: ask('fail'), stream, mock: { fault: 'status', status: 500 } } as never)).rejects.toMatchObject({ status: 500 });
    }
    expect((await client.chat.completions.list()).data).toEqual([]);
    const raw = await call(app, 'POST', '/v1/chat/completions', { session: newSession(), body: { model: MODEL, messages: ask('fail'), stream: true, mock: { fault: 'status', status: 503 } } });
    expect(raw.status).toBe(503);
    expect(raw.headers.get('x-chat-completion-id')).toBeNull();
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['order=sideways', 'order'],
    [Array.from({ length: 17 }, (_, i) => `metadata[k${i}]=v`).join('&'), 'metadata'],
    [`metadata[${'k'.repeat(65)}]=v`, 'metadata'],
    ['metadata[k]=a&metadata[k]=b', 'metadata.k'],
  ])('checks the list query %s', async (query, param) => {
    const res = await call(app, 'GET', `/v1/chat/completions?${query}`, { session: newSession() });
    expect(res.status).toBe(400);
    expect(res.json.error.param).toMatch(new RegExp(`^${param.replace('.', '\\.')}`));
  });

  it('answers an anonymous session about its own exchanges', async () => {
    const session = newSession();
    const { client } = sdk(app, { headers: { 'x-session-id': session } });
    const { id } = await exchange(client, { stream: true });
    expect((await client.chat.completions.list()).data.map((c) => c.id)).toEqual([id]);
    expect((await sdk(app, { headers: { 'x-session-id': newSession() } }).client.chat.completions.list()).data).toEqual([]);
  });
});

describe('stored chat completions with persistence off', () => {
  it('answer 501 persistence_disabled, while the proxy still works', async () => {
    const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url });
    const { client } = sdk(app, { headers: { 'x-session-id': newSession() } });
    const { response } = await client.chat.completions.create({ model: MODEL, messages: ask('x') }).withResponse();
    expect(response.headers.get('x-chat-completion-id')).toBeNull();
    for (const [method, path] of [
      ['GET', '/v1/chat/completions'],
      ['GET', '/v1/chat/completions/chatcmpl-x'],
      ['DELETE', '/v1/chat/completions/chatcmpl-x'],
      ['GET', '/v1/chat/completions/chatcmpl-x/messages'],
    ] as const) {
      const res = await call(app, method, path, { session: newSession() });
      expect(res.status).toBe(501);
      expect(res.json.error.code).toBe('persistence_disabled');
    }
  });
});
