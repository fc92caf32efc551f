import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listSchema } from '../app/openai/lists.js';
import { conversationItemSchema } from '../app/routes/conversations/items.js';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { expectConsistent, readConversation } from './helpers/conversation-checks.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';
import { signedInUser } from './helpers/users.js';

/**
 * OpenAI's conversations and their items (`client.conversations.create/update/delete`,
 * `.items.list/create/retrieve/delete`) over this server's conversations, with the official SDK
 * as the client: the items are the conversation's messages.
 */

const mock = useMockUpstream();

describe.each(dialects)('conversation items through the openai SDK on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const anonymous = () => {
    const session = newSession();
    return { session, ...sdk(app, { headers: { 'x-session-id': session } }) };
  };
  /** Every item, auto-paginated; typed as the shapes this server gives (messages and function calls, all with a status). */
  const allItems = async (client: OpenAI, id: string, query: OpenAI.Conversations.ItemListParams = {}) => {
    const items: (OpenAI.Conversations.ConversationItem & { id: string; status: string })[] = [];
    for await (const item of client.conversations.items.list(id, query)) items.push(item as (typeof items)[number]);
    return items;
  };

  it('creates a conversation with items and lists them both ways, paging with last_id as the SDK sends it', async () => {
    const { client, requests, session } = anonymous();
    const conversation = await client.conversations.create({
      metadata: { project: 'items' },
      items: [
        { type: 'message', role: 'developer', content: 'Be brief.' },
        { role: 'user', content: 'What is the weather in Paris?' },
        { type: 'function_call', call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}' },
        { type: 'function_call_output', call_id: 'call_1', output: '{"sky":"clear"}' },
        { type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'Clear skies.', annotations: [] }] } as never,
        { role: 'user', content: [{ type: 'input_text', text: 'And tomorrow? ' }, { type: 'input_text', text: 'Thanks.' }] },
        { role: 'user', content: 'One more.' },
      ],
    });
    expect(conversation).toMatchObject({ id: expect.any(String), object: 'conversation', metadata: { project: 'items' }, message_count: 7 });

    requests.length = 0;
    const oldestFirst = await allItems(client, conversation.id, { order: 'asc', limit: 2 });
    expect(oldestFirst.map((i) => i.type)).toEqual(['message', 'message', 'function_call', 'function_call_output', 'message', 'message', 'message']);
    expect(oldestFirst[0]).toEqual({ type: 'message', id: expect.any(String), role: 'system', status: 'completed', content: [{ type: 'input_text', text: 'Be brief.' }] });
    expect(oldestFirst[2]).toEqual({ type: 'function_call', id: expect.stringMatching(/^fc_/), call_id: 'call_1', name: 'get_weather', arguments: '{"city":"Paris"}', status: 'completed' });
    expect(oldestFirst[3]).toEqual({ type: 'function_call_output', id: expect.any(String), call_id: 'call_1', output: '{"sky":"clear"}', status: 'completed' });
    expect(oldestFirst[4]).toMatchObject({ role: 'assistant', content: [{ type: 'output_text', text: 'Clear skies.', annotations: [] }] });
    expect(oldestFirst[5]).toMatchObject({ role: 'user', content: [{ type: 'input_text', text: 'And tomorrow? ' }, { type: 'input_text', text: 'Thanks.' }] });
    for (const item of oldestFirst) expect(conversationItemSchema.safeParse(item).error).toBeUndefined();
    // Pages of 2, 2, 2, 1: each asks after the last_id of the one before; the last says has_more: false.
    const ids = oldestFirst.map((i) => i.id);
    expect(requests.map((r) => r.query.get('after'))).toEqual([null, ids[1], ids[3], ids[5]]);

    // Newest first by default, as OpenAI lists items.
    const newestFirst = await allItems(client, conversation.id, { limit: 3 });
    expect(newestFirst.map((i) => i.id)).toEqual([...ids].reverse());
    const page = await call(app, 'GET', `/v1/conversations/${conversation.id}/items?limit=3&include[]=message.input_image.image_url`, { session });
    expect(page.json).toMatchObject({ object: 'list', first_id: ids[6], last_id: ids[4], has_more: true });
    expect(listSchema(conversationItemSchema).safeParse(page.json).error).toBeUndefined();
    // The same messages, natively.
    expectConsistent(await readConversation(app, conversation.id, session));
  });

  it('adds, retrieves and deletes items; a deleted item leaves the seqs dense', async () => {
    const { client, session } = anonymous();
    const conversation = await client.conversations.create({ items: [{ role: 'user', content: 'first' }] });
    const added = await client.conversations.items.create(conversation.id, {
      items: [
        { role: 'user', content: 'second' },
        { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'third' }] },
      ],
    });
    expect(added).toMatchObject({ object: 'list', has_more: false, data: [{ content: [{ text: 'second' }] }, { content: [{ text: 'third' }] }] });
    expect(added.first_id).toBe(added.data[0]!.id);
    expect(added.last_id).toBe(added.data[1]!.id);

    const second = added.data[0] as OpenAI.Conversations.Message;
    expect(await client.conversations.items.retrieve(second.id, { conversation_id: conversation.id })).toEqual(second);
    const afterDelete = await client.conversations.items.delete(second.id, { conversation_id: conversation.id });
    expect(afterDelete).toMatchObject({ id: conversation.id, object: 'conversation', message_count: 2 });
    await expect(client.conversations.items.retrieve(second.id, { conversation_id: conversation.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.conversations.items.delete(second.id, { conversation_id: conversation.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    const left = await readConversation(app, conversation.id, session);
    expectConsistent(left);
    expect(left.messages.map((m: any) => [m.seq, m.content])).toEqual([
      [1, 'first'],
      [2, 'third'],
    ]);
    // New messages carry on from the counter.
    await client.conversations.items.create(conversation.id, { items: [{ role: 'user', content: 'fourth' }] });
    expect((await readConversation(app, conversation.id, session)).messages.map((m: any) => m.seq)).toEqual([1, 2, 3]);
  });

  it("shows a proxied exchange's tool calls as function_call items and its tool results as function_call_output", async () => {
    const { client } = anonymous();
    const first = await client.chat.completions.create({ model: 'mock-model', messages: [{ role: 'user', content: 'Weather?' }], mock: { tool_calls: true } } as never).withResponse();
    const id = first.response.headers.get('x-conversation-id')!;
    const call0 = first.data.choices[0]!.message;
    const stream = await client.chat.completions.create(
      { model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'Weather?' }, call0, { role: 'tool', tool_call_id: 'call_mock_1', content: 'sunny' }], mock: { text: 'It is sunny.' } } as never,
      { headers: { 'x-conversation-id': id } },
    );
    for await (const _ of stream as unknown as AsyncIterable<unknown>) void _;
    await expect.poll(async () => (await allItems(client, id, { order: 'asc' })).at(-1)?.status).toBe('completed');
    const items = await allItems(client, id, { order: 'asc' });
    expect(items.map((i) => i.type)).toEqual(['message', 'function_call', 'function_call_output', 'message']);
    expect(items[1]).toMatchObject({ call_id: 'call_mock_1', name: 'get_weather', arguments: '{"city":"Paris"}', status: 'completed' });
    expect(items[2]).toMatchObject({ call_id: 'call_mock_1', output: 'sunny' });
    expect(items[3]).toMatchObject({ role: 'assistant', content: [{ type: 'output_text', text: 'It is sunny.' }] });
    expect(items.every((i) => conversationItemSchema.safeParse(i).success)).toBe(true);
  });

  it("gives an answer that wrote text and called tools a message item, then its calls; deleting one deletes the message's items", async () => {
    const { client, session } = anonymous();
    const data = (await call(app, 'POST', '/v1/conversations', { session })).json;
    // Written through the store: one assistant message with text and two calls.
    const [answer] = await db.store.appendMessages({ sessionId: hashSessionId(session), userId: null }, data.id, [
      {
        role: 'assistant',
        content: 'Checking two cities.',
        toolCalls: [
          { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } },
          { id: 'b', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Rome"}' } },
        ],
      },
    ], { maxMessages: 100 });
    const items = await allItems(client, data.id, { order: 'asc' });
    expect(items.map((i) => [i.type, i.id])).toEqual([
      ['message', answer!.id],
      ['function_call', `fc_${answer!.id}_0`],
      ['function_call', `fc_${answer!.id}_1`],
    ]);
    expect((await allItems(client, data.id)).map((i) => i.id)).toEqual(items.map((i) => i.id).reverse());
    // Paging stops inside the message and resumes there.
    const firstPage = await client.conversations.items.list(data.id, { order: 'asc', limit: 2 });
    expect(firstPage.data.map((i) => i.id)).toEqual(items.slice(0, 2).map((i) => i.id));
    expect((await client.conversations.items.list(data.id, { order: 'asc', after: firstPage.last_id })).data.map((i) => i.id)).toEqual([items[2]!.id]);
    expect((await client.conversations.items.retrieve(`fc_${answer!.id}_1`, { conversation_id: data.id })).type).toBe('function_call');
    await expect(client.conversations.items.retrieve(`fc_${answer!.id}_2`, { conversation_id: data.id })).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await client.conversations.items.delete(`fc_${answer!.id}_1`, { conversation_id: data.id });
    expect(await allItems(client, data.id)).toEqual([]);
  });

  it('updates a conversation as OpenAI does (POST, metadata null clears it) and deletes it with OpenAI\'s answer', async () => {
    const user = await signedInUser(db.store);
    const { client } = sdk(app, { apiKey: user.key });
    const conversation = await client.conversations.create({ metadata: { a: '1' } });
    expect((await client.conversations.update(conversation.id, { metadata: { b: '2' } })).metadata).toEqual({ b: '2' });
    expect((await client.conversations.retrieve(conversation.id)).metadata).toEqual({ b: '2' });
    expect((await client.conversations.update(conversation.id, { metadata: null })).metadata).toEqual({});
    expect(await client.conversations.delete(conversation.id)).toEqual({ id: conversation.id, object: 'conversation.deleted', deleted: true });
    await expect(client.conversations.delete(conversation.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
    await expect(client.conversations.items.list(conversation.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('refuses bad items and bad queries with 400 naming them, writing nothing', async () => {
    const { client, session } = anonymous();
    const conversation = await client.conversations.create({ items: [{ role: 'user', content: 'x' }] });
    const twentyOne = Array.from({ length: 21 }, () => ({ role: 'user' as const, content: 'x' }));
    const bad: [unknown, string][] = [
      [twentyOne, 'items'],
      [[], 'items'],
      [[{ type: 'reasoning', summary: [] }], 'items.0.type'],
      [[{ role: 'wizard', content: 'x' }], 'items.0.role'],
      [[{ type: 'function_call', call_id: 'c', name: 'f' }], 'items.0.arguments'],
      [[{ role: 'user', content: [{ type: 'input_audio', data: '' }] }], 'items.0.content'],
    ];
    for (const [items, param] of bad) {
      await expect(client.conversations.items.create(conversation.id, { items } as never)).rejects.toMatchObject({ status: 400, param: expect.stringContaining(param) });
    }
    await expect(client.conversations.create({ items: twentyOne })).rejects.toMatchObject({ status: 400, param: 'items' });
    for (const [query, param] of [
      ['limit=0', 'limit'],
      ['limit=101', 'limit'],
      ['order=up', 'order'],
      ['include[]=everything', 'include.0'],
      ['after=not-an-item', 'after'],
    ]) {
      const res = await call(app, 'GET', `/v1/conversations/${conversation.id}/items?${query}`, { session });
      expect(res.status, query).toBe(400);
      expect(res.json.error.param).toBe(param);
    }
    expect((await readConversation(app, conversation.id, session)).messages).toHaveLength(1);
  });

  it('keeps system items out under REDACT_SYSTEM_PROMPTS, as every write path does', async () => {
    const redacting = testApp(db.store, { OPENAI_BASE_URL: mock.url, REDACT_SYSTEM_PROMPTS: 'true' });
    const { client } = sdk(redacting, { headers: { 'x-session-id': newSession() } });
    const conversation = await client.conversations.create({ items: [{ role: 'system', content: 'secret prompt' }, { role: 'user', content: 'hi' }] });
    const added = await client.conversations.items.create(conversation.id, { items: [{ role: 'developer', content: 'another secret' }, { role: 'user', content: 'again' }] });
    expect(added.data.map((i) => (i as OpenAI.Conversations.Message).role)).toEqual(['user']);
    expect((await allItems(client, conversation.id, { order: 'asc' })).map((i) => (i as OpenAI.Conversations.Message).content)).toEqual([
      [{ type: 'input_text', text: 'hi' }],
      [{ type: 'input_text', text: 'again' }],
    ]);
  });

  it('shows a running answer as an in_progress item, and one that did not finish as incomplete', async () => {
    const { client, session } = anonymous();
    const res = await app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ model: 'mock-model', messages: [{ role: 'user', content: 'y' }], stream: true, mock: { text: 'ab', chunks: 2, fault: 'hang_after_first' } }),
    });
    const id = res.headers.get('x-conversation-id')!;
    const reader = res.body!.getReader();
    await reader.read();
    expect((await allItems(client, id)).at(0)).toMatchObject({ role: 'assistant', status: 'in_progress' });
    // The client leaves: the answer ends as an error (client_abort), an incomplete item. The
    // first end in a file loads the tokenizer for its estimate: a generous bound.
    await reader.cancel();
    await expect.poll(async () => (await allItems(client, id)).at(0)?.status, { timeout: 15_000 }).toBe('incomplete');
  });
});
