import { ApiError } from '../errors.js';
import { chatCompletionsUrl } from './base-url.js';

export interface UpstreamOptions {
  baseUrl: string | undefined;
  apiKey: string | undefined;
  timeoutMs: number;
}

/** Why an upstream call was cut off, when we cut it. */
export class UpstreamTimeoutError extends Error {
  override name = 'UpstreamTimeoutError';
}

export interface UpstreamCall {
  response: Response;
  /**
   * Arms the idle timer for reading the body. Not armed while the caller does other work
   * between the headers and the first read (recording the request), which is not silence.
   */
  startReading(): void;
  /** Re-arms the idle timer: call on every chunk so only silence times out, not long answers. */
  touch(): void;
  /** Stops the idle timer once the body is fully read or abandoned. */
  settle(): void;
  /** Aborts the request (and its body, if being read). */
  abort(reason?: unknown): void;
  /** Set when the idle timer fired mid-body. */
  readonly timedOut: boolean;
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
 * Calls the upstream's chat completions endpoint with the server's own key. Nothing from the
 * client's headers is sent: only what the protocol needs. Failing to connect is a 502, no
 * response headers within `timeoutMs` a 504; after that, `timeoutMs` of silence aborts the body.
 * A connection that closes before the answer begins is retried once, and nothing else is.
 */
export async function callChatCompletions(
  options: UpstreamOptions,
  body: string,
  { stream, signal }: { stream: boolean; signal?: AbortSignal },
): Promise<UpstreamCall> {
  if (!options.baseUrl) {
    throw new ApiError(
      503,
      'server_error',
      'No upstream provider is configured on this server. Set OPENAI_BASE_URL (and OPENAI_API_KEY).',
      'upstream_not_configured',
    );
  }
  const controller = new AbortController();
  let timedOut = false;
  const onSilence = () => {
    timedOut = true;
    controller.abort(new UpstreamTimeoutError(`no data from upstream for ${options.timeoutMs} ms`));
  };
  let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(onSilence, options.timeoutMs);
  const onClientAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener('abort', onClientAbort, { once: true });

  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: stream ? 'text/event-stream' : 'application/json',
  };
  if (options.apiKey) headers.authorization = `Bearer ${options.apiKey}`;

  const send = () =>
    fetch(chatCompletionsUrl(options.baseUrl!), {
      method: 'POST',
      headers,
      body,
      signal: controller.signal,
    });
  let response: Response;
  try {
    // The second try runs within the same UPSTREAM_TIMEOUT_MS: the timer keeps running.
    response = await send().catch((err: unknown) => {
      if (timedOut || signal?.aborted || !closedBeforeAnswer(err)) throw err;
      return send();
    });
  } catch (err) {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onClientAbort);
    if (timedOut) {
      throw new ApiError(
        504,
        'timeout_error',
        `The upstream provider did not answer within ${options.timeoutMs} ms (UPSTREAM_TIMEOUT_MS).`,
        'upstream_timeout',
      );
    }
    if (signal?.aborted) throw err;
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ApiError(
      502,
      'upstream_error',
      `Could not reach the upstream provider at ${new URL(options.baseUrl).host}` +
        `${cause?.code ? ` (${cause.code})` : cause?.message ? ` (${cause.message})` : ''}. Check OPENAI_BASE_URL and that the provider is up.`,
      'upstream_unreachable',
    );
  }

  clearTimeout(timer);
  timer = undefined;
  let settled = false;
  // Chunks only note the time (cheap on the hot path); the timer, when it fires, decides
  // whether that was silence or re-arms for the rest of the window.
  let lastActivity = 0;
  const onIdleCheck = () => {
    const quiet = Date.now() - lastActivity;
    if (quiet >= options.timeoutMs) onSilence();
    else timer = setTimeout(onIdleCheck, options.timeoutMs - quiet);
  };
  return {
    response,
    startReading() {
      if (settled || timer) return;
      lastActivity = Date.now();
      timer = setTimeout(onIdleCheck, options.timeoutMs);
    },
    touch() {
      lastActivity = Date.now();
    },
    settle() {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onClientAbort);
    },
    abort: (reason) => controller.abort(reason),
    get timedOut() {
      return timedOut;
    },
  };
}
