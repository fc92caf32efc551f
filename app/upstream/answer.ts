import type { Context } from 'hono';
import { ApiError } from '../errors.js';
import { UpstreamTimeoutError } from '../streaming/stages/idle-timeout.js';
import type { AppEnv } from '../types.js';
import { maskUrl } from './base-url.js';
import type { UpstreamResponse } from './client.js';
import { upstreamErrorAnswer } from './error-text.js';

/**
 * An upstream error answer from `endpoint`, passed through with keys masked; a body that is not
 * OpenAI's error JSON is wrapped in it.
 */
export function passError(c: Context<AppEnv>, res: UpstreamResponse, text: string, endpoint: string): Response {
  const { config } = c.get('services');
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter) headers['retry-after'] = retryAfter;
  const answer = upstreamErrorAnswer(res.status, text, { endpoint, secrets: [config.upstream.apiKey] });
  // A refused request is the client's to fix; anything else (key, quota, path, outage) the operator's.
  c.get('log')[res.status === 400 || res.status === 422 ? 'info' : 'warn'](
    { upstream_status: res.status, upstream_url: maskUrl(endpoint), upstream_error: answer.excerpt },
    'upstream answered an error',
  );
  return c.body(answer.body, res.status as 400, headers);
}

/** Reads a whole body under the idle timeout (UPSTREAM_TIMEOUT_MS between chunks); a drop is a 502, silence a 504. */
export async function readAll(res: UpstreamResponse, timeoutMs: number): Promise<string> {
  const body = res.nodeBody;
  const parts: Buffer[] = [];
  let lastChunkAt = performance.now();
  // Chunks only note the time; the timer, when it fires, decides whether that was silence.
  const check = () => {
    const quiet = performance.now() - lastChunkAt;
    if (quiet >= timeoutMs) body.destroy(new UpstreamTimeoutError(`no data from the upstream for ${timeoutMs} ms`));
    else timer = setTimeout(check, timeoutMs - quiet);
  };
  let timer = setTimeout(check, timeoutMs);
  try {
    for await (const chunk of body) {
      lastChunkAt = performance.now();
      parts.push(chunk as Buffer);
    }
    return Buffer.concat(parts).toString('utf8');
  } catch (err) {
    if (err instanceof UpstreamTimeoutError) {
      throw new ApiError(504, 'timeout_error', 'The upstream provider stopped sending its answer (UPSTREAM_TIMEOUT_MS).', 'upstream_timeout');
    }
    if ((err as Error)?.name === 'AbortError') throw err;
    throw new ApiError(502, 'upstream_error', 'The connection to the upstream provider failed while reading its answer.', 'upstream_error');
  } finally {
    clearTimeout(timer);
  }
}
