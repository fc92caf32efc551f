import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockAnswer, startMockUpstream, type MockOptions, type MockUpstream } from '../mock/upstream.js';
import { newSession, testApp, type TestApp } from './helpers/app.js';
import {
  eventJson,
  eventsContent,
  expectConsistent,
  expectErrorShape,
  settledConversation,
  sseEvents,
} from './helpers/conversation-checks.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { inBatches, startScriptedUpstream, type Script, type ScriptedUpstream } from './helpers/scripted-upstream.js';
import { normalizeMock, readChunks } from './helpers/streams.js';

/*
 * Every way an upstream can fail, on both paths (streaming and not) and both dialects. Each case
 * checks what the client gets (status, body shape, the last SSE event) and what the database
 * holds afterwards: the user message, the assistant message in a terminal status with its
 * finish_reason and exactly the text the client received, seqs dense, nothing left streaming.
 */

const TIMEOUT_MS = '300';
const QUESTION = 'Question? é漢🙂';
// Multi-byte everywhere, so byte-level splits land inside UTF-8 sequences often.
const ANSWER_TEXT = 'Grüße é 漢字 🙂🙂 naïve — ok';

let mock: MockUpstream;
let refusedUrl: string;

beforeAll(async () => {
  mock = await startMockUpstream();
  // A port that was just free: nothing listens there, so connecting is refused.
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
  refusedUrl = `http://127.0.0.1:${port}/v1`;
});
afterAll(async () => {
  await mock?.close();
});
beforeEach(() => mock.reset());

interface Exchange {
  status: number;
  headers: Headers;
  bytes: Buffer;
  text: string;
  json: any;
  id: string;
  session: string;
}

/** One chat completion through the app, read to the end. */
async function exchange(app: TestApp, body: Record<string, unknown>): Promise<Exchange> {
  const session = newSession();
  const res = await app.request('/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-session-id': session },
    body: JSON.stringify({ messages: [{ role: 'user', content: QUESTION }], ...body }),
  });
  const { bytes, text } = await readChunks(res.body!);
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // a stream, or a body that is not JSON
  }
  const id = res.headers.get('x-conversation-id');
  expect(id, `x-conversation-id on a ${res.status} answer`).toMatch(/^[0-9a-f-]{36}$/);
  return { status: res.status, headers: res.headers, bytes, text, json, id: id!, session };
}

type Expected =
  /** 200 and a complete answer; the assistant message is final. */
  | { kind: 'answer'; content: string; finishReason?: string }
  /** 200, then the stream ends with an SSE error event carrying `code`; the message is error. */
  | {
      kind: 'stream-error';
      code: 'upstream_error' | 'upstream_timeout';
      someContent?: boolean;
      /** The cut came after `data: [DONE]` but before its blank line: the client may see both. */
      doneMayPrecede?: boolean;
    }
  /** An HTTP error in OpenAI's shape; the message is error with `finishReason`. */
  | { kind: 'http-error'; status: number; type: string; code: string | null; finishReason: string; body?: unknown };

