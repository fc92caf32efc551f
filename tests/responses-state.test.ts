import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { call, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';
import { signedInUser } from './helpers/users.js';

/**
 * The state the Responses API keeps: previous_response_id chains, `conversation`, item
 * references, input items, deletion, and who may see what.
 */

const mock = useMockUpstream();
const MODEL = 'mock-model';
const ANSWER = mockAnswer({});
/** What the upstream was sent last, as role/content pairs. */
const lastSent = () => (mock.requests.at(-1)!.body.messages as { role: string; content: unknown }[]).map((m) => [m.role, m.content]);

describe.each(dialects)('Responses API state on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;
  let client: OpenAI;
  let key: string;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    key = (await signedInUser(db.store, 'stateful')).key;
    client = sdk(app, { apiKey: key }).client;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it('chains previous_response_id over three turns: the upstream gets the whole history, without earlier instructions', async () => {
    const one = await client.responses.create({ model: MODEL, input: 'one', instructions: 'first rules' });
    expect(lastSent()).toEqual([['system', 'first rules'], ['user', 'one']]);
    // Streamed, then continued the moment the stream says completed.
    const two = await client.responses.stream({ model: MODEL, input: 'two', previous_response_id: one.id, instructions: 'second rules' }).finalResponse();
    expect(lastSent()).toEqual([['system', 'second rules'], ['user', 'one'], ['assistant', ANSWER], ['user', 'two']]);
    const three = await client.responses.create({ model: MODEL, input: [{ role: 'user', content: [{ type: 'input_text', text: 'three' }] }], previous_response_id: two.id });
    expect(lastSent()).toEqual([
      ['user', 'one'],
      ['assistant', ANSWER],
      ['user', 'two'],
      ['assistant', ANSWER],
      ['user', [{ type: 'text', text: 'three' }]],
    ]);
    expect(three.previous_response_id).toBe(two.id);

    // Continuing an earlier response again makes a branch: the history is that response's path.
    await client.responses.create({ model: MODEL, input: 'two again', previous_response_id: one.id });
    expect(lastSent()).toEqual([['user', 'one'], ['assistant', ANSWER], ['user', 'two again']]);
  });

  it('continues one of our conversations with `conversation`, which the conversations API then shows', async () => {
    const created = await call(app, 'POST', '/v1/conversations', { body: { items: [{ role: 'user', content: 'earlier question' }, { role: 'assistant', content: 'earlier answer' }] }, headers: { authorization: `Bearer ${key}` } });
    expect(created.status).toBe(201);
    const id = created.json.id as string;
    const response = await client.responses.create({ model: MODEL, input: 'and now?', conversation: id });
    expect(response.conversation).toEqual({ id });
    expect(lastSent()).toEqual([['user', 'earlier question'], ['assistant', 'earlier answer'], ['user', 'and now?']]);
    await client.responses.create({ model: MODEL, input: 'then?', conversation: { id } });
    const items = await client.conversations.items.list(id, { order: 'asc' });
    expect(items.data.map((i) => (i.type === 'message' ? i.role : i.type))).toEqual(['user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
    const missing = await call(app, 'POST', '/v1/responses', { body: { input: 'x', conversation: crypto.randomUUID() }, headers: { authorization: `Bearer ${key}` } });
    expect(missing.status).toBe(404);
  });

  it('resolves item_reference items from the store, as the AI SDK sends them for earlier answers', async () => {
    mock.defaults.text = 'the capital is Paris';
    const first = await client.responses.create({ model: MODEL, input: 'capital of France?' });
    mock.defaults.text = undefined;
    const answerItem = first.output[0]!;
    await client.responses.create({
      model: MODEL,
      input: [{ role: 'user', content: 'capital of France?' }, { type: 'item_reference', id: answerItem.id! }, { role: 'user', content: 'and its population?' }],
    });
    expect(lastSent()).toEqual([['user', 'capital of France?'], ['assistant', 'the capital is Paris'], ['user', 'and its population?']]);
    // Someone else's item is not found.
    const other = sdk(app, { apiKey: (await signedInUser(db.store, 'stranger')).key }).client;
    await expect(other.responses.create({ model: MODEL, input: [{ type: 'item_reference', id: answerItem.id! }] })).rejects.toMatchObject({ status: 400 });
  });

  it("lists a response's input items, newest first by default, in OpenAI's list shape, paging with after", async () => {
    mock.defaults.tool_calls = true;
    const call1 = await client.responses.create({ model: MODEL, input: 'weather?', tools: [{ type: 'function', name: 'get_weather', parameters: {}, strict: false }] });
    mock.defaults.tool_calls = false;
    const fc = call1.output[0] as OpenAI.Responses.ResponseFunctionToolCall;
    const response = await client.responses.create({
      model: MODEL,
      previous_response_id: call1.id,
      input: [
        { type: 'function_call_output', call_id: fc.call_id, output: 'sunny' },
        { role: 'user', content: 'thanks' },
      ],
    });
    const all = await client.responses.inputItems.list(response.id);
    expect(all.data.map((i) => i.type)).toEqual(['message', 'function_call_output']);
    const asc = await client.responses.inputItems.list(response.id, { order: 'asc' });
    expect(asc.data.map((i) => i.type)).toEqual(['function_call_output', 'message']);
    expect(asc.data[0]).toMatchObject({ type: 'function_call_output', call_id: fc.call_id, output: 'sunny' });
    const paged: string[] = [];
    for await (const item of client.responses.inputItems.list(response.id, { limit: 1 })) paged.push(item.id!);
    expect(paged).toEqual(all.data.map((i) => i.id));
    const raw = await call(app, 'GET', `/v1/responses/${response.id}/input_items?limit=1`, { headers: { authorization: `Bearer ${key}` } });
    expect(raw.json).toMatchObject({ object: 'list', first_id: all.data[0]!.id, last_id: all.data[0]!.id, has_more: true });
  });

  it('deletes a response (the conversation keeps its messages); a deleted or unknown one is 404, and so is another owner’s', async () => {
    const { data: response, response: raw } = await client.responses.create({ model: MODEL, input: 'delete me' }).withResponse();
    const stranger = sdk(app, { apiKey: (await signedInUser(db.store, 'stranger2')).key }).client;
    await expect(stranger.responses.retrieve(response.id)).rejects.toMatchObject({ status: 404 });
    await expect(stranger.responses.delete(response.id)).rejects.toMatchObject({ status: 404 });
    await expect(stranger.responses.inputItems.list(response.id)).rejects.toMatchObject({ status: 404 });
    const deleted = await call(app, 'DELETE', `/v1/responses/${response.id}`, { headers: { authorization: `Bearer ${key}` } });
    expect(deleted.json).toEqual({ id: response.id, object: 'response', deleted: true });
    await expect(client.responses.retrieve(response.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.delete(response.id)).rejects.toMatchObject({ status: 404 });
    const conversation = await call(app, 'GET', `/v1/conversations/${raw.headers.get('x-conversation-id')}`, { headers: { authorization: `Bearer ${key}` } });
    expect(conversation.json.messages).toHaveLength(2);
  });

  it('refuses to continue a response that is still running', async () => {
    mock.defaults.first_byte_delay_ms = 300;
    const running = client.responses.create({ model: MODEL, input: 'slow', background: true });
    const started = await running;
    mock.defaults.first_byte_delay_ms = 0;
    const res = await call(app, 'POST', '/v1/responses', { body: { input: 'next', previous_response_id: started.id }, headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(400);
    expect(res.json.error.code).toBe('previous_response_in_progress');
    await expect.poll(async () => (await client.responses.retrieve(started.id)).status).toBe('completed');
  });
});
