import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import {
  eventsContent,
  expectConsistent,
  expectErrorShape,
  readConversation,
  settledConversation,
  sseEvents,
} from './helpers/conversation-checks.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import * as gen from './helpers/fuzz-inputs.js';
import { Ref, type BodyInput } from './helpers/fuzz-inputs.js';

/*
 * Property-based tests over every endpoint's body, query and path: whatever arrives, the answer
 * is a 2xx or a clear 4xx in OpenAI's error shape, never a 5xx, and a rejected request changes
 * nothing in the caller's data (nor anyone else's). Then the explicit edges: 1 MB bodies, JSON
 * nested 10 000 deep, U+0000 and lone surrogates.
 *
 * FUZZ_RUNS sets the runs per property (default 100). The seed is fixed so that every run of the
 * suite tries the same inputs; FUZZ_SEED=<n> replays a reported seed, FUZZ_SEED=random explores.
 */
const RUNS = Number(process.env.FUZZ_RUNS ?? 100);
const SEED = process.env.FUZZ_SEED === 'random' ? Date.now() : Number(process.env.FUZZ_SEED ?? 20_260_101);
const params = {
  numRuns: RUNS,
  seed: SEED,
  // Shrinking a failure through HTTP can take long: stop there and report what was found.
  interruptAfterTimeLimit: 25_000,
};
const PROPERTY_TIMEOUT = 60_000;
const BODY_LIMIT = 1_048_576;

const mock = useMockUpstream();

interface Reply {
  method: string;
  path: string;
  status: number;
  headers: Headers;
  json: any;
  text: string;
}

/** Any 4xx in OpenAI's shape, never a 5xx. */
function expectSane(reply: Reply) {
  expect(reply.status, `${reply.method} ${reply.path.slice(0, 200)} → ${reply.status} ${reply.text.slice(0, 300)}`).toBeLessThan(500);
  expect(reply.status).toBeGreaterThanOrEqual(200);
  if (reply.status >= 400 && reply.method !== 'HEAD') expectErrorShape(reply.json);
}

