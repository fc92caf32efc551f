import { ApiError } from '../errors.js';
import { chatCompletionsUrl } from './base-url.js';

export interface UpstreamOptions {
  baseUrl: string | undefined;
  apiKey: string | undefined;
  timeoutMs: number;
}

/**
 * Whether fetch failed because the connection closed or was reset before the answer began
 * (fetch rejects only until the response head has arrived; a body that breaks later is never
 * retried). That is what a pooled keep-alive connection does when the upstream closes it just
 * as a request goes out on it; fetch then drops that connection, so another try goes out on a
 * different one. Refused connections, timeouts and aborts are not this.
 */
function closedBeforeAnswer(err: unknown): boolean {
  const code = (err as { cause?: { code?: unknown } })?.cause?.code;
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
): Promise<Response> {
  return callUpstream(options, { method: 'POST', url: (base) => chatCompletionsUrl(base), body, accept: stream ? 'text/event-stream' : 'application/json', signal });
}

/** A request to the upstream, as callChatCompletions describes: the same key, timeout, retry and errors. */
export async function callUpstream(
  options: UpstreamOptions,
  request: { method: 'GET' | 'POST'; url: (baseUrl: string) => string; body?: string; accept: string; signal: AbortSignal },
): Promise<Response> {
  if (!options.baseUrl) {
    throw new ApiError(
      503,
      'server_error',
      'No upstream provider is configured on this server. Set OPENAI_BASE_URL (and OPENAI_API_KEY).',
      'upstream_not_configured',
    );
  }
  const { signal } = request;
  const headersTimeout = new AbortController();
  const timer = setTimeout(() => headersTimeout.abort(), options.timeoutMs);
  const headers: Record<string, string> = { accept: request.accept };
  if (request.body !== undefined) headers['content-type'] = 'application/json';
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;
  const url = request.url(options.baseUrl);
  const send = () => fetch(url, { method: request.method, headers, body: request.body, signal: AbortSignal.any([signal, headersTimeout.signal]) });
  try {
    // The second try runs within the same UPSTREAM_TIMEOUT_MS: the timer keeps running.
    return await send().catch((err: unknown) => {
      if (headersTimeout.signal.aborted || signal.aborted || !closedBeforeAnswer(err)) throw err;
      return send();
    });
  } catch (err) {
    if (signal.aborted) throw err;
    if (headersTimeout.signal.aborted) {
      throw new ApiError(
        504,
        'timeout_error',
        `The upstream provider did not answer within ${options.timeoutMs} ms (UPSTREAM_TIMEOUT_MS).`,
        'upstream_timeout',
      );
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ApiError(
      502,
      'upstream_error',
      `Could not reach the upstream provider at ${new URL(options.baseUrl).host}` +
        `${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ''}. Check OPENAI_BASE_URL and that the provider is up.`,
      'upstream_unreachable',
    );
  } finally {
    clearTimeout(timer);
  }
}
