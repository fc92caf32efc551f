// Virtual clients of `npm run soak`: multi-turn streaming conversations with random upstream
// faults and client aborts, recording exactly what each client saw.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { mockAnswer, type MockOptions } from '../mock/upstream.js';

// ---------- randomness (seeded, so a run's plans can be reproduced) ----------

export type Rng = () => number;

/** mulberry32: small, fast, good enough for test data. */
export function rng32(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const between = (rng: Rng, lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));

// One entry = one code point: ASCII, 2-, 3- and 4-byte UTF-8 (emoji = surrogate pair in UTF-16),
// quotes, backslashes, control whitespace and markup. No U+0000 (Postgres stores it as U+FFFD).
const ALPHABET: readonly string[] = [
  ...Array.from('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'),
  ...Array.from('          '),
  'é', 'ß', 'ñ', 'ø', 'Ж', 'Ω', '—', '…', '€', '漢', '字', 'の', '한', '🙂', '🚀', '👍', '𝄞',
  '"', "'", '\\', '\n', '\t', '<', '>', '&', '%', '_', ';', '{', '}', '`',
];
const SPICE = ["'); DROP TABLE messages; --", '${x}', '\\u0000', '<script>alert(1)</script>', 'NULL', '\r\n'];

/** `length` code points of mixed text. */
export function randomText(rng: Rng, length: number): string {
  const out: string[] = [];
  while (out.length < length) {
    if (rng() < 0.02) {
      for (const ch of Array.from(SPICE[between(rng, 0, SPICE.length - 1)]!)) if (out.length < length) out.push(ch);
    } else {
      out.push(ALPHABET[between(rng, 0, ALPHABET.length - 1)]!);
    }
  }
  return out.join('');
}

// ---------- what a turn asks of the mock upstream ----------

export type Fault = 'none' | 'malformed' | 'drop' | 'status' | 'hang_after_first' | 'hang' | 'reset';

export interface TurnPlan {
  fault: Fault;
  /** Client cancels after it has seen this many content deltas (null: reads to the end). */
  abortAfter: number | null;
  mock: MockOptions;
  /** The whole answer the mock would give (mockAnswer). */
  full: string;
}

export function planTurn(rng: Rng): TurnPlan {
  const chunks = between(rng, 10, 80);
  const size = between(rng, 1, 12);
  const mock: MockOptions = { chunks, delay_ms: between(rng, 0, 10) };
  // Mostly a unique text per turn (so a mix-up between conversations cannot go unnoticed),
  // sometimes the mock's own alphabet (é 漢 🙂) sized by chunk_size.
  if (rng() < 0.8) mock.text = randomText(rng, chunks * size);
  else mock.chunk_size = size;
  let fault: Fault = 'none';
  let abortAfter: number | null = null;
  const r = rng();
  if (r < 0.52) {
    // normal
  } else if (r < 0.67) {
    abortAfter = between(rng, 0, chunks - 1);
    mock.delay_ms = Math.max(2, mock.delay_ms ?? 0);
  } else if (r < 0.69) {
    fault = 'hang_after_first';
    abortAfter = between(rng, 0, 1);
  } else if (r < 0.79) {
    fault = 'drop';
    mock.drop_after = between(rng, 0, chunks - 1);
  } else if (r < 0.87) {
    fault = 'malformed';
    mock.malformed_after = between(rng, 0, chunks);
  } else if (r < 0.93) {
    fault = 'status';
    mock.status = rng() < 0.5 ? 500 : 429;
  } else if (r < 0.97) {
    fault = 'hang_after_first';
  } else if (r < 0.99) {
    fault = 'reset';
  } else {
    fault = 'hang';
  }
  if (fault !== 'none') mock.fault = fault;
  return { fault, abortAfter, mock, full: mockAnswer(mock) };
}

/** The first `k` of the mock's `chunks` pieces, joined (pieces split the answer by code points). */
export function answerPrefix(plan: TurnPlan, k: number): string {
  const cps = Array.from(plan.full);
  const n = plan.mock.chunks ?? 8;
  return cps.slice(0, Math.floor((Math.min(k, n) * cps.length) / n)).join('');
}

/** Plain-language name of a plan, for the outcome table. */
export function planLabel(plan: TurnPlan): string {
  if (plan.abortAfter !== null) return plan.fault === 'none' ? 'client abort' : `client abort during ${plan.fault}`;
  if (plan.fault === 'status') return `upstream ${plan.mock.status}`;
  return plan.fault === 'none' ? 'normal' : `upstream ${plan.fault}`;
}

// ---------- what the client saw ----------

