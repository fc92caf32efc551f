import { Readable } from 'node:stream';
import { Agent, request as undiciRequest, type Dispatcher } from 'undici';
import { ApiError } from '../errors.js';
import { chatCompletionsUrl } from './base-url.js';

export interface UpstreamOptions {
  baseUrl: string | undefined;
  apiKey: string | undefined;
  timeoutMs: number;
}

/**
 * The upstream's answer once its headers are in. `body` is the web stream the relay reads;
 * `nodeBody` the same bytes as undici gives them, for a reader that wants them whole (read one
 * or the other, never both).
 */
export class UpstreamResponse {
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  private web: ReadableStream<Uint8Array> | null = null;

  constructor(
    readonly status: number,
    rawHeaders: Dispatcher.ResponseData['headers'],
    readonly nodeBody: Readable,
  ) {
    this.ok = status >= 200 && status < 300;
    this.headers = {
      get(name) {
        const value = rawHeaders[name.toLowerCase()];
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
      },
    };
  }

  get body(): ReadableStream<Uint8Array> {
    return (this.web ??= webStreamOf(this.nodeBody));
  }
}

/**
 * A Node stream as a web stream, with backpressure. Not Readable.toWeb: on Node 20 its adapter
 * can still enqueue a chunk after the web side was closed or cancelled, and that throws
 * ERR_INVALID_STATE where nobody catches it (an uncaught exception). Here every event after the
 * end is dropped, and cancelling destroys the Node stream (which aborts the upstream request).
 */
function webStreamOf(body: Readable): ReadableStream<Uint8Array> {
  let over = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      body.on('data', (chunk: Buffer) => {
        if (over) return;
        controller.enqueue(chunk);
        if ((controller.desiredSize ?? 0) <= 0) body.pause();
      });
      body.once('end', () => {
        if (over) return;
        over = true;
        controller.close();
      });
      body.once('error', (err) => {
        if (over) return;
        over = true;
        controller.error(err);
      });
      // Destroyed without an error (a socket closed under it): the answer is cut short.
      body.once('close', () => {
        if (over) return;
        over = true;
        controller.error(Object.assign(new Error('the upstream connection closed before the end of its answer'), { code: 'UND_ERR_SOCKET' }));
      });
    },
    pull() {
      body.resume();
    },
    cancel(reason) {
      over = true;
      body.destroy(reason instanceof Error ? reason : undefined);
    },
  });
}

/**
 * One connection pool for every upstream call of the process. Bodies have no timeout of
 * undici's own: the relay's idle timeout (UPSTREAM_TIMEOUT_MS) decides when silence ends them.
 */
let pool: Agent | null = null;
const dispatcher = () => (pool ??= new Agent({ bodyTimeout: 0, headersTimeout: 0 }));

/** The error code of a failed upstream call: undici's own, or the socket's beneath it. */
const codeOf = (err: unknown): string | undefined => {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  const code = e?.code ?? e?.cause?.code;
  return typeof code === 'string' ? code : undefined;
};

/**
 * Whether the call failed because the connection closed or was reset before the answer began
 * (the call rejects only until the response head has arrived; a body that breaks later is never
 * retried). That is what a pooled keep-alive connection does when the upstream closes it just
 * as a request goes out on it; undici then drops that connection, so another try goes out on a
 * different one. Refused connections, timeouts and aborts are not this.
 */
function closedBeforeAnswer(err: unknown): boolean {
  const code = codeOf(err);
  return code === 'UND_ERR_SOCKET' || code === 'ECONNRESET' || code === 'EPIPE';
}
/**
 * Calls the upstream's chat completions endpoint with the server's own key, and returns its
 * response once the headers are in; reading the body (and timing its silences) is the caller's.
 * Nothing from the client's headers is sent: only what the protocol needs. Failing to connect is
 * a 502, no response headers within `timeoutMs` a 504. A connection that closes before the
 * answer begins is retried once, and nothing else is. `signal` aborts the request and its body.
 */
export function callChatCompletions(
  options: UpstreamOptions,
  body: string,
  { stream, signal }: { stream: boolean; signal: AbortSignal },
): Promise<UpstreamResponse> {
  return callUpstream(options, { method: 'POST', url: (base) => chatCompletionsUrl(base), body, accept: stream ? 'text/event-stream' : 'application/json', signal });
}

/** A request to the upstream, as callChatCompletions describes: the same key, timeout, retry and errors. */
export async function callUpstream(
  options: UpstreamOptions,
  request: { method: 'GET' | 'POST'; url: (baseUrl: string) => string; body?: string; accept: string; signal: AbortSignal },
): Promise<UpstreamResponse> {
  if (!options.baseUrl) {
    throw new ApiError(
      503,
      'server_error',
      'No upstream provider is configured on this server. Set OPENAI_BASE_URL (and OPENAI_API_KEY).',
      'upstream_not_configured',
    );
  }
  const { signal } = request;
  const headers: Record<string, string> = { accept: request.accept };
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const url = request.url(options.baseUrl);
  // The second try runs within the same UPSTREAM_TIMEOUT_MS: it gets what is left of it.
  const deadline = performance.now() + options.timeoutMs;
  const send = async () => {
    const answer = await undiciRequest(url, {
      method: request.method,
      headers,
      body: request.body,
      signal,
      dispatcher: dispatcher(),
      headersTimeout: Math.max(1, Math.ceil(deadline - performance.now())),
    });
    return new UpstreamResponse(answer.statusCode, answer.headers, answer.body);
  };
  try {
    return await send().catch((err: unknown) => {
      if (signal.aborted || !closedBeforeAnswer(err) || performance.now() >= deadline) throw err;
      return send();
    });
  } catch (err) {
    if (signal.aborted) throw err;
    const code = codeOf(err);
    if (code === 'UND_ERR_HEADERS_TIMEOUT') {
      throw new ApiError(
        504,
        'timeout_error',
        `The upstream provider did not answer within ${options.timeoutMs} ms (UPSTREAM_TIMEOUT_MS).`,
        'upstream_timeout',
      );
    }
    const message = (err as { message?: string } | null)?.message;
    throw new ApiError(
      502,
      'upstream_error',
      `Could not reach the upstream provider at ${new URL(options.baseUrl).host}` +
        `${code ? ` (${code})` : message ? ` (${message})` : ''}. Check OPENAI_BASE_URL and that the provider is up.`,
      'upstream_unreachable',
    );
  }
}
