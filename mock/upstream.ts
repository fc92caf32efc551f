// Mock OpenAI chat-completions upstream on plain node:http.
// Kept framework-free because it is the "direct upstream" baseline in the benchmark.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface MockOptions {
  /** number of content chunks in a stream (default 8) */
  chunks?: number;
  /** characters (code points) per content chunk (default 8) */
  chunk_size?: number;
  /** exact answer text, split into `chunks` pieces by code points */
  text?: string;
  /** pause between chunks (default 0) */
  delay_ms?: number;
  /** pause before the response headers + first bytes (default 0) */
  first_byte_delay_ms?: number;
  fault?: 'drop' | 'status' | 'malformed' | 'hang' | 'hang_after_first' | 'reset';
  status?: number;
  error_body?: unknown;
  drop_after?: number;
  malformed_after?: number;
  /** stream a get_weather tool call instead of content */
  tool_calls?: boolean;
  /** write the body in raw pieces of this many bytes, regardless of event/UTF-8 boundaries */
  split_bytes?: number;
  /** force usage reporting on/off regardless of stream_options (default: follow the request) */
  usage?: boolean;
  /** the finish_reason the answer ends with (default: stop, or tool_calls with tool_calls) */
  finish_reason?: string;
}

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  body: any;
}

export interface MockUpstream {
  url: string;
  port: number;
  requests: RecordedRequest[];
  /**
   * Chat and other requests handled since start (recorded or not), and how many of their
   * responses are over (sent, dropped, or abandoned by the client): what tests wait on.
   * `unfinished` counts those that closed before the whole response was sent: the client went
   * away (aborted its request), or a fault mode cut them.
   */
  readonly traffic: { received: number; ended: number; unfinished: number };
  defaults: MockOptions;
  reset(): void;
  close(): Promise<void>;
}

/** The tool call streamed when `tool_calls` is set. */
export const MOCK_TOOL_CALL = {
  id: 'call_mock_1',
  name: 'get_weather',
  arguments: '{"city":"Paris"}',
} as const;

// ASCII letters, spaces and 2-, 3- and 4-byte UTF-8 code points (the emoji is a surrogate pair
// in UTF-16) so proxies get exercised on multi-byte content. One entry = one character.
const ALPHABET: readonly string[] = Array.from(
  'abcdefghijklmnopqrstuvwxyz é ABCDEFGHIJKLMNOPQRSTUVWXYZ 漢 0123456789 🙂 ',
);
const MAX_RECORDED = 10_000;
const DEFAULT_ERROR_BODY = { error: { message: 'mock failure', type: 'server_error', code: null } };

function int(v: unknown, def: number): number {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : def;
}

/** Split by code points into exactly `n` pieces (never inside a surrogate pair). */
function splitCodePoints(text: string, n: number): string[] {
  const cps = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    out.push(cps.slice(Math.floor((i * cps.length) / n), Math.floor(((i + 1) * cps.length) / n)).join(''));
  }
  return out;
}

function contentPieces(o: MockOptions): string[] {
  const n = int(o.chunks, 8);
  // With explicit text, at least one piece so the text is never silently lost.
  if (typeof o.text === 'string') return splitCodePoints(o.text, Math.max(1, n));
  const size = int(o.chunk_size, 8);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let s = '';
    for (let j = 0; j < size; j++) s += ALPHABET[(i * size + j) % ALPHABET.length];
    out.push(s);
  }
  return out;
}

function toolArgPieces(o: MockOptions): string[] {
  const n = Math.min(Math.max(1, int(o.chunks, 8)), MOCK_TOOL_CALL.arguments.length);
  return splitCodePoints(MOCK_TOOL_CALL.arguments, n);
}

/** Exact full content text an answer with these options produces ('' for tool calls). */
export function mockAnswer(opts: MockOptions): string {
  return opts.tool_calls ? '' : contentPieces(opts).join('');
}

function errorJson(message: string, type: string, code: string | null = null): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

function messageChars(body: any): number {
  let n = 0;
  const messages = Array.isArray(body?.messages) ? body.messages : [];
  for (const m of messages) {
    const c = m?.content;
    if (typeof c === 'string') n += c.length;
    else if (Array.isArray(c)) for (const p of c) if (typeof p?.text === 'string') n += p.text.length;
  }
  return n;
}

type Ending = 'end' | 'destroy' | 'hang';
interface Plan {
  status: number;
  headers: http.OutgoingHttpHeaders;
  segments: (string | Buffer)[];
  ending: Ending;
}

interface Ctx {
  closed: boolean;
  timer: NodeJS.Timeout | NodeJS.Immediate | undefined;
}

function clearCtx(ctx: Ctx): void {
  ctx.closed = true;
  if (ctx.timer) {
    clearTimeout(ctx.timer as NodeJS.Timeout);
    clearImmediate(ctx.timer as NodeJS.Immediate);
    ctx.timer = undefined;
  }
}

function jsonPlan(status: number, body: string, requestId: string): Plan {
  return {
    status,
    headers: {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'x-request-id': requestId,
    },
    segments: [body],
    ending: 'end',
  };
}