describe.each(dialects)('fuzzing every endpoint on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;
  const foreign = { session: newSession(), id: '' };

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    foreign.id = (await call(app, 'POST', '/v1/conversations', { session: foreign.session, body: { title: 'not yours' } })).json.id;
    await call(app, 'POST', `/v1/conversations/${foreign.id}/messages`, { session: foreign.session, body: { role: 'user', content: 'private' } });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  async function send(method: string, path: string, { session, body, contentType, headers = {} }: { session?: string; body?: string; contentType?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
    const all: Record<string, string> = { ...headers };
    if (contentType !== undefined) all['content-type'] = contentType;
    const res = await call(app, method, path, { session, body, headers: all });
    return { method, path, ...res };
  }

  /** Everything a session can see: its list (deleted included) and every live conversation's messages. */
  async function snapshot(session: string) {
    const items: any[] = [];
    let cursor: string | null = null;
    do {
      const page = await call(app, 'GET', `/v1/conversations?include_deleted=1&limit=100${cursor ? `&cursor=${cursor}` : ''}`, { session });
      expect(page.status, page.text).toBe(200);
      items.push(...page.json.items);
      cursor = page.json.next_cursor;
    } while (cursor);
    const messages: Record<string, unknown[]> = {};
    for (const c of items) if (!c.deleted_at) messages[c.id] = (await readConversation(app, c.id, session)).messages;
    return { items, messages };
  }

  interface Fixture {
    session: string;
    own: string;
    /** The one message of `own`. */
    message: string;
    deleted: string;
  }

  /** A fresh session with one conversation holding a message, and one deleted conversation. */
  async function seed(): Promise<Fixture> {
    const session = newSession();
    const own = (await call(app, 'POST', '/v1/conversations', { session, body: { title: 'seed', metadata: { pinned: false, tags: ['a'] } } })).json.id;
    const message = (await call(app, 'POST', `/v1/conversations/${own}/messages`, { session, body: { role: 'user', content: 'hello é漢🙂' } })).json.id;
    const deleted = (await call(app, 'POST', '/v1/conversations', { session, body: { title: 'gone' } })).json.id;
    await call(app, 'DELETE', `/v1/conversations/${deleted}`, { session });
    return { session, own, message, deleted };
  }

  const resolve = (ref: Ref, fx: Fixture): string => {
    const to = ref.to;
    if ('ref' in to) return to.ref === 'own' ? fx.own : to.ref === 'deleted' ? fx.deleted : foreign.id;
    return 'text' in to ? to.text : to.rawPath;
  };
  /** The id as a path segment: fixture ids as they are, text percent-encoded, raw pieces untouched. */
  const pathId = (ref: Ref, fx: Fixture): string => {
    const to = ref.to;
    return 'text' in to ? gen.percentEncode(to.text) : resolve(ref, fx);
  };
  const serialise = (body: BodyInput, fx: Fixture): string => {
    if ('raw' in body) return body.raw;
    const value = body.json;
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = v instanceof Ref ? resolve(v, fx) : v;
      return JSON.stringify(out);
    }
    return JSON.stringify(value);
  };

  /**
   * Runs one property: each input is sent for a seeded session; the reply must be sane, and a
   * rejected request must leave the session's data exactly as it was. After an accepted request
   * the next input gets a fresh session, so snapshots stay small.
   */
  async function fuzz<T>(arb: fc.Arbitrary<T>, request: (input: T, fx: Fixture) => Promise<Reply>, afterAccepted?: (reply: Reply, fx: Fixture) => Promise<void>) {
    let fx = await seed();
    let dirty = false;
    const foreignBefore = await snapshot(foreign.session);
    await fc.assert(
      fc.asyncProperty(arb, async (input) => {
        if (dirty) fx = await seed();
        const before = await snapshot(fx.session);
        dirty = true;
        const reply = await request(input, fx);
        expectSane(reply);
        if (reply.status < 300) {
          await afterAccepted?.(reply, fx);
          return;
        }
        expect(await snapshot(fx.session), `${reply.status} changed the data`).toEqual(before);
        dirty = false;
      }),
      params,
    );
    expect(await snapshot(foreign.session)).toEqual(foreignBefore);
  }

  const jsonMostly = fc.oneof({ weight: 6, arbitrary: fc.constant('application/json') }, { weight: 1, arbitrary: gen.contentTypes });
  const ownMostly = fc.oneof({ weight: 2, arbitrary: fc.constant(new Ref({ ref: 'own' })) }, { weight: 3, arbitrary: gen.anyRef });

  it('POST /v1/conversations: any body', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(fc.tuple(gen.bodyLike(gen.conversationShape), jsonMostly), ([body, contentType], fx) =>
      send('POST', '/v1/conversations', { session: fx.session, body: serialise(body, fx), contentType }),
    );
  });

  it('GET /v1/conversations: any query', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(gen.anyQuery, (query, fx) => send('GET', `/v1/conversations${query}`, { session: fx.session }));
  });

  it('GET /v1/conversations/:id: any id, any query', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(fc.tuple(ownMostly, gen.anyQuery), async ([ref, query], fx) => {
      const reply = await send('GET', `/v1/conversations/${pathId(ref, fx)}${query}`, { session: fx.session });
      if (reply.status === 200) expect(reply.json.id).toBe(fx.own);
      return reply;
    });
  });

  it('PATCH /v1/conversations/:id: any id, any body', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(fc.tuple(ownMostly, gen.bodyLike(gen.patchShape), jsonMostly), ([ref, body, contentType], fx) =>
      send('PATCH', `/v1/conversations/${pathId(ref, fx)}`, { session: fx.session, body: serialise(body, fx), contentType }),
    );
  });

  it('DELETE /v1/conversations/:id: any id', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(gen.anyRef, async (ref, fx) => {
      const reply = await send('DELETE', `/v1/conversations/${pathId(ref, fx)}`, { session: fx.session });
      if (reply.status < 300) expect(reply).toMatchObject({ status: 200, json: { object: 'conversation.deleted', deleted: true } });
      return reply;
    });
  });

  it('POST /v1/conversations/:id/messages: any id, any body', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(
      fc.tuple(ownMostly, gen.bodyLike(gen.messageShape), jsonMostly),
      ([ref, body, contentType], fx) => send('POST', `/v1/conversations/${pathId(ref, fx)}/messages`, { session: fx.session, body: serialise(body, fx), contentType }),
      async (reply, fx) => {
        expect(reply.status).toBe(201);
        expectConsistent(await readConversation(app, fx.own, fx.session));
      },
    );
  });

  it('POST /v1/conversations/:id/active and …/fork: any id, any body', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(
      fc.tuple(fc.constantFrom('active', 'fork'), ownMostly, gen.bodyLike(gen.messageIdShape), jsonMostly),
      ([action, ref, body, contentType], fx) =>
        send('POST', `/v1/conversations/${pathId(ref, fx)}/${action}`, { session: fx.session, body: serialise(body, fx).replaceAll(gen.OWN_MESSAGE, fx.message), contentType }),
      async (reply, fx) => {
        expect(reply.status).toBe(reply.path.endsWith('/fork') ? 201 : 200);
        expectConsistent(await readConversation(app, reply.json.id, fx.session));
      },
    );
  });

  it('POST /v1/chat/completions: any body, any x-conversation-id', { timeout: PROPERTY_TIMEOUT }, async () => {
    const header = fc.option(fc.oneof(gen.anyRef, gen.headerValue), { freq: 3 });
    await fuzz(
      fc.tuple(gen.bodyLike(gen.chatShape), jsonMostly, header),
      ([body, contentType, conversationHeader], fx) => {
        const headers: Record<string, string> = {};
        if (conversationHeader instanceof Ref) {
          const id = resolve(conversationHeader, fx);
          // Only what a client can put in a header.
          if (/^[\x20-\x7e\x80-\xff]*$/.test(id) && !/^\s|\s$/.test(id)) headers['x-conversation-id'] = id;
        } else if (typeof conversationHeader === 'string') headers['x-conversation-id'] = conversationHeader;
        return send('POST', '/v1/chat/completions', { session: fx.session, body: serialise(body, fx), contentType, headers });
      },
      async (reply, fx) => {
        // Accepted: the exchange settles into a consistent conversation.
        const id = reply.headers.get('x-conversation-id')!;
        expect(id).toBeTruthy();
        const saved = await settledConversation(app, id, fx.session);
        expectConsistent(saved);
        expect(saved.messages.at(-1)).toMatchObject({ role: 'assistant', status: 'final' });
        if (reply.headers.get('content-type')?.startsWith('text/event-stream')) expect(sseEvents(reply.text).at(-1)).toBe('[DONE]');
      },
    );
  });

  it('GET /healthz: any query', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fc.assert(
      fc.asyncProperty(gen.anyQuery, async (query) => {
        const reply = await send('GET', `/healthz${query}`);
        expect(reply.status).toBe(200);
        expect(reply.json).toMatchObject({ status: 'ok', persistence: { enabled: true, dialect, ok: true } });
      }),
      params,
    );
  });

  it('any method on any path', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fuzz(fc.tuple(gen.methods, gen.anyPath, gen.anyQuery, fc.option(gen.notJson)), async ([method, path, query, body], fx) => {
      const withBody = body !== null && method !== 'GET' && method !== 'HEAD';
      const reply = await send(method, `${path}${query}`, { session: fx.session, body: withBody ? body : undefined });
      return { ...reply, json: reply.status === 204 ? null : reply.json };
    }, async (reply) => {
      // Only the known routes accept anything ('..' segments resolve as in any URL); the web
      // page answers GET / and its files under /ui/.
      const path = new URL(reply.path, 'http://localhost').pathname;
      expect(reply.method === 'OPTIONS' || reply.method === 'HEAD' || /^\/(v1\/(conversations|chat)|healthz|$|ui\/)/.test(path), path).toBe(true);
    });
  });

  it('any x-session-id header and cf_session_id cookie', { timeout: PROPERTY_TIMEOUT }, async () => {
    await fc.assert(
      fc.asyncProperty(fc.option(gen.headerValue), fc.option(gen.headerValue), async (header, cookie) => {
        const headers: Record<string, string> = {};
        if (header !== null) headers['x-session-id'] = header;
        if (cookie !== null) headers.cookie = `cf_session_id=${cookie}`;
        const reply = await send('GET', '/v1/conversations', { headers });
        expectSane(reply);
        // Only a minted id passes: an arbitrary string is never a valid signed id (a value the
        // HTTP layer drops as unreadable reaches the server as no id at all).
        if (reply.status === 200) {
          expect([header, cookie]).not.toContain(reply.headers.get('x-session-id'));
          expect(reply.headers.get('x-session-id')).toMatch(/^[A-Za-z0-9_-]{24}\.[A-Za-z0-9_-]{22}$/);
        } else expect(reply.json.error).toMatchObject({ code: 'invalid_session_id' });
      }),
      params,
    );
  });

  describe('explicit edges', () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await seed();
    });

    /** A JSON body of exactly `bytes` bytes, its filler ending in multi-byte characters. */
    function bodyOfSize(bytes: number, make: (filler: string) => unknown): { body: string; filler: string } {
      const tail = 'é漢🙂'; // 2 + 3 + 4 bytes
      const room = bytes - Buffer.byteLength(JSON.stringify(make(''))) - Buffer.byteLength(tail);
      const filler = 'x'.repeat(room) + tail;
      const body = JSON.stringify(make(filler));
      expect(Buffer.byteLength(body)).toBe(bytes);
      return { body, filler };
    }

    it('accepts a message body of exactly BODY_LIMIT_BYTES and stores it whole', async () => {
      const { body, filler } = bodyOfSize(BODY_LIMIT, (content) => ({ role: 'user', content }));
      const reply = await send('POST', `/v1/conversations/${fx.own}/messages`, { session: fx.session, body, contentType: 'application/json' });
      expect(reply.status, reply.text.slice(0, 300)).toBe(201);
      const saved = await readConversation(app, fx.own, fx.session);
      expect(saved.messages.at(-1).content === filler).toBe(true);
      expectConsistent(saved);
    });

    it('streams a chat completion whose body is exactly BODY_LIMIT_BYTES and records it', async () => {
      const { body, filler } = bodyOfSize(BODY_LIMIT, (content) => ({ messages: [{ role: 'user', content }], stream: true }));
      const reply = await send('POST', '/v1/chat/completions', { session: fx.session, body, contentType: 'application/json' });
      expect(reply.status, reply.text.slice(0, 300)).toBe(200);
      expect(sseEvents(reply.text).at(-1)).toBe('[DONE]');
      const saved = await settledConversation(app, reply.headers.get('x-conversation-id')!, fx.session);
      expect(saved.messages[0].content === filler).toBe(true);
      expect(saved.messages[1]).toMatchObject({ role: 'assistant', status: 'final', content: eventsContent(sseEvents(reply.text)) });
    });

    it.each([
      ['POST', '/v1/conversations', (f: string) => ({ title: 't', metadata: { f } })],
      ['PATCH', '/v1/conversations/:own', (f: string) => ({ metadata: { f } })],
      ['POST', '/v1/conversations/:own/messages', (f: string) => ({ role: 'user', content: f })],
      ['POST', '/v1/chat/completions', (f: string) => ({ messages: [{ role: 'user', content: f }], stream: true })],
    ] as const)('answers 413 to %s %s one byte over BODY_LIMIT_BYTES, changing nothing', async (method, path, make) => {
      const before = await snapshot(fx.session);
      const { body } = bodyOfSize(BODY_LIMIT + 1, make);
      const reply = await send(method, path.replace(':own', fx.own), { session: fx.session, body, contentType: 'application/json' });
      expect(reply.status).toBe(413);
      expectErrorShape(reply.json);
      expect(reply.json.error).toMatchObject({ type: 'invalid_request_error', code: 'request_too_large' });
      expect(await snapshot(fx.session)).toEqual(before);
      expect(mock.requests).toHaveLength(0);
    });

    const DEPTH = 10_000;
    const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    const deepArray = (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`;

    it.each([
      ['POST /v1/conversations, metadata of nested objects', 'POST', '/v1/conversations', `{"title":"deep","metadata":{"x":${deepObject(DEPTH)}}}`],
      ['POST /v1/conversations, metadata of nested arrays', 'POST', '/v1/conversations', `{"title":"deep","metadata":{"x":${deepArray(DEPTH)}}}`],
      ['PATCH /v1/conversations/:id, metadata', 'PATCH', '/v1/conversations/:own', `{"metadata":{"x":${deepObject(DEPTH)}}}`],
      ['POST /v1/conversations/:id/messages, a content part', 'POST', '/v1/conversations/:own/messages', `{"role":"user","content":[{"type":"text","text":"hi","x":${deepArray(DEPTH)}}]}`],
      ['POST /v1/chat/completions, an extra field', 'POST', '/v1/chat/completions', `{"messages":[{"role":"user","content":"hi"}],"metadata":${deepObject(DEPTH)}}`],
      ['POST /v1/chat/completions, a content part', 'POST', '/v1/chat/completions', `{"messages":[{"role":"user","content":[{"type":"text","text":"hi","x":${deepArray(DEPTH)}}]}]}`],
    ])('JSON nested 10 000 deep in %s: a 2xx or a clear 4xx, consistent data', async (_, method, path, body) => {
      const before = await snapshot(fx.session);
      const reply = await send(method, path.replace(':own', fx.own), { session: fx.session, body, contentType: 'application/json' });
      expectSane(reply);
      if (reply.status >= 400) {
        expect(await snapshot(fx.session)).toEqual(before);
      } else if (path === '/v1/conversations') {
        const got = await call(app, 'GET', `/v1/conversations/${reply.json.id}`, { session: fx.session });
        expect(JSON.stringify(got.json.metadata)).toBe(JSON.stringify(JSON.parse(body).metadata));
      }
    });

    it('stores U+0000 in a posted message as U+FFFD, in both dialects', async () => {
      const reply = await send('POST', `/v1/conversations/${fx.own}/messages`, { session: fx.session, body: JSON.stringify({ role: 'user', content: 'a\u0000b\u0000' }), contentType: 'application/json' });
      expect(reply.status).toBe(201);
      expect(reply.json.content).toBe('a\uFFFDb\uFFFD');
      const saved = await readConversation(app, fx.own, fx.session);
      expect(saved.messages.at(-1)).toMatchObject({ role: 'user', status: 'final', content: 'a\uFFFDb\uFFFD' });
    });

    it.each([true, false])('relays U+0000 untouched and records it as U+FFFD (stream: %s)', async (stream) => {
      const reply = await send('POST', '/v1/chat/completions', {
        session: fx.session,
        body: JSON.stringify({ messages: [{ role: 'user', content: 'q\u0000r' }], stream, mock: { text: 'x\u0000y\u0000', chunks: 2 } }),
        contentType: 'application/json',
      });
      expect(reply.status, reply.text).toBe(200);
      let received: string;
      if (stream) {
        const events = sseEvents(reply.text);
        expect(events.at(-1)).toBe('[DONE]');
        received = eventsContent(events);
      } else {
        received = reply.json.choices[0].message.content;
      }
      // The client gets exactly what the upstream sent…
      expect(received).toBe('x\u0000y\u0000');
      // …and the record holds the documented substitute.
      const saved = await settledConversation(app, reply.headers.get('x-conversation-id')!, fx.session);
      expectConsistent(saved);
      expect(saved.title).toBe('q\uFFFDr');
      expect(saved.messages.map((m: any) => [m.role, m.status, m.content])).toEqual([
        ['user', 'final', 'q\uFFFDr'],
        ['assistant', 'final', 'x\uFFFDy\uFFFD'],
      ]);
    });
  });

  /*
   * Minimal cases of what the properties above found, one named test each, so a failure says
   * exactly what to fix.
   */
  describe('found by fuzzing', () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await seed();
    });

    it('a conversation id containing U+0000 is an ordinary 404 on every endpoint', async () => {
      const before = await snapshot(fx.session);
      for (const [method, path, body] of [
        ['GET', '/v1/conversations/a%00b', undefined],
        ['PATCH', '/v1/conversations/a%00b', '{"title":"x"}'],
        ['DELETE', '/v1/conversations/%00', undefined],
        ['POST', '/v1/conversations/%00/messages', '{"role":"user","content":"x"}'],
        ['POST', '/v1/chat/completions', JSON.stringify({ messages: [{ role: 'user', content: 'x' }], conversation_id: 'a\u0000b' })],
      ] as const) {
        const reply = await send(method, path, { session: fx.session, body, contentType: 'application/json' });
        expect(reply.status, `${method} ${path}: ${reply.text}`).toBe(404);
        expectErrorShape(reply.json);
      }
      expect(await snapshot(fx.session)).toEqual(before);
      expect(mock.requests).toHaveLength(0);
    });

    it.each([
      ['a date past the end of time', [8.64e15 + 1, crypto.randomUUID()]],
      ['a date before the start of time', [-8.64e15 - 1, crypto.randomUUID()]],
      ['a date in the year 10000', [253_402_300_800_000, crypto.randomUUID()]],
      ['a date in the year 275760', [8.64e15, crypto.randomUUID()]],
      ['an id containing U+0000', [Date.now(), 'a\u0000b']],
    ])('a list cursor naming an impossible position (%s) is a 400', async (_, position) => {
      const cursor = Buffer.from(JSON.stringify(position)).toString('base64url');
      const reply = await send('GET', `/v1/conversations?cursor=${cursor}`, { session: fx.session });
      expect(reply.status, reply.text).toBe(400);
      expect(reply.json.error).toMatchObject({ type: 'invalid_request_error', param: 'cursor' });
    });

    it.each(['2147483648', '9007199254740991'])('after_seq=%s, past any seq, is an empty last page (or a 400 naming after_seq)', async (afterSeq) => {
      const reply = await send('GET', `/v1/conversations/${fx.own}?after_seq=${afterSeq}`, { session: fx.session });
      if (reply.status === 400) {
        expect(reply.json.error).toMatchObject({ type: 'invalid_request_error', param: 'after_seq' });
      } else {
        expect(reply.status, reply.text).toBe(200);
        expect(reply.json).toMatchObject({ id: fx.own, messages: [], next_after_seq: null });
      }
    });

    it('lone surrogates are stored as U+FFFD, the same in both dialects', async () => {
      const made = await send('POST', '/v1/conversations', {
        session: fx.session,
        body: JSON.stringify({ title: 'a\ud800b', metadata: { 'k\udc00': 'v\ud800', list: ['\udfff'] } }),
        contentType: 'application/json',
      });
      expect(made.status, made.text).toBe(201);
      const got = await call(app, 'GET', `/v1/conversations/${made.json.id}`, { session: fx.session });
      expect(got.json.title).toBe('a\uFFFDb');
      expect(got.json.metadata).toEqual({ 'k\uFFFD': 'v\uFFFD', list: ['\uFFFD'] });

      const posted = await send('POST', `/v1/conversations/${made.json.id}/messages`, {
        session: fx.session,
        body: JSON.stringify({ role: 'user', content: [{ type: 'text', text: 'x\ud800y' }] }),
        contentType: 'application/json',
      });
      expect(posted.status, posted.text).toBe(201);
      expect(posted.json.content).toBe('x\uFFFDy');
      expect(posted.json.content_json).toEqual([{ type: 'text', text: 'x\uFFFDy' }]);
    });

    it('a chat request with lone surrogates in tool calls is saved, not a 500', async () => {
      const reply = await send('POST', '/v1/chat/completions', {
        session: fx.session,
        body: JSON.stringify({
          messages: [
            { role: 'user', content: 'q' },
            { role: 'assistant', content: null, tool_calls: [{ id: 'c\ud800', type: 'function', function: { name: 'f', arguments: '{"x":"\udc00"}' } }] },
            { role: 'tool', tool_call_id: 'c\ud800', content: 'r' },
          ],
        }),
        contentType: 'application/json',
      });
      expect(reply.status, reply.text).toBe(200);
      const saved = await settledConversation(app, reply.headers.get('x-conversation-id')!, fx.session);
      expectConsistent(saved);
      expect(saved.messages[1].tool_calls[0].id).toBe('c\uFFFD');
    });

    it('a chat request over MAX_MESSAGES_PER_CONVERSATION is refused and leaves no conversation behind', async () => {
      const limited = testApp(db.store, { OPENAI_BASE_URL: mock.url, MAX_MESSAGES_PER_CONVERSATION: '3' });
      const session = newSession();
      for (const stream of [true, false]) {
        const res = await call(limited, 'POST', '/v1/chat/completions', {
          session,
          body: { messages: [1, 2, 3, 4].map((i) => ({ role: 'user', content: `m${i}` })), stream },
        });
        expect(res.status).toBe(429);
        expect(res.json.error).toMatchObject({ type: 'rate_limit_error', code: 'limit_exceeded' });
      }
      expect((await call(limited, 'GET', '/v1/conversations?include_deleted=1', { session })).json.items).toEqual([]);
      expect(mock.requests).toHaveLength(0);
    });
  });
});
