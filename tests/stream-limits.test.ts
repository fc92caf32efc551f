import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../app/app.js';
import { loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { startServer } from '../app/server.js';
import { InFlight } from '../app/streaming/in-flight.js';
import type { Store } from '../db/store.js';
import type { MockOptions } from '../mock/upstream.js';
import { fromAddress, newSession, testConfig } from './helpers/app.js';
import { testStore, type TestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';

/*
 * Chat completions running at once: MAX_STREAMS_PER_CALLER (per session or user),
 * MAX_STREAMS_PER_ADDRESS (all sessions of one client address) and MAX_STREAMS (per process).
 * A slot is taken when a request is admitted and given back exactly once however it ends; the
 * tests read the process's count directly and check that new requests are admitted again.
 */

const mock = useMockUpstream();
const silent = createLogger('silent');
let refusedUrl: string;

beforeAll(async () => {
  // A port that was just free: connecting to it is refused.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  refusedUrl = `http://127.0.0.1:${(closed.address() as AddressInfo).port}/v1`;
  await new Promise((r) => closed.close(r));
});

/** An app on the mock with these caps, and the slot counts of its process. */
function cappedApp(env: Record<string, string> = {}, store: Store | null = null) {
  const config = testConfig({ PERSIST_TRANSCRIPTS: store ? 'true' : 'false', OPENAI_BASE_URL: mock.url, ...env });
  const inFlight = new InFlight(store, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: silent });
  return { app: createApp({ config, store, logger: silent, inFlight }), inFlight, slots: inFlight.slots };
}
type Capped = ReturnType<typeof cappedApp>;

interface Send {
  session?: string;
  address?: string;
  stream?: boolean;
  mock?: MockOptions;
  extra?: Record<string, unknown>;
  signal?: AbortSignal;
}

function send({ app }: Capped, { session = newSession(), address = '192.0.2.1', stream = true, mock: options = {}, extra = {}, signal }: Send = {}) {
  return app.request(
    '/v1/chat/completions',
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], stream, mock: options, ...extra }),
      signal,
    },
    fromAddress(address),
  );
}

/** A stream that has started (first chunk read) and stays open until cancelled. */
async function hold(capped: Capped, options: Send = {}) {
  const res = await send(capped, { ...options, mock: { fault: 'hang_after_first' } });
  expect(res.status, await peekError(res)).toBe(200);
  const reader = res.body!.getReader();
  await reader.read();
  return reader;
}

/** The error message of a refused response, for assertion messages ('' for a stream). */
async function peekError(res: Response): Promise<string> {
  return res.status === 200 ? '' : res.clone().text();
}

async function expectBusy(res: Response, message: RegExp) {
  expect(res.status).toBe(429);
  const body = await res.json();
  expect(body).toEqual({ error: { type: 'rate_limit_error', code: 'concurrency_limit_exceeded', param: null, message: expect.stringMatching(message) } });
}

const released = (slots: Capped['slots'], count = 0) => waitFor(() => slots.active === count);

describe('MAX_STREAMS_PER_CALLER', () => {
  it('caps one session, streamed or not, and admits it again once a stream ends', async () => {
    const capped = cappedApp({ MAX_STREAMS_PER_CALLER: '2' });
    const session = newSession();
    const held = [await hold(capped, { session }), await hold(capped, { session })];
    expect(capped.slots.active).toBe(2);

    await expectBusy(await send(capped, { session }), /^Too many chat completions at once: at most 2 per session \(MAX_STREAMS_PER_CALLER\)\. Wait for one to finish\.$/);
    await expectBusy(await send(capped, { session, stream: false }), /at most 2 per session/);
    expect(mock.requests).toHaveLength(2);
    // Another session from the same address has room (the address allows 4 × 2).
    const other = await send(capped, { stream: false });
    expect(other.status).toBe(200);

    await held[0]!.cancel();
    await released(capped.slots, 1);
    const again = await send(capped, { session });
    expect(again.status).toBe(200);
    expect(streamedContent((await readChunks(again.body!)).text)).toBeTruthy();
    await held[1]!.cancel();
    await released(capped.slots);
  });
});