/** Checks the client's outcome and the conversation it left behind. */
async function expectOutcome(app: TestApp, ex: Exchange, stream: boolean, expected: Expected) {
  let received: string;
  if (expected.kind === 'answer') {
    expect(ex.status, ex.text).toBe(200);
    if (stream) {
      const events = sseEvents(ex.text);
      expect(events.at(-1)).toBe('[DONE]');
      received = eventsContent(events);
    } else {
      expect(ex.json).toMatchObject({ object: 'chat.completion' });
      received = ex.json.choices[0].message.content;
    }
    expect(received).toBe(expected.content);
  } else if (expected.kind === 'stream-error') {
    expect(ex.status).toBe(200);
    const events = sseEvents(ex.text);
    if (!expected.doneMayPrecede) expect(events).not.toContain('[DONE]');
    // The last event a client sees is the error, readable on its own.
    expect(eventJson(events.at(-1)), `last event of ${JSON.stringify(ex.text.slice(-300))}`).toMatchObject({
      error: { type: 'upstream_error', code: expected.code },
    });
    expectErrorShape(eventJson(events.at(-1)));
    received = eventsContent(events);
    if (expected.someContent) expect(received.length).toBeGreaterThan(0);
  } else {
    expect(ex.status, ex.text).toBe(expected.status);
    expect(ex.headers.get('content-type')).toMatch(/^application\/json/);
    if (expected.body !== undefined) {
      expect(ex.json).toEqual(expected.body);
    } else {
      expectErrorShape(ex.json);
      expect(ex.json.error).toMatchObject({ type: expected.type, code: expected.code });
    }
    received = '';
  }

  const saved = await settledConversation(app, ex.id, ex.session);
  expectConsistent(saved);
  expect(saved.messages.map((m: any) => [m.seq, m.role, m.status])).toEqual([
    [1, 'user', 'final'],
    [2, 'assistant', expected.kind === 'answer' ? 'final' : 'error'],
  ]);
  expect(saved.messages[0].content).toBe(QUESTION);
  const answer = saved.messages[1];
  expect(answer.content).toBe(received);
  if (expected.kind === 'answer') expect(answer.finish_reason).toBe(expected.finishReason ?? 'stop');
  else if (expected.kind === 'stream-error') expect(answer.finish_reason).toBe(expected.code);
  else expect(answer.finish_reason).toBe(expected.finishReason);
  return saved;
}

const modes = [
  { mode: 'streaming', stream: true },
  { mode: 'non-streaming', stream: false },
] as const;

