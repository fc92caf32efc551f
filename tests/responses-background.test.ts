import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockAnswer } from '../mock/upstream.js';
import { createStore } from '../db/index.js';
import { call, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { sdk } from './helpers/sdk.js';
import { signedInUser } from './helpers/users.js';

/**
 * Background responses: answered at once, run to their end, their events kept so that any
 * reader (another process included: they come from the database) replays them from any
 * sequence number and follows the rest, with no gap and no repeat; cancelled on request.
 */

const mock = useMockUpstream();
const MODEL = 'mock-model';

interface Event {
  type: string;
  sequence_number: number;
  [key: string]: unknown;
}

/** The events of GET /v1/responses/:id?stream=true, as raw SSE. */
async function replay(app: TestApp, key: string, id: string, startingAfter?: number): Promise<Event[]> {
  const query = startingAfter === undefined ? '' : `&starting_after=${startingAfter}`;
  const res = await app.request(`/v1/responses/${id}?stream=true${query}`, { headers: { authorization: `Bearer ${key}` } });
  expect(res.status).toBe(200);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter(Boolean)
    .map((block) => {
      const [eventLine, dataLine] = block.split('\n');
      const event = JSON.parse(dataLine!.slice('data: '.length)) as Event;
      expect(eventLine).toBe(`event: ${event.type}`);
      return event;
    });
}

describe.each(dialects)('background responses on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;
  let client: OpenAI;
  let key: string;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    key = (await signedInUser(db.store, 'background')).key;
    client = sdk(app, { apiKey: key }).client;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  it('answers at once (queued), runs to its end, and replays its events from any sequence number with no gap or repeat', async () => {
    mock.defaults.delay_ms = 20;
    const response = await client.responses.create({ model: MODEL, input: 'take your time', background: true });
    expect(response).toMatchObject({ status: 'queued', background: true, output: [] });

    // A reader that comes while it runs follows it live, from the first event.
    const live = await replay(app, key, response.id);
    expect(live.map((e) => e.sequence_number)).toEqual(live.map((_, i) => i));
    expect(live[0]!.type).toBe('response.created');
    expect(live.at(-1)!.type).toBe('response.completed');
    const text = live.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta as string] : [])).join('');
    expect(text).toBe(mockAnswer({}));
    expect((await client.responses.retrieve(response.id)).status).toBe('completed');

    // Resumed at several points: exactly the events after it, the same ones.
    for (const after of [0, 1, 3, 7, live.length - 2, live.length - 1]) {
      const rest = await replay(app, key, response.id, after);
      expect(rest).toEqual(live.slice(after + 1));
    }
  });

  it('replays and follows from another server process, which has its own store connection and bus', async () => {
    const otherStore = createStore(db.target, { max: 2 });
    try {
      const other = testApp(otherStore, { OPENAI_BASE_URL: mock.url });
      mock.defaults.delay_ms = 20;
      const response = await client.responses.create({ model: MODEL, input: 'elsewhere', background: true });
      const there = await replay(other, key, response.id);
      expect(there.map((e) => e.sequence_number)).toEqual(there.map((_, i) => i));
      expect(there.at(-1)!.type).toBe('response.completed');
      expect(await replay(app, key, response.id)).toEqual(there);
      expect(await replay(other, key, response.id, 4)).toEqual(there.slice(5));
    } finally {
      await otherStore.close();
    }
  });

  it('resumes mid-stream with the SDK: responses.stream({response_id, starting_after}) gets the rest, and the whole sequence builds the response', async () => {
    mock.defaults.delay_ms = 30;
    mock.defaults.chunks = 12;
    const response = await client.responses.create({ model: MODEL, input: 'resume me', background: true });
    // Read a few events, drop the connection, resume after the last one seen.
    const first = await client.responses.retrieve(response.id, { stream: true });
    const seen: OpenAI.Responses.ResponseStreamEvent[] = [];
    for await (const event of first) {
      seen.push(event);
      if (seen.length === 5) break;
    }
    const resumed = client.responses.stream({ response_id: response.id, starting_after: seen.at(-1)!.sequence_number });
    const rest: OpenAI.Responses.ResponseStreamEvent[] = [];
    resumed.on('event', (e) => rest.push(e));
    const final = await resumed.finalResponse();
    expect([...seen, ...rest].map((e) => e.sequence_number)).toEqual([...seen, ...rest].map((_, i) => i));
    expect(final.status).toBe('completed');
    expect(final.output_text).toBe(mockAnswer({ chunks: 12 }));

    // Without starting_after, the SDK gets the whole sequence and builds the same response.
    const whole = await client.responses.stream({ response_id: response.id }).finalResponse();
    expect(whole.output_text).toBe(mockAnswer({ chunks: 12 }));
  });

  it('streams a background response to its creator with stream: true, and it runs on when the creator leaves', async () => {
    mock.defaults.delay_ms = 25;
    const stream = await client.responses.create({ model: MODEL, input: 'leave early', background: true, stream: true });
    let id = '';
    for await (const event of stream) {
      if (event.type === 'response.created') id = event.response.id;
      if (event.type === 'response.output_text.delta') break;
    }
    expect(id).toMatch(/^resp_/);
    await expect.poll(async () => (await client.responses.retrieve(id)).status, { timeout: 5_000 }).toBe('completed');
    expect((await client.responses.retrieve(id)).output_text).toBe(mockAnswer({}));
  });

  it('cancels a background response: it ends cancelled, its stream ends, and the answer keeps what it had', async () => {
    mock.defaults.delay_ms = 200;
    mock.defaults.chunks = 50;
    const response = await client.responses.create({ model: MODEL, input: 'never mind', background: true });
    const events = replay(app, key, response.id);
    await expect.poll(async () => (await client.responses.retrieve(response.id)).status).toBe('in_progress');
    const cancelled = await client.responses.cancel(response.id);
    expect(cancelled.status).toBe('cancelled');
    const all = await events;
    expect(all.map((e) => e.sequence_number)).toEqual(all.map((_, i) => i));
    expect(all.at(-1)).toMatchObject({ type: 'response.failed', response: { status: 'cancelled' } });
    expect((await client.responses.retrieve(response.id)).status).toBe('cancelled');
    // Cancelling again changes nothing.
    expect((await client.responses.cancel(response.id)).status).toBe('cancelled');
  });

  it('records an upstream refusal as a failed response whose events say so', async () => {
    mock.defaults.fault = 'status';
    mock.defaults.status = 500;
    const response = await client.responses.create({ model: MODEL, input: 'doomed', background: true });
    const events = await replay(app, key, response.id);
    expect(events.map((e) => e.type)).toEqual(['response.created', 'response.in_progress', 'response.failed']);
    expect((await client.responses.retrieve(response.id)).status).toBe('failed');
  });

  it('refuses to stream or cancel a response that was not run in the background', async () => {
    const plain = await client.responses.create({ model: MODEL, input: 'foreground' });
    const stream = await call(app, 'GET', `/v1/responses/${plain.id}?stream=true`, { headers: { authorization: `Bearer ${key}` } });
    expect(stream.status).toBe(400);
    expect(stream.json.error.message).toContain('background');
    await expect(client.responses.cancel(plain.id)).rejects.toMatchObject({ status: 400 });
  });
});