export type Outcome =
  | 'done' // [DONE] received
  | 'sse_error' // an SSE error event ended the stream
  | 'http_error' // non-200 status
  | 'abort' // the client cancelled
  | 'incomplete' // 200 stream ended with neither [DONE] nor an error event
  | 'network_error'
  | 'timeout';

export interface TurnRecord {
  index: number;
  user: string;
  plan: TurnPlan;
  server: number;
  status: number;
  outcome: Outcome;
  /** Assistant text assembled from the content deltas the client read. */
  seen: string;
  /** Non-empty content deltas read. */
  deltas: number;
  /** Events that were not JSON (the malformed fault passes through unchanged). */
  unreadable: number;
  /** Events after [DONE] or after an error event (should never happen). */
  afterEnd: number;
  /** `code` of the SSE error event, or of the HTTP error body. */
  errorCode: string | null;
  errorBody: string | null;
  conversationHeader: string | null;
  /** When the request was sent (ms, performance.now() of the soak process). */
  startedAt: number;
  /** Set when the request needed a new connection: ms until it was connected. */
  connectMs: number | null;
  /** ms until the response headers arrived. */
  headersMs: number | null;
  ttfbMs: number | null;
  durationMs: number;
  detail: string | null;
}

export interface ConversationRecord {
  phase: string;
  sessionId: string;
  id: string | null;
  system: string | null;
  turns: TurnRecord[];
}

/** Minimal SSE reader, independent from the server's: only `data:` lines, events split on blank lines. */
class SseReader {
  private readonly decoder = new TextDecoder();
  private buf = '';
  seen = '';
  deltas = 0;
  done = false;
  error: { code: string | null; message: string } | null = null;
  unreadable = 0;
  afterEnd = 0;

  push(bytes: Uint8Array): void {
    this.buf += this.decoder.decode(bytes, { stream: true });
    this.drain();
  }

  end(): void {
    this.buf += this.decoder.decode();
    this.drain();
  }

  private drain(): void {
    for (;;) {
      const m = /\r?\n\r?\n/.exec(this.buf);
      if (!m) return;
      const raw = this.buf.slice(0, m.index);
      this.buf = this.buf.slice(m.index + m[0].length);
      this.event(raw);
    }
  }

  private event(raw: string): void {
    const data = raw
      .split(/\r?\n/)
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).replace(/^ /, ''))
      .join('\n');
    if (!data) return;
    if (this.done || this.error) this.afterEnd++;
    if (data === '[DONE]') {
      this.done = true;
      return;
    }
    let obj: any;
    try {
      obj = JSON.parse(data);
    } catch {
      this.unreadable++;
      return;
    }
    if (obj?.error) {
      this.error = { code: typeof obj.error.code === 'string' ? obj.error.code : null, message: String(obj.error.message ?? '') };
      return;
    }
    const content = obj?.choices?.[0]?.delta?.content;
    if (typeof content === 'string' && content) {
      this.seen += content;
      this.deltas++;
    }
  }
}

export interface Endpoint {
  url: string;
  agent: http.Agent;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

const REQUEST_TIMEOUT_MS = 30_000;

/** One streaming chat request; resolves with what the client saw (never rejects). */
export function runTurn(
  endpoint: Endpoint,
  init: { sessionId: string; conversationId: string | null; messages: ChatMessage[]; plan: TurnPlan; includeUsage: boolean },
  meta: { index: number; user: string; server: number },
): Promise<TurnRecord> {
  const { plan } = init;
  const body = Buffer.from(
    JSON.stringify({
      model: 'mock-model',
      messages: init.messages,
      stream: true,
      ...(init.includeUsage ? { stream_options: { include_usage: true } } : {}),
      mock: plan.mock,
    }),
  );
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/json',
    'content-length': body.length,
    accept: 'text/event-stream',
    'x-session-id': init.sessionId,
  };
  if (init.conversationId) headers['x-conversation-id'] = init.conversationId;

