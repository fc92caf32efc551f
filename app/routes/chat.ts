import { Hono } from 'hono';
import { limitChatRequest } from '../chat/limits.js';
import { LOCAL_FIELDS, chatRequestSchema } from '../chat/schemas.js';
import { ProxiedTurn } from '../chat/turn.js';
import { ApiError } from '../errors.js';
import { concurrencyLimit } from '../middleware/concurrency.js';
import { sessionInfo } from '../middleware/session.js';
import { notStoredReason } from '../privacy.js';
import { relay, type StreamObserver } from '../streaming/relay.js';
import { withTelemetry } from '../streaming/telemetry.js';
import { chatCompletionsUrl, maskUrl } from '../upstream/base-url.js';
import { callChatCompletions, type UpstreamCall } from '../upstream/client.js';
import { upstreamErrorAnswer } from '../upstream/error-text.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';

const CONVERSATION_HEADER = 'x-conversation-id';
const ignore: StreamObserver = { push() {}, end() {} };

export const chat = new Hono<AppEnv>().post('/completions', validate('json', chatRequestSchema), concurrencyLimit(), async (c) => {
  const startedAt = performance.now();
  const request = c.req.valid('json');
  const { config, inFlight, metrics } = c.get('deps');
  const stream = request.stream === true;
  const conversationId = request.conversation_id ?? c.req.header(CONVERSATION_HEADER) ?? null;

  const upstreamRequest: Record<string, unknown> = { ...request, model: request.model ?? config.upstream.defaultModel };
  for (const field of LOCAL_FIELDS) delete upstreamRequest[field];
  // The operator's limits (model, output tokens, choices): a 400 here records and sends nothing.
  Object.assign(upstreamRequest, limitChatRequest(request, config));
  // Honest accounting: with persistence on, a stream asks for usage even when the client did
  // not; the client's stream is then filtered back to exactly what it asked for.
  const streamOptions = request.stream_options as { include_usage?: unknown } | undefined;
  const addUsage = stream && c.get('deps').store !== null && streamOptions?.include_usage !== true;
  if (addUsage) upstreamRequest.stream_options = { ...streamOptions, include_usage: true };

  // Recorded first, then sent: a request that cannot be recorded (not the caller's
  // conversation, over a limit, database down) never reaches the upstream, and the upstream's
  // body is read from the moment its headers arrive. Reading it late would lose what a
  // connection delivered before it dropped: a failed body stream discards its queued chunks.
  // Nothing is recorded when persistence is off, consent is missing or the request opted out.
  const store = c.get('deps').store;
  const turn =
    store && (await notStoredReason(c)) === null
      ? await ProxiedTurn.begin(
          { store, owner: c.get('principal'), config, log: c.get('log'), metrics, lease: inFlight.lease(), session: sessionInfo(c) },
          request,
          conversationId,
          stream,
        )
      : null;
  if (turn) c.header(CONVERSATION_HEADER, turn.conversationId);
  const failureReason = (err: unknown) => (err instanceof ApiError ? (err.code ?? 'upstream_error') : 'client_abort');
  let call: UpstreamCall;
  try {
    call = await callChatCompletions(config.upstream, JSON.stringify(upstreamRequest), { stream, signal: c.req.raw.signal });
  } catch (err) {
    await turn?.recordFailure(failureReason(err));
    throw err;
  }
  const upstream = call.response;

  if (!upstream.ok) {
    let text: string;
    try {
      text = await readAll(call);
    } finally {
      await turn?.recordFailure('upstream_error');
    }
    return passError(upstream, text);
  }

  if (stream) {
    const observer = withTelemetry(turn?.observer() ?? ignore, metrics, c.get('log'), startedAt);
    const relayed = relay(call, c.get('slot').holdUntilEnd(observer), { stripUsage: addUsage });
    inFlight.track({ interrupt: relayed.interrupt, settled: relayed.settled });
    return c.body(relayed.readable, 200, {
      'content-type': upstream.headers.get('content-type') ?? 'text/event-stream',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
  }

  let text: string;
  try {
    text = await readAll(call);
  } catch (err) {
    await turn?.recordFailure(failureReason(err));
    throw err;
  }
  // A pure proxy passes the body through as it is; a recorded one refuses what it cannot record.
  if (turn && !(await turn.recordAnswer(upstream.status, text))) {
    throw new ApiError(502, 'upstream_error', 'The upstream provider answered with a body that is not JSON.', 'upstream_invalid_response');
  }
  return c.body(text, upstream.status as 200, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });

  /** An upstream error answer, passed through with keys masked; a body that is not OpenAI's error JSON is wrapped in it. */
  function passError(res: Response, text: string): Response {
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    const retryAfter = res.headers.get('retry-after');
    if (retryAfter) headers['retry-after'] = retryAfter;
    const endpoint = chatCompletionsUrl(config.upstream.baseUrl!);
    const answer = upstreamErrorAnswer(res.status, text, { endpoint, secrets: [config.upstream.apiKey] });
    // A refused request is the client's to fix; anything else (key, quota, path, outage) the operator's.
    c.get('log')[res.status === 400 || res.status === 422 ? 'info' : 'warn'](
      { upstream_status: res.status, upstream_url: maskUrl(endpoint), upstream_error: answer.excerpt },
      'upstream answered an error',
    );
    return c.body(answer.body, res.status as 400, headers);
  }
});

/** Reads a whole body under the call's idle timeout; a drop is a 502, silence a 504. */
async function readAll(call: UpstreamCall): Promise<string> {
  call.startReading();
  try {
    return await call.response.text();
  } catch (err) {
    if (call.timedOut) {
      throw new ApiError(504, 'timeout_error', 'The upstream provider stopped sending its answer (UPSTREAM_TIMEOUT_MS).', 'upstream_timeout');
    }
    if ((err as Error)?.name === 'AbortError') throw err;
    throw new ApiError(502, 'upstream_error', 'The connection to the upstream provider failed while reading its answer.', 'upstream_error');
  } finally {
    call.settle();
  }
}