describe('MAX_STREAMS_PER_ADDRESS', () => {
  it('caps the sessions of one address together, so fresh sessions buy nothing', async () => {
    const capped = cappedApp({ MAX_STREAMS_PER_CALLER: '2', MAX_STREAMS_PER_ADDRESS: '3' });
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await hold(capped, { address: '198.51.100.1' }));
    await expectBusy(
      await send(capped, { address: '198.51.100.1' }),
      /^Too many chat completions at once: at most 3 per client address \(MAX_STREAMS_PER_ADDRESS\)\./,
    );
    // A request with no session at all counts against its address just the same.
    const bare = await capped.app.request(
      '/v1/chat/completions',
      { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ messages: [{ role: 'user', content: 'x' }] }) },
      fromAddress('198.51.100.1'),
    );
    expect(bare.status).toBe(429);
    held.push(await hold(capped, { address: '198.51.100.2' }));
    for (const reader of held) await reader.cancel();
    await released(capped.slots);
  });

  it('by default admits 4 × MAX_STREAMS_PER_CALLER (32) at once from one address, not 500', async () => {
    const capped = cappedApp();
    const responses = await Promise.all(
      Array.from({ length: 40 }, () => send(capped, { address: '198.51.100.3', mock: { fault: 'hang_after_first' } })),
    );
    const admitted = responses.filter((r) => r.status === 200);
    expect(admitted).toHaveLength(32);
    expect(responses.filter((r) => r.status === 429)).toHaveLength(8);
    expect(capped.slots.active).toBe(32);
    await Promise.all(admitted.map((r) => r.body!.cancel()));
    await released(capped.slots);
  });
});

describe('MAX_STREAMS', () => {
  it('caps the process, whoever asks, with Retry-After', async () => {
    const capped = cappedApp({ MAX_STREAMS: '3' });
    const held = [];
    for (let i = 0; i < 3; i++) held.push(await hold(capped, { address: `203.0.113.${i + 1}` }));
    const res = await send(capped, { address: '203.0.113.99' });
    expect(res.headers.get('retry-after')).toBe('1');
    await expectBusy(res, /^This server is running as many chat completions as it allows at once \(3, MAX_STREAMS\)\. Retry shortly\.$/);
    for (const reader of held) await reader.cancel();
    await released(capped.slots);
    expect((await send(capped, { stream: false })).status).toBe(200);
  });

  it('gives the slots of streams interrupted by a shutdown back', async () => {
    const capped = cappedApp({ MAX_STREAMS: '2' });
    const held = [await hold(capped, { address: '203.0.113.10' }), await hold(capped, { address: '203.0.113.11' })];
    const reading = held.map(async (reader) => {
      let text = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) text += new TextDecoder().decode(r.value);
      return text;
    });
    await capped.inFlight.shutdown(0);
    for (const text of await Promise.all(reading)) expect(text).toContain('"code":"interrupted"');
    await released(capped.slots);
  });

  it('turns every cap off with 0', async () => {
    const capped = cappedApp({ MAX_STREAMS: '0', MAX_STREAMS_PER_CALLER: '0', MAX_STREAMS_PER_ADDRESS: '0' });
    const session = newSession();
    const responses = await Promise.all(Array.from({ length: 12 }, () => send(capped, { session, mock: { fault: 'hang_after_first' } })));
    expect(responses.map((r) => r.status)).toEqual(Array(12).fill(200));
    await Promise.all(responses.map((r) => r.body!.cancel()));
    await released(capped.slots);
  });
});