function statusPlan(o: MockOptions, requestId: string): Plan {
  const status = int(o.status, 500) || 500;
  const eb = o.error_body;
  let body: string;
  let type: string | undefined;
  if (eb === undefined) {
    body = JSON.stringify(DEFAULT_ERROR_BODY);
    type = 'application/json';
  } else if (eb === null) {
    body = '';
  } else if (typeof eb === 'string') {
    body = eb;
    type = 'text/plain';
  } else {
    body = JSON.stringify(eb);
    type = 'application/json';
  }
  const headers: http.OutgoingHttpHeaders = {
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
  };
  if (type) headers['content-type'] = type;
  return { status, headers, segments: body ? [body] : [], ending: 'end' };
}

function completionPlan(o: MockOptions, body: any, seq: number): Plan {
  const requestId = `req_mock_${seq}`;
  if (o.fault === 'status') return statusPlan(o, requestId);

  const id = `chatcmpl-mock-${seq}`;
  const created = Math.floor(Date.now() / 1000);
  const model = typeof body.model === 'string' && body.model ? body.model : 'mock-model';
  const tools = o.tool_calls === true;
  const pieces = tools ? toolArgPieces(o) : contentPieces(o);
  const promptTokens = Math.max(1, Math.ceil(messageChars(body) / 4));
  const usage = {
    prompt_tokens: promptTokens,
    completion_tokens: pieces.length,
    total_tokens: promptTokens + pieces.length,
  };
  const finish = typeof o.finish_reason === 'string' ? o.finish_reason : tools ? 'tool_calls' : 'stop';

  if (!body.stream) {
    const message = tools
      ? {
          role: 'assistant',
          content: null,
          tool_calls: [
            {
              id: MOCK_TOOL_CALL.id,
              type: 'function',
              function: { name: MOCK_TOOL_CALL.name, arguments: MOCK_TOOL_CALL.arguments },
            },
          ],
        }
      : { role: 'assistant', content: pieces.join('') };
    const json = JSON.stringify({
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message, finish_reason: finish }],
      // `usage: false` imitates providers that report no usage at all.
      ...(o.usage === false ? {} : { usage }),
    });
    const plan = jsonPlan(200, json, requestId);
    const buf = Buffer.from(json);
    const half = buf.subarray(0, Math.floor(buf.length / 2));
    // content-length stays the full size, so the truncation is detectable by the client.
    if (o.fault === 'drop') return { ...plan, segments: [half], ending: 'destroy' };
    if (o.fault === 'hang_after_first') return { ...plan, segments: [half], ending: 'hang' };
    if (o.fault === 'malformed') return jsonPlan(200, '{not json', requestId);
    return plan;
  }

  const includeUsage =
    typeof o.usage === 'boolean' ? o.usage : body.stream_options?.include_usage === true;
  const chunk = (delta: unknown, finishReason: string | null): string =>
    `data: ${JSON.stringify({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finishReason }],
      // OpenAI sends usage:null on every chunk but the last when include_usage is on.
      ...(includeUsage ? { usage: null } : {}),
    })}\n\n`;

  const head = chunk({ role: 'assistant', content: tools ? null : '' }, null);
  const bodyEvents: string[] = tools
    ? [
        chunk(
          {
            tool_calls: [
              {
                index: 0,
                id: MOCK_TOOL_CALL.id,
                type: 'function',
                function: { name: MOCK_TOOL_CALL.name, arguments: '' },
              },
            ],
          },
          null,
        ),
        ...pieces.map((p) => chunk({ tool_calls: [{ index: 0, function: { arguments: p } }] }, null)),
      ]
    : pieces.map((p) => chunk({ content: p }, null));
  const tail = [chunk({}, finish)];
  if (includeUsage) {
    tail.push(
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [], usage })}\n\n`,
    );
  }
  tail.push('data: [DONE]\n\n');

  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-request-id': requestId,
  };
  const n = bodyEvents.length;
  if (o.fault === 'drop') {
    const k = Math.min(int(o.drop_after, Math.floor(n / 2)), n);
    return { status: 200, headers, segments: [head, ...bodyEvents.slice(0, k)], ending: 'destroy' };
  }
  if (o.fault === 'hang_after_first') {
    // role chunk + first body chunk, so the client has already seen some output before the stall
    return { status: 200, headers, segments: [head, ...bodyEvents.slice(0, 1)], ending: 'hang' };
  }
  if (o.fault === 'malformed') {
    const k = Math.min(int(o.malformed_after, 1), n);
    bodyEvents.splice(k, 0, 'data: {not json\n\n');
  }
  return { status: 200, headers, segments: [head, ...bodyEvents, ...tail], ending: 'end' };
}

function execute(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  ctx: Ctx,
  plan: Plan,
  o: MockOptions,
): void {
  const delay = int(o.delay_ms, 0);
  const split = int(o.split_bytes, 0);
  let segs = plan.segments;
  if (split > 0) {
    const all = Buffer.concat(segs.map((s) => (typeof s === 'string' ? Buffer.from(s) : s)));
    segs = [];
    for (let i = 0; i < all.length; i += split) segs.push(all.subarray(i, i + split));
  } else if (delay === 0 && segs.length > 1) {
    // Nothing to pace: one write is the cheapest for the benchmark baseline.
    segs = [segs.map((s) => s.toString()).join('')];
  }

  res.writeHead(plan.status, plan.headers);
  const socket = req.socket;
  const finish = (last: string | Buffer | undefined): void => {
    if (plan.ending === 'end') {
      if (last === undefined) res.end();
      else res.end(last);
    } else if (plan.ending === 'destroy') {
      // Destroy only once the bytes are flushed, so the client really receives the partial body.
      if (last === undefined) {
        res.flushHeaders();
        setImmediate(() => socket.destroy());
      } else res.write(last, () => socket.destroy());
    } else {
      if (last === undefined) res.flushHeaders();
      else res.write(last);
    }
  };

  let i = 0;
  const step = (): void => {
    ctx.timer = undefined;
    if (ctx.closed) return;
    if (i >= segs.length - 1) {
      finish(segs[i]);
      return;
    }
    res.write(segs[i++]!);
    // split mode with no delay still yields between writes so pieces tend to leave as separate packets
    ctx.timer = delay > 0 ? setTimeout(step, delay) : setImmediate(step);
  };
  step();
}

export function startMockUpstream(
  opts: { port?: number; host?: string; defaults?: MockOptions; record?: boolean } = {},
): Promise<MockUpstream> {
  const host = opts.host ?? '127.0.0.1';
  const record = opts.record !== false;
  const initialDefaults: MockOptions = { ...(opts.defaults ?? {}) };
  const sockets = new Set<Socket>();
  const active = new Set<Ctx>();
  let seq = 0;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, raw: string): void => {
    let body: any = raw;
    let parsed = false;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
        parsed = true;
      } catch {
        /* keep raw string */
      }
    }
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    mock.traffic.received++;
    res.once('close', () => {
      mock.traffic.ended++;
      if (!res.writableFinished) mock.traffic.unfinished++;
    });
    if (record) {
      const list = mock.requests;
      list.push({ method, path: url, headers: req.headers, body });
      if (list.length > MAX_RECORDED) list.splice(0, list.length - MAX_RECORDED);
    }
    const path = url.split('?', 1)[0];
    seq++;

    if (method === 'GET' && path === '/v1/models') {
      const json = JSON.stringify({
        object: 'list',
        data: [{ id: 'mock-model', object: 'model', created: Math.floor(Date.now() / 1000), owned_by: 'mock' }],
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
      return;
    }
    if (method !== 'POST' || path !== '/v1/chat/completions') {
      const json = errorJson(`Invalid URL (${method} ${path})`, 'invalid_request_error');
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
      return;
    }
    if (!parsed || body === null || typeof body !== 'object' || Array.isArray(body)) {
      const json = errorJson('We could not parse the JSON body of your request.', 'invalid_request_error');
      res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
      return;
    }

    const o: MockOptions = { ...mock.defaults };
    if (body.mock && typeof body.mock === 'object' && !Array.isArray(body.mock)) {
      for (const [k, v] of Object.entries(body.mock)) if (v !== undefined) (o as any)[k] = v;
    }
    if (o.fault === 'hang') return; // socket stays open until the client leaves or close()

    const ctx: Ctx = { closed: false, timer: undefined };
    active.add(ctx);
    res.once('close', () => {
      clearCtx(ctx);
      active.delete(ctx);
    });
    const go = (): void => {
      ctx.timer = undefined;
      if (ctx.closed) return;
      if (o.fault === 'reset') {
        const s = req.socket;
        // RST rather than FIN, like a crashed upstream / middlebox
        if (typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
        else s.destroy();
        return;
      }
      execute(req, res, ctx, completionPlan(o, body, seq), o);
    };
    const fbd = int(o.first_byte_delay_ms, 0);
    if (fbd > 0) ctx.timer = setTimeout(go, fbd);
    else go();
  };

  const server = http.createServer({ noDelay: true }, (req, res) => {
    // Client disconnects surface as errors on these streams; they are expected, not fatal.
    req.on('error', () => {});
    res.on('error', () => {});
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => handle(req, res, parts.length === 1 ? parts[0]!.toString() : Buffer.concat(parts).toString()));
  });
  // Outlive typical client keep-alive timeouts so pooled connections are not closed under the client.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  server.on('clientError', (_err, s) => s.destroy());

  let closing: Promise<void> | undefined;
  const mock: MockUpstream = {
    url: '',
    port: 0,
    requests: [],
    traffic: { received: 0, ended: 0, unfinished: 0 },
    defaults: { ...initialDefaults },
    reset() {
      mock.requests.length = 0;
      for (const k of Object.keys(mock.defaults)) delete (mock.defaults as any)[k];
      Object.assign(mock.defaults, initialDefaults);
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const ctx of active) clearCtx(ctx);
        active.clear();
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
        sockets.clear();
      });
      return closing;
    },
  };

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      const port = (server.address() as AddressInfo).port;
      mock.port = port;
      mock.url = `http://${host.includes(':') ? `[${host}]` : host}:${port}/v1`;
      resolve(mock);
    });
  });
}