describe.each(dialects)('upstream faults on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;
  let quick: TestApp;
  let refused: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
    quick = testApp(db.store, { OPENAI_BASE_URL: mock.url, UPSTREAM_TIMEOUT_MS: TIMEOUT_MS });
    refused = testApp(db.store, { OPENAI_BASE_URL: refusedUrl });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  describe.each(modes)('$mode', ({ stream }) => {
    const ask = (mockOptions: MockOptions = {}) => ({ stream, mock: mockOptions });

    it('connection refused: 502 upstream_unreachable', async () => {
      const ex = await exchange(refused, ask());
      await expectOutcome(app, ex, stream, { kind: 'http-error', status: 502, type: 'upstream_error', code: 'upstream_unreachable', finishReason: 'upstream_unreachable' });
      expect(ex.json.error.message).toContain('127.0.0.1');
    });

    it('connection reset before the first byte: 502 upstream_unreachable', async () => {
      const ex = await exchange(app, ask({ fault: 'reset' }));
      await expectOutcome(app, ex, stream, { kind: 'http-error', status: 502, type: 'upstream_error', code: 'upstream_unreachable', finishReason: 'upstream_unreachable' });
    });

    it.each([0, 4])('connection dropped mid-answer (after %i content chunks)', async (dropAfter) => {
      // Paced, so the chunks before the drop reach the proxy before the connection goes.
      const ex = await exchange(app, ask({ fault: 'drop', chunks: 10, drop_after: dropAfter, delay_ms: 5 }));
      if (stream) {
        const saved = await expectOutcome(app, ex, stream, { kind: 'stream-error', code: 'upstream_error', someContent: dropAfter > 0 });
        expect(mockAnswer({ chunks: 10 }).startsWith(saved.messages[1].content)).toBe(true);
      } else {
        await expectOutcome(app, ex, stream, { kind: 'http-error', status: 502, type: 'upstream_error', code: 'upstream_error', finishReason: 'upstream_error' });
      }
    });

    it('a malformed event (or a body that is not JSON)', async () => {
      const ex = await exchange(app, ask({ fault: 'malformed', text: ANSWER_TEXT, chunks: 5 }));
      if (stream) {
        // Passed on untouched and skipped by the recorder; the rest of the answer is kept.
        expect(ex.text).toContain('data: {not json\n\n');
        await expectOutcome(app, ex, stream, { kind: 'answer', content: ANSWER_TEXT });
      } else {
        // The upstream said 200 but sent '{not json': the client must not get a 200 it cannot
        // parse while the database records an error.
        await expectOutcome(app, ex, stream, {
          kind: 'http-error',
          status: 502,
          type: 'upstream_error',
          code: 'upstream_invalid_response',
          finishReason: 'upstream_invalid_response',
        });
      }
    });

    it.each([1, 2, 3, 5, 7, 64])('the answer written in raw %i-byte pieces, across events and UTF-8 characters', async (split) => {
      const options: MockOptions = { text: ANSWER_TEXT, chunks: 6, split_bytes: split };
      const ex = await exchange(app, ask(options));
      await expectOutcome(app, ex, stream, { kind: 'answer', content: ANSWER_TEXT });
      // Byte for byte what the upstream sent (ids and timestamps aside).
      const direct = await fetch(`${mock.url}/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: QUESTION }], stream, mock: options }),
      });
      expect(normalizeMock(ex.text)).toBe(normalizeMock(await direct.text()));
    });

    it('silence before the first byte: 504 upstream_timeout', async () => {
      const ex = await exchange(quick, ask({ fault: 'hang' }));
      await expectOutcome(app, ex, stream, { kind: 'http-error', status: 504, type: 'timeout_error', code: 'upstream_timeout', finishReason: 'upstream_timeout' });
    });

    it('silence after the first byte', async () => {
      const ex = await exchange(quick, ask({ fault: 'hang_after_first', text: ANSWER_TEXT, chunks: 4 }));
      if (stream) {
        await expectOutcome(app, ex, stream, { kind: 'stream-error', code: 'upstream_timeout', someContent: true });
      } else {
        await expectOutcome(app, ex, stream, { kind: 'http-error', status: 504, type: 'timeout_error', code: 'upstream_timeout', finishReason: 'upstream_timeout' });
      }
    });

    describe.each([400, 401, 429, 500, 503])('upstream status %i', (status) => {
      const openAiError = { error: { message: `upstream says ${status}`, type: 'some_error', param: null, code: `c${status}` } };

      it('with an OpenAI error body: status and body passed through', async () => {
        const ex = await exchange(app, ask({ fault: 'status', status, error_body: openAiError }));
        await expectOutcome(app, ex, stream, { kind: 'http-error', status, type: 'some_error', code: `c${status}`, finishReason: 'upstream_error', body: openAiError });
      });

      it.each([
        ['no body', null, null],
        ['a text body', 'Service trouble <html>', 'Service trouble <html>'],
        ['a JSON body not in OpenAI shape', { detail: 'nope' }, '{"detail":"nope"}'],
      ])('with %s: wrapped in OpenAI shape, status kept', async (_, errorBody, shown) => {
        const ex = await exchange(app, ask({ fault: 'status', status, error_body: errorBody }));
        await expectOutcome(app, ex, stream, { kind: 'http-error', status, type: 'upstream_error', code: `upstream_${status}`, finishReason: 'upstream_error' });
        if (shown) expect(ex.json.error.message).toContain(shown);
      });
    });
  });
});

/*
 * A fixed upstream body cut at every byte position. The scripted upstream writes exactly two
 * pieces (the cut at byte k, a short pause between) and then the rest, a dropped connection or
 * silence. The proxy must pass the bytes on unchanged and record exactly the text the client can
 * read, whatever k is: between events, inside `data: `, inside JSON, inside a UTF-8 character.
 */
const chunk = (delta: unknown, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const SPLIT_PIECES = ['é漢🙂', ' Grüße 漢字 🙂', ' 🙂é—ok'];
const SPLIT_TEXT = SPLIT_PIECES.join('');
const SSE_BODY = Buffer.from(
  chunk({ role: 'assistant', content: SPLIT_PIECES[0] }) + chunk({ content: SPLIT_PIECES[1] }) + chunk({ content: SPLIT_PIECES[2] }) + chunk({}, 'stop') + 'data: [DONE]\n\n',
);
const JSON_BODY = Buffer.from(
  JSON.stringify({
    id: 'c1',
    object: 'chat.completion',
    created: 0,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content: SPLIT_TEXT }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
  }),
);
const positions = (body: Buffer, from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Byte offsets that fall inside a multi-byte UTF-8 character (continuation bytes). */
const insideCharacters = (body: Buffer) => positions(body, 1, body.length - 1).filter((k) => (body[k]! & 0xc0) === 0x80);
/** 1, 2, 3, 5, 7, 8 → "1-3, 5, 7-8" */
function ranges(ks: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ks.length; i++) {
    let j = i;
    while (j + 1 < ks.length && ks[j + 1] === ks[j]! + 1) j++;
    out.push(i === j ? `${ks[i]}` : `${ks[i]}-${ks[j]}`);
    i = j;
  }
  return out.join(', ');
}

/**
 * Every k on SQLite. On Postgres (slower per request, and the byte handling is the same code) a
 * sample that keeps what matters: every cut inside a character, around every line and event
 * boundary, and every 7th byte.
 */
function cuts(dialect: string, body: Buffer, from: number, to: number): number[] {
  const all = positions(body, from, to);
  if (dialect === 'sqlite') return all;
  const keep = new Set(insideCharacters(body));
  for (let i = body.indexOf('\n'); i !== -1; i = body.indexOf('\n', i + 1)) for (const k of [i - 1, i, i + 1, i + 2]) keep.add(k);
  return all.filter((k) => keep.has(k) || k % 7 === 0);
}

describe('the scripted bodies', () => {
  it('are small, and have plenty of cuts inside multi-byte characters', () => {
    for (const body of [SSE_BODY, JSON_BODY]) {
      expect(body.length).toBeGreaterThan(200);
      expect(body.length).toBeLessThan(600);
      expect(insideCharacters(body).length).toBeGreaterThan(15);
    }
  });
});

describe.each(dialects)('an upstream body cut at every byte position on %s', (dialect) => {
  let db: TestStore;
  let upstream: ScriptedUpstream;
  let app: TestApp;
  let quick: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    upstream = await startScriptedUpstream((request): Script => {
      const s = request?.script ?? {};
      return { contentType: request?.stream ? 'text/event-stream' : 'application/json', body: request?.stream ? SSE_BODY : JSON_BODY, at: s.at, then: s.then };
    });
    app = testApp(db.store, { OPENAI_BASE_URL: upstream.url });
    quick = testApp(db.store, { OPENAI_BASE_URL: upstream.url, UPSTREAM_TIMEOUT_MS: TIMEOUT_MS });
  });
  afterAll(async () => {
    await upstream?.close();
    await db?.cleanup();
  });

  /**
   * Runs `check` for every k, several at a time, and fails once with the list of positions that
   * failed (and the first failure's message) rather than stopping at the first.
   */
  async function everyPosition(ks: number[], check: (k: number) => Promise<void>) {
    const failures = (
      await inBatches(ks, 8, async (k) => {
        try {
          await check(k);
          return null;
        } catch (err) {
          return { k, message: (err as Error).message };
        }
      })
    ).filter((f) => f !== null);
    const summary = failures.length
      ? `${failures.length} of ${ks.length} positions failed (k = ${ranges(failures.map((f) => f.k))}); first, at k=${failures[0]!.k}:\n${failures[0]!.message}`
      : '';
    expect(summary).toBe('');
  }

  /**
   * A stream the upstream cut at byte k: before the error event, the client has a prefix of what
   * the upstream sent (all of it, or up to the last complete event), then the error event as an
   * event of its own, and the database holds exactly the text those events carry.
   */
  async function expectCutStream(ex: Exchange, k: number, code: 'upstream_error' | 'upstream_timeout') {
    const at = ex.bytes.lastIndexOf('data: {"error"');
    expect(at, `no error event in ${JSON.stringify(ex.text.slice(-200))}`).toBeGreaterThanOrEqual(0);
    let before = ex.bytes.subarray(0, at);
    while (before.length && before[before.length - 1] === 0x0a) before = before.subarray(0, before.length - 1);
    expect(before.length).toBeLessThanOrEqual(k);
    expect(before.equals(SSE_BODY.subarray(0, before.length)), `client bytes before the error event at k=${k}`).toBe(true);
    await expectOutcome(app, ex, true, { kind: 'stream-error', code, doneMayPrecede: k > SSE_BODY.lastIndexOf('data: [DONE]') + 11 });
  }

  /*
   * Streams run twice: once as a client that asks for usage itself (the bytes are relayed as they
   * come), once as one that does not (the server asks on its behalf and filters the usage back
   * out, holding partial events until their end arrives).
   */
  const usageModes = [
    { usage: 'the client asks for usage', extra: { stream_options: { include_usage: true } } },
    { usage: 'the server asks for usage', extra: {} },
  ];

  it.each(usageModes)('streaming, split in two at every k ($usage): the client gets the exact bytes, the database the exact text', async ({ extra }) => {
    await everyPosition(cuts(dialect, SSE_BODY, 1, SSE_BODY.length - 1), async (k) => {
      const ex = await exchange(app, { stream: true, ...extra, script: { at: k, then: 'rest' } });
      expect(ex.bytes.equals(SSE_BODY), `client bytes at k=${k}`).toBe(true);
      await expectOutcome(app, ex, true, { kind: 'answer', content: SPLIT_TEXT });
    });
  });

  it('non-streaming, split in two at every k: the same', async () => {
    await everyPosition(cuts(dialect, JSON_BODY, 1, JSON_BODY.length - 1), async (k) => {
      const ex = await exchange(app, { stream: false, script: { at: k, then: 'rest' } });
      expect(ex.bytes.equals(JSON_BODY), `client bytes at k=${k}`).toBe(true);
      const saved = await expectOutcome(app, ex, false, { kind: 'answer', content: SPLIT_TEXT });
      expect(saved.messages[1]).toMatchObject({ tokens_in: 3, tokens_out: 5 });
    });
  });

  it.each(usageModes)('streaming, connection dropped at every k ($usage): what was sent, then an error event a client can read', async ({ extra }) => {
    await everyPosition(cuts(dialect, SSE_BODY, 0, SSE_BODY.length - 1), async (k) => {
      const ex = await exchange(app, { stream: true, ...extra, script: { at: k, then: 'drop' } });
      await expectCutStream(ex, k, 'upstream_error');
    });
  });

  it('non-streaming, connection dropped at every k: 502, recorded as an error', async () => {
    await everyPosition(cuts(dialect, JSON_BODY, 0, JSON_BODY.length - 1), async (k) => {
      const ex = await exchange(app, { stream: false, script: { at: k, then: 'drop' } });
      await expectOutcome(app, ex, false, { kind: 'http-error', status: 502, type: 'upstream_error', code: 'upstream_error', finishReason: 'upstream_error' });
    });
  });

  it.each(usageModes)('streaming, silence after a cut inside an event or a character ($usage): what was sent, then a timeout event', async ({ extra }) => {
    const inEvent = SSE_BODY.indexOf('"content"') + 3;
    const inChar = insideCharacters(SSE_BODY)[4]!;
    const afterEvent = SSE_BODY.indexOf('\n\n') + 2;
    await everyPosition([inEvent, inChar, afterEvent - 2, afterEvent - 1, afterEvent], async (k) => {
      const ex = await exchange(quick, { stream: true, ...extra, script: { at: k, then: 'hang' } });
      await expectCutStream(ex, k, 'upstream_timeout');
    });
  });

  it('non-streaming, silence after a cut inside a character: 504', async () => {
    const ex = await exchange(quick, { stream: false, script: { at: insideCharacters(JSON_BODY)[2]!, then: 'hang' } });
    await expectOutcome(app, ex, false, { kind: 'http-error', status: 504, type: 'timeout_error', code: 'upstream_timeout', finishReason: 'upstream_timeout' });
  });
});
