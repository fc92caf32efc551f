import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import { route } from '../openapi/registry.js';
import { ApiError } from '../errors.js';
import { concurrencyLimit } from '../middleware/concurrency.js';
import { sessionInfo } from '../middleware/session.js';
import { mayStore } from '../privacy/policy.js';
import { relay, type StreamObserver } from '../streaming/relay.js';
import { Stopper } from '../streaming/stopper.js';
import { withTelemetry } from '../streaming/telemetry.js';
import type { AppEnv } from '../types.js';
import { passError, readAll } from '../upstream/answer.js';
import { chatCompletionsUrl } from '../upstream/base-url.js';
import { callChatCompletions } from '../upstream/client.js';
import { validate } from '../validate.js';
import { buildUpstreamRequest } from './request.js';
import { chatHeadersSchema, chatRequestSchema } from './schemas.js';
import { ProxiedTurn } from './turn.js';

const CONVERSATION_HEADER = 'x-conversation-id';
/** Our id of the stored completion a proxied answer was recorded as (the upstream's may repeat). */
export const COMPLETION_HEADER = 'x-chat-completion-id';
const ignore: StreamObserver = { push() {}, end() {} };
type ChatContext = Context<AppEnv>;

/** `POST /v1/chat/completions`: the proxy, recording the exchange when it may. */
export const chat = new Hono<AppEnv>().post('/completions', validate('header', chatHeadersSchema), validate('json', chatRequestSchema), concurrencyLimit(), async (c) => {
  const startedAt = performance.now();
  const request = c.req.valid('json');
  const { config, store, inFlight, metrics } = c.get('services');
  // `store: false` is OpenAI's way of saying what x-persist: off says.
  const recording = request.store !== false && (await mayStore(c));
  const upstreamRequest = buildUpstreamRequest(request, config, { recording });

  // Recorded first, then sent: a request that cannot be recorded (not the caller's
  // conversation, over a limit, database down) never reaches the upstream, and the upstream's
  // body is read from the moment its headers arrive. Reading it late would lose what a
  // connection delivered before it dropped: a failed body stream discards its queued chunks.
  const turn = recording
    ? await ProxiedTurn.begin(
        {
          store: store!,
          owner: c.get('principal'),
          config,
          log: c.get('log'),
          metrics,
          lease: inFlight.lease(),
          session: sessionInfo(c),
          answers: inFlight.answers,
          bus: inFlight.bus,
        },
        request,
        request.conversation_id ?? c.req.header(CONVERSATION_HEADER) ?? null,
        upstreamRequest.stream,
      )
    : null;
  if (turn) c.header(CONVERSATION_HEADER, turn.conversationId);

  // The client leaving stops the upstream (abort), or — for an answer that is recorded, so that
  // someone can still read it — lets it run to its end within STREAM_DETACHED_MAX_MS (continue).
  // A cancel request or a shutdown stops it too.
  const clientSignal = c.req.raw.signal;
  const onDisconnect = turn ? (c.req.valid('header')['x-on-disconnect'] ?? config.streams.onDisconnect) : 'abort';
  const stopper = new Stopper({ clientSignal, onDisconnect, detachedMaxMs: config.streams.detachedMaxMs });
  turn?.live?.onStop((cause) => stopper.stop(cause));
  let upstream: Response;
  try {
    upstream = await callChatCompletions(config.upstream, upstreamRequest.body, { stream: upstreamRequest.stream, signal: stopper.signal });
  } catch (err) {
    stopper.dispose();
    await turn?.recordFailure(stopper.cause ?? failureReason(err));
    if (stopper.cause === 'cancelled') throw cancelledBeforeAnswer();
    throw err;
  }

  if (!upstream.ok) {
    stopper.dispose();
    let text: string;
    try {
      text = await readAll(upstream, config.upstream.timeoutMs);
    } finally {
      await turn?.recordFailure('upstream_error');
    }
    return passError(c, upstream, text, chatCompletionsUrl(config.upstream.baseUrl!));
  }
  if (!upstreamRequest.stream) return plainAnswer(c, upstream, turn).finally(() => stopper.dispose());
  if (turn?.completionId) c.header(COMPLETION_HEADER, turn.completionId);

  const observer = withTelemetry(turn?.observer() ?? ignore, metrics, c.get('log'), startedAt);
  const relayed = relay(upstream.body!, {
    observer: c.get('slot').holdUntilEnd(observer),
    timeoutMs: config.upstream.timeoutMs,
    stripUsage: upstreamRequest.stripUsage,
    abortUpstream: (reason) => stopper.abortUpstream(reason),
    clientSignal,
    ...(onDisconnect === 'continue' && { detach: { onClientGone: stopper.clientGone } }),
  });
  stopper.attach(relayed);
  void relayed.settled.finally(() => stopper.dispose());
  inFlight.track({ interrupt: () => stopper.stop('interrupted'), settled: relayed.settled });
  return c.body(relayed.readable, 200, {
    'content-type': upstream.headers.get('content-type') ?? 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
});

/** A non-streaming answer: read whole, recorded once, passed on as it came. */
async function plainAnswer(c: ChatContext, upstream: Response, turn: ProxiedTurn | null): Promise<Response> {
  let text: string;
  try {
    text = await readAll(upstream, c.get('services').config.upstream.timeoutMs);
  } catch (err) {
    await turn?.recordFailure(failureReason(err));
    throw err;
  }
  // A pure proxy passes the body through as it is; a recorded one refuses what it cannot record.
  if (turn && (await turn.recordAnswer(upstream.status, text)) === 'not_json') {
    throw new ApiError(502, 'upstream_error', 'The upstream provider answered with a body that is not JSON.', 'upstream_invalid_response');
  }
  if (turn?.completionId) c.header(COMPLETION_HEADER, turn.completionId);
  return c.body(text, upstream.status as 200, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
}

/** Why an exchange failed before its answer, as its finish_reason. */
const failureReason = (err: unknown) => (err instanceof ApiError ? (err.code ?? 'upstream_error') : 'client_abort');

/** The client is still there, waiting: it is told its answer was stopped before it began. */
const cancelledBeforeAnswer = () =>
  new ApiError(409, 'invalid_request_error', 'The answer was stopped by a cancel request before the upstream provider began it.', 'cancelled');

export const chatDocs = [
  route({
    method: 'post',
    path: '/v1/chat/completions',
    tag: 'Chat',
    summary: 'Create a chat completion (proxied to the upstream, recorded when persistence is on)',
    description:
      "OpenAI's request body; every field but `conversation_id`, `store` and `metadata` passes upstream untouched. Streamed (`stream: true`, Server-Sent Events) or not, the upstream's answer passes through as it came.",
    body: chatRequestSchema,
    headers: {
      'x-conversation-id': 'The conversation to record the exchange in (or `conversation_id` in the body)',
      'x-persist': '`off`: proxied only, nothing recorded',
    },
    responses: {
      200: {
        description: "The upstream's answer: chat.completion JSON, or a chat.completion.chunk event stream",
        schema: z.object({ id: z.string(), object: z.literal('chat.completion'), choices: z.array(z.unknown()) }).loose(),
        mediaType: 'text/event-stream',
        headers: {
          'x-conversation-id': 'The conversation the exchange was recorded in',
          'x-chat-completion-id': 'Our id of the stored completion (GET /v1/chat/completions/{id})',
        },
      },
    },
    errors: [403, 404, 502, 503, 504],
  }),
];