describe('a slot is given back exactly once, however the request ends', () => {
  let db: TestStore;
  beforeAll(async () => {
    db = await testStore('sqlite');
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  type Ending = (capped: Capped) => Promise<unknown>;
  const readAll = async (res: Response) => (res.body ? readChunks(res.body) : null);
  const endings: Record<string, Ending> = {
    'completed stream': async (capped) => expect((await readChunks((await send(capped)).body!)).text).toContain('[DONE]'),
    'completed plain request': async (capped) => expect((await send(capped, { stream: false })).status).toBe(200),
    'client abort mid-stream': async (capped) => {
      const res = await send(capped, { mock: { chunks: 500, delay_ms: 5 } });
      const reader = res.body!.getReader();
      await reader.read();
      await reader.cancel();
    },
    'client abort before the upstream answered': async (capped) => {
      const controller = new AbortController();
      const before = mock.requests.length;
      const pending = send(capped, { mock: { first_byte_delay_ms: 60_000 }, signal: controller.signal });
      await waitFor(() => mock.requests.length > before);
      controller.abort();
      await Promise.resolve(pending).then(readAll, () => null);
    },
    'upstream drop mid-stream': async (capped) =>
      expect((await readChunks((await send(capped, { mock: { fault: 'drop', chunks: 6 } })).body!)).text).toContain('"code":"upstream_error"'),
    'upstream silent mid-stream (timeout)': async (capped) =>
      expect((await readChunks((await send(capped, { mock: { fault: 'hang_after_first' } })).body!)).text).toContain('"code":"upstream_timeout"'),
    'upstream silent before answering (504)': async (capped) => expect((await send(capped, { mock: { fault: 'hang' } })).status).toBe(504),
    'upstream error status': async (capped) => expect((await send(capped, { mock: { fault: 'status', status: 500 } })).status).toBe(500),
    'upstream drop in a plain answer': async (capped) => expect((await send(capped, { stream: false, mock: { fault: 'drop' } })).status).toBe(502),
    'refused by the request limits (400)': async (capped) => expect((await send(capped, { extra: { n: 5 } })).status).toBe(400),
  };

  it.each([
    ['a pure proxy', false],
    ['persistence on', true],
  ])('%s', async (_, persist) => {
    const capped = cappedApp({ MAX_STREAMS: '2', UPSTREAM_TIMEOUT_MS: '300' }, persist ? db.store : null);
    const unreachable = cappedApp({ MAX_STREAMS: '2', OPENAI_BASE_URL: refusedUrl }, persist ? db.store : null);
    const cases: [string, Ending][] = Object.entries(endings);
    cases.push(['upstream unreachable (502)', async () => expect((await send(unreachable)).status).toBe(502)]);
    if (persist) {
      cases.push([
        "refused before streaming: someone else's conversation (404)",
        async (app) => expect((await send(app, { extra: { conversation_id: crypto.randomUUID() } })).status).toBe(404),
      ]);
    }
    for (let round = 0; round < 3; round++) {
      for (const [name, end] of cases) {
        await end(capped);
        await waitFor(() => capped.slots.active === 0 && unreachable.slots.active === 0, 5_000).catch(() => {
          throw new Error(`a slot was not given back after: ${name} (${capped.slots.active} held)`);
        });
      }
    }
    // Two at once, as MAX_STREAMS says: the count is exactly zero, neither leaked nor below.
    const held = [await hold(capped, { address: '203.0.113.20' }), await hold(capped, { address: '203.0.113.21' })];
    expect((await send(capped, { address: '203.0.113.22' })).status).toBe(429);
    for (const reader of held) await reader.cancel();
    await released(capped.slots);
  });
});

describe('through a real server', () => {
  it('gives the slot back when the client hangs up', async () => {
    const config = testConfig({ PERSIST_TRANSCRIPTS: 'false', OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1', MAX_STREAMS_PER_CALLER: '1' });
    const server = await startServer(config, { logger: silent });
    try {
      const session = newSession();
      const open = (signal?: AbortSignal) =>
        fetch(`${server.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session },
          body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], stream: true, mock: { fault: 'hang_after_first' } }),
          signal,
        });
      for (let i = 0; i < 5; i++) {
        const controller = new AbortController();
        const res = await open(controller.signal);
        expect(res.status).toBe(200);
        await res.body!.getReader().read();
        expect((await open()).status).toBe(429);
        controller.abort();
        await waitFor(() => server.inFlight.slots.active === 0);
      }
    } finally {
      await server.close();
    }
  });
});

describe('configuration', () => {
  it('has the documented defaults, the per-address cap following the per-caller one', () => {
    expect(loadConfig({}).concurrency).toEqual({ perCaller: 8, perAddress: 32, total: 1000 });
    expect(loadConfig({ MAX_STREAMS_PER_CALLER: '3' }).concurrency).toEqual({ perCaller: 3, perAddress: 12, total: 1000 });
    expect(loadConfig({ MAX_STREAMS_PER_ADDRESS: '5' }).concurrency.perAddress).toBe(5);
  });

  it.each(['MAX_STREAMS_PER_CALLER', 'MAX_STREAMS_PER_ADDRESS', 'MAX_STREAMS'])('stops on a bad %s, naming it', (name) => {
    expect(() => loadConfig({ [name]: '-1' })).toThrow(new RegExp(`${name} \\(got "-1"\\): must be a whole number from 0`));
    expect(() => loadConfig({ [name]: 'many' })).toThrow(new RegExp(name));
  });
});