  return new Promise((resolve) => {
    const t0 = performance.now();
    const reader = new SseReader();
    const record: TurnRecord = {
      index: meta.index,
      user: meta.user,
      plan,
      server: meta.server,
      status: 0,
      outcome: 'network_error',
      seen: '',
      deltas: 0,
      unreadable: 0,
      afterEnd: 0,
      errorCode: null,
      errorBody: null,
      conversationHeader: null,
      startedAt: t0,
      connectMs: null,
      headersMs: null,
      ttfbMs: null,
      durationMs: 0,
      detail: null,
    };
    let finished = false;
    const finish = (outcome: Outcome, detail: string | null = null): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      record.outcome = outcome;
      record.detail = detail;
      record.seen = reader.seen;
      record.deltas = reader.deltas;
      record.unreadable = reader.unreadable;
      record.afterEnd = reader.afterEnd;
      if (outcome === 'sse_error') record.errorCode = reader.error?.code ?? null;
      record.durationMs = performance.now() - t0;
      resolve(record);
    };
    const timer = setTimeout(() => {
      finish('timeout', `no end after ${REQUEST_TIMEOUT_MS} ms`);
      req.destroy();
    }, REQUEST_TIMEOUT_MS);

    const req = http.request(`${endpoint.url}/v1/chat/completions`, { method: 'POST', agent: endpoint.agent, headers }, (res) => {
      record.status = res.statusCode ?? 0;
      record.headersMs = performance.now() - t0;
      const h = res.headers['x-conversation-id'];
      record.conversationHeader = typeof h === 'string' ? h : null;
      if (record.status !== 200) {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          record.errorBody = text.slice(0, 500);
          try {
            record.errorCode = JSON.parse(text)?.error?.code ?? null;
          } catch {
            // not JSON: kept in errorBody
          }
          finish('http_error');
        });
        res.on('error', (err) => finish('network_error', `reading error body: ${err.message}`));
        return;
      }
      res.on('data', (c: Buffer) => {
        if (finished) return;
        record.ttfbMs ??= performance.now() - t0;
        reader.push(c);
        if (plan.abortAfter !== null && !reader.done && !reader.error && reader.deltas >= plan.abortAfter) {
          // Hang up: the socket closes, which is what a browser tab closing or an SDK abort does.
          finish('abort');
          req.destroy();
          return;
        }
      });
      res.on('end', () => {
        if (finished) return;
        reader.end();
        if (reader.done) finish('done');
        else if (reader.error) finish('sse_error');
        else finish('incomplete', 'stream ended without [DONE] or an error event');
      });
      res.on('error', (err) => finish('network_error', `reading stream: ${err.message}`));
      res.on('aborted', () => finish('network_error', 'server closed the stream mid-response'));
    });
    req.on('error', (err) => finish('network_error', `request: ${err.message}`));
    req.on('socket', (socket) => {
      if (socket.connecting) socket.once('connect', () => (record.connectMs = performance.now() - t0));
    });
    req.end(body);
  });
}

export interface LoadOptions {
  phase: string;
  endpoints: Endpoint[];
  concurrency: number;
  deadline: number;
  seed: number;
  /** Called with every conversation as soon as its first turn starts. */
  conversations: ConversationRecord[];
  stopped: () => boolean;
}

/**
 * One virtual client: one session, conversations of 1–4 turns back to back until the deadline.
 * Each turn sends the whole history as the client saw it (system?, users, assistant answers),
 * with x-conversation-id after the first turn; each turn picks a server at random.
 */
async function virtualClient(opts: LoadOptions, index: number): Promise<void> {
  const rng = rng32(opts.seed ^ Math.imul(index + 1, 0x9e3779b1));
  const sessionId = `soak-${opts.phase}-${index}-${Math.floor(rng() * 2 ** 32).toString(36)}`;
  let convNo = 0;
  while (!opts.stopped() && Date.now() < opts.deadline) {
    const conv: ConversationRecord = {
      phase: opts.phase,
      sessionId,
      id: null,
      system: rng() < 0.5 ? `sys ${index}.${convNo} ${randomText(rng, between(rng, 5, 120))}` : null,
      turns: [],
    };
    opts.conversations.push(conv);
    const history: ChatMessage[] = conv.system ? [{ role: 'system', content: conv.system }] : [];
    const turns = between(rng, 1, 4);
    const includeUsage = rng() < 0.5;
    for (let t = 0; t < turns; t++) {
      if (t > 0 && (opts.stopped() || Date.now() >= opts.deadline)) break;
      const user = `u ${index}.${convNo}.${t} ${randomText(rng, between(rng, 1, 200))}`;
      history.push({ role: 'user', content: user });
      const server = between(rng, 0, opts.endpoints.length - 1);
      const rec = await runTurn(
        opts.endpoints[server]!,
        { sessionId, conversationId: conv.id, messages: history, plan: planTurn(rng), includeUsage },
        { index: t, user, server },
      );
      conv.turns.push(rec);
      if (t === 0) conv.id = rec.conversationHeader;
      // Without the id the conversation cannot go on; verification reports it.
      if (!conv.id) break;
      history.push({ role: 'assistant', content: rec.seen });
    }
    convNo++;
  }
}

export async function runLoad(opts: LoadOptions): Promise<void> {
  await Promise.all(Array.from({ length: opts.concurrency }, (_, i) => virtualClient(opts, i)));
}
