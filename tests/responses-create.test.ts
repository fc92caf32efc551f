import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { responseObjectSchema } from '../app/responses/schemas.js';
import { MOCK_TOOL_CALL, mockAnswer } from '../mock/upstream.js';
import { call, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';
import { signedInUser } from './helpers/users.js';

/**
 * POST /v1/responses through the official openai SDK: plain and streamed, text and function
 * tools, the SDK's own accumulator (responses.stream) over our events, upstream faults, and
 * the 400s for what this server does not take.
 */

const mock = useMockUpstream();
const MODEL = 'mock-model';
const weatherTool = { type: 'function' as const, name: 'get_weather', description: 'The weather in a city', parameters: { type: 'object', properties: { city: { type: 'string' } } }, strict: false };

/** Every event of a stream, as the SDK yields them. */
async function collect(stream: AsyncIterable<OpenAI.Responses.ResponseStreamEvent>) {
  const events: OpenAI.Responses.ResponseStreamEvent[] = [];
  for await (const event of stream) events.push(event);
  return events;
}

describe.each(dialects)('POST /v1/responses on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;
  let client: OpenAI;
  let key: string;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    const user = await signedInUser(db.store, 'responder');
    key = user.key;
    client = sdk(app, { apiKey: key }).client;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it('answers a string input with a completed response that GET gives back the same, recorded as a conversation turn', async () => {
    const { data: response, response: raw } = await client.responses.create({ model: MODEL, input: 'hello there', instructions: 'Be brief.', metadata: { k: 'v' } }).withResponse();
    expect(responseObjectSchema.safeParse(response).error).toBeUndefined();
    expect(response.id).toMatch(/^resp_[0-9a-f]{32}$/);
    expect(response).toMatchObject({ object: 'response', status: 'completed', model: MODEL, instructions: 'Be brief.', metadata: { k: 'v' }, previous_response_id: null, error: null });
    expect(response.output_text).toBe(mockAnswer({}));
    expect(response.usage).toMatchObject({ input_tokens: expect.any(Number), output_tokens: 8 });
    expect(Math.abs(response.created_at - Date.now() / 1000)).toBeLessThan(60);
    // Instructions go first, as a system message; the input after them.
    expect(mock.requests.at(-1)!.body.messages).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'hello there' },
    ]);
    const { output_text: _, ...stored } = await client.responses.retrieve(response.id);
    const { output_text: __, ...given } = response;
    expect(stored).toEqual(given);

    // The turn, in the conversations API: the input and the answer (the instructions are the response's, not the conversation's).
    const conversationId = raw.headers.get('x-conversation-id')!;
    const conversation = await call(app, 'GET', `/v1/conversations/${conversationId}`, { headers: { authorization: `Bearer ${key}` } });
    expect(conversation.json.messages.map((m: { role: string; content: string }) => [m.role, m.content])).toEqual([
      ['user', 'hello there'],
      ['assistant', mockAnswer({})],
    ]);
    expect(response.output[0]!.id).toBe(conversation.json.messages[1].id);
  });

  it('turns function tools into chat tools and the tool call into a function_call item, then takes the tool output back', async () => {
    mock.defaults.tool_calls = true;
    const first = await client.responses.create({ model: MODEL, input: 'weather in Paris?', tools: [weatherTool], tool_choice: 'auto', temperature: 0.2, top_p: 0.9, max_output_tokens: 100 });
    const sent = mock.requests.at(-1)!.body;
    expect(sent.tools).toEqual([{ type: 'function', function: { name: 'get_weather', description: 'The weather in a city', parameters: weatherTool.parameters, strict: false } }]);
    expect(sent).toMatchObject({ tool_choice: 'auto', temperature: 0.2, top_p: 0.9, max_tokens: 100 });
    expect(first.output).toEqual([
      { type: 'function_call', id: expect.stringMatching(/^fc_/), call_id: MOCK_TOOL_CALL.id, name: MOCK_TOOL_CALL.name, arguments: MOCK_TOOL_CALL.arguments, status: 'completed' },
    ]);
    expect(first).toMatchObject({ temperature: 0.2, top_p: 0.9, max_output_tokens: 100, tool_choice: 'auto', tools: [expect.objectContaining({ type: 'function', name: 'get_weather' })] });

    mock.defaults.tool_calls = false;
    const second = await client.responses.create({
      model: MODEL,
      previous_response_id: first.id,
      input: [{ type: 'function_call_output', call_id: MOCK_TOOL_CALL.id, output: '{"temp":21}' }],
      tools: [weatherTool],
    });
    expect(second.status).toBe('completed');
    expect(mock.requests.at(-1)!.body.messages).toEqual([
      { role: 'user', content: 'weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: MOCK_TOOL_CALL.id, type: 'function', function: { name: MOCK_TOOL_CALL.name, arguments: MOCK_TOOL_CALL.arguments } }] },
      { role: 'tool', tool_call_id: MOCK_TOOL_CALL.id, content: '{"temp":21}' },
    ]);
  });

  it('streams the events OpenAI sends, in order, each numbered, and the SDK accumulator builds the same response GET gives', async () => {
    const events = await collect(await client.responses.create({ model: MODEL, input: 'stream it', stream: true }));
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    expect(types.slice(4, -4).every((t) => t === 'response.output_text.delta')).toBe(true);
    expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
    const deltas = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : []));
    expect(deltas.join('')).toBe(mockAnswer({}));
    expect(deltas.length).toBe(8);

    const stream = client.responses.stream({ model: MODEL, input: 'stream it again' });
    const final = await stream.finalResponse();
    expect(final.status).toBe('completed');
    expect(final.output_text).toBe(mockAnswer({}));
    // Completed on the stream means completed in the store: no lag behind the event.
    const { output_text: _, ...stored } = await client.responses.retrieve(final.id);
    const { output_text: __, output_parsed: ___, ...streamed } = final as typeof final & { output_parsed?: unknown };
    for (const item of streamed.output) if (item.type === 'message') for (const part of item.content) delete (part as { parsed?: unknown }).parsed;
    expect(stored).toEqual(streamed);
  });

  it('streams a function call as output_item.added, argument deltas, arguments.done and output_item.done', async () => {
    mock.defaults.tool_calls = true;
    const stream = client.responses.stream({ model: MODEL, input: 'weather?', tools: [weatherTool] });
    const events = await collect(stream);
    const final = await stream.finalResponse();
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      ...Array(8).fill('response.function_call_arguments.delta'),
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(final.output).toEqual([expect.objectContaining({ type: 'function_call', call_id: MOCK_TOOL_CALL.id, name: MOCK_TOOL_CALL.name, arguments: MOCK_TOOL_CALL.arguments })]);
  });

  it('ends with response.incomplete (max_output_tokens) when the upstream stops for length, as OpenAI does', async () => {
    mock.defaults.finish_reason = 'length';
    const stream = client.responses.stream({ model: MODEL, input: 'long', max_output_tokens: 16 });
    const events = await collect(stream);
    const last = events.at(-1)!;
    expect(last.type).toBe('response.incomplete');
    const final = await stream.finalResponse();
    expect(final).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
    expect((await client.responses.retrieve(final.id)).status).toBe('incomplete');
    const plain = await client.responses.create({ model: MODEL, input: 'long' });
    expect(plain).toMatchObject({ status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } });
  });

  it('ends with response.failed when the upstream drops mid-stream, after the text it sent, and records the response as failed', async () => {
    mock.defaults.fault = 'drop';
    mock.defaults.drop_after = 3;
    const stream = client.responses.stream({ model: MODEL, input: 'fragile' });
    const events = await collect(stream);
    expect(events.at(-1)!.type).toBe('response.failed');
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const final = await stream.finalResponse();
    expect(final.status).toBe('failed');
    expect(final.error?.message).toMatch(/upstream/i);
    expect(final.output_text).toBe(events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join(''));
    expect((await client.responses.retrieve(final.id)).status).toBe('failed');
  });

  it("passes an upstream's refusal through as an HTTP error, as the chat proxy does", async () => {
    mock.defaults.fault = 'status';
    mock.defaults.status = 429;
    await expect(client.responses.create({ model: MODEL, input: 'x' })).rejects.toMatchObject({ status: 429 });
    await expect(client.responses.create({ model: MODEL, input: 'x', stream: true })).rejects.toMatchObject({ status: 429 });
  });

  it('answers statelessly with store: false: nothing recorded, nothing to read back', async () => {
    const tables = ['conversations', 'messages', 'responses'];
    const count = async () => Promise.all(tables.map(async (t) => Number((await db.sql(`select count(*) as n from ${t}`))[0]!.n)));
    const before = await count();
    const plain = await client.responses.create({ model: MODEL, input: 'forget me', store: false });
    expect(plain).toMatchObject({ status: 'completed', store: false });
    expect(plain.output_text).toBe(mockAnswer({}));
    const streamed = await client.responses.stream({ model: MODEL, input: 'forget me too', store: false }).finalResponse();
    expect(streamed.output_text).toBe(mockAnswer({}));
    expect(await count()).toEqual(before);
    await expect(client.responses.retrieve(plain.id)).rejects.toMatchObject({ status: 404 });
    await expect(client.responses.retrieve(streamed.id)).rejects.toMatchObject({ status: 404 });
    const optedOut = await call(app, 'POST', '/v1/responses', { body: { model: MODEL, input: 'x' }, headers: { authorization: `Bearer ${key}`, 'x-persist': 'off' } });
    expect(optedOut.status).toBe(200);
    expect(await count()).toEqual(before);
  });

  it.each([
    [{ input: 'x', frobnicate: 1 }, "'frobnicate'", null],
    [{ input: 'x', tools: [{ type: 'web_search' }] }, 'web_search', 'tools.0.type'],
    [{ input: [{ type: 'reasoning', summary: [] }] }, 'reasoning', 'input.0.type'],
    [{ input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, 'input_file', 'input.0.content'],
    [{ input: 'x', truncation: 'auto' }, 'disabled', 'truncation'],
    [{ input: 'x', previous_response_id: 'resp_1', conversation: 'c' }, 'not both', 'conversation'],
    [{ input: 'x', previous_response_id: 'resp_nope' }, 'not found', 'previous_response_id'],
    [{ input: [{ type: 'item_reference', id: 'nope' }] }, "no item 'nope'", 'input.0.id'],
    [{ input: 'x', background: true, store: false }, 'stored', 'background'],
  ])('refuses %j with a 400 naming what is wrong', async (body, says, param) => {
    const res = await call(app, 'POST', '/v1/responses', { body: { model: MODEL, ...body }, headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toContain(says);
    expect(res.json.error.param).toBe(param);
  });

  it('refuses more input items than RESPONSES_MAX_INPUT_ITEMS', async () => {
    const small = testApp(db.store, { OPENAI_BASE_URL: mock.url, RESPONSES_MAX_INPUT_ITEMS: '2' });
    const input = ['a', 'b', 'c'].map((content) => ({ role: 'user', content }));
    const res = await call(small, 'POST', '/v1/responses', { body: { model: MODEL, input }, headers: { authorization: `Bearer ${key}` } });
    expect(res.status).toBe(400);
    expect(res.json.error.message).toContain('RESPONSES_MAX_INPUT_ITEMS');
    const ok = await call(small, 'POST', '/v1/responses', { body: { model: MODEL, input: input.slice(0, 2) }, headers: { authorization: `Bearer ${key}` } });
    expect(ok.status).toBe(200);
  });
});

describe('POST /v1/responses without persistence', () => {
  it('answers statelessly, and refuses previous_response_id and background clearly', async () => {
    const app = testApp(null, { OPENAI_BASE_URL: mock.url, PERSIST_TRANSCRIPTS: 'false' });
    const { client } = sdk(app);
    const response = await client.responses.create({ model: MODEL, input: 'hi' });
    expect(response.output_text).toBe(mockAnswer({}));
    const stateful = await call(app, 'POST', '/v1/responses', { body: { input: 'x', previous_response_id: response.id } });
    expect(stateful.status).toBe(400);
    expect(stateful.json.error).toMatchObject({ code: 'persistence_disabled', param: 'previous_response_id' });
    expect(stateful.json.error.message).toContain('PERSIST_TRANSCRIPTS');
    const background = await call(app, 'POST', '/v1/responses', { body: { input: 'x', background: true } });
    expect(background.status).toBe(400);
    expect((await call(app, 'GET', `/v1/responses/${response.id}`)).status).toBe(501);
  });
});
