import type { Context } from 'hono';
import { Hono } from 'hono';
import { z } from 'zod';
import type { IdempotencyRecord, Message, Store } from '../../db/store.js';
import { ApiError, notFound } from '../errors.js';
import { claimKey, idempotencyKeyOf, requestHash, sleep, type Claimed } from '../idempotency.js';
import { route } from '../openapi/registry.js';
import { concurrencyLimit } from '../middleware/concurrency.js';
import { mayStore } from '../privacy/policy.js';
import { relay, type StreamObserver } from '../streaming/relay.js';
import { Stopper } from '../streaming/stopper.js';
import { withTelemetry } from '../streaming/telemetry.js';
import type { AppEnv } from '../types.js';
import { passError, readAll } from '../upstream/answer.js';
import { chatCompletionsUrl } from '../upstream/base-url.js';
import { callChatCompletions, type UpstreamResponse } from '../upstream/client.js';
import { validate } from '../validate.js';
import { completionJson, completionSse } from './replay.js';
import { buildUpstreamRequest, type UpstreamRequest } from './request.js';
import { chatHeadersSchema, chatRequestSchema, type ChatRequest } from './schemas.js';
import { failureReason, turnContext } from './exchange.js';
import { ProxiedTurn } from './turn.js';

const CONVERSATION_HEADER = 'x-conversation-id';
/** Our id of the stored completion a proxied answer was recorded as (the upstream's may repeat). */
export const COMPLETION_HEADER = 'x-chat-completion-id';
const ignore: StreamObserver = { push() {}, end() {} };
type ChatContext = Context<AppEnv>;

/** Where a chat completion's answer is stored, as its Idempotency-Key keeps it. */
interface AnswerPointer {
  conversation_id: string;
  message_id: string;
  stream: boolean;
}
type Run = Extract<Claimed, { kind: 'run' }>;

/** `POST /v1/chat/completions`: the proxy, recording the exchange when it may. */
export const chat = new Hono<AppEnv>().post('/completions', validate('header', chatHeadersSchema), validate('json', chatRequestSchema), concurrencyLimit(), async (c) => {
  const startedAt = performance.now();
  const request = c.req.valid('json');
  const { config, store } = c.get('services');
  // `store: false` is OpenAI's way of saying what x-persist: off says.
  const recording = request.store !== false && (await mayStore(c));
  // Refused here (over a limit), a request takes no Idempotency-Key.
  const upstreamRequest = buildUpstreamRequest(request, config, { recording });
  const exchange: Exchange = {
    request,
    upstreamRequest,
    recording,
    startedAt,
    conversationId: request.conversation_id ?? c.req.header(CONVERSATION_HEADER) ?? null,
    onDisconnect: c.req.valid('header')['x-on-disconnect'],
  };
  // A retry with the first request's Idempotency-Key gets that request's answer, from the store:
  // only a recorded exchange has one to give, so a request that is not recorded ignores its key.
  const key = idempotencyKeyOf(c);
  if (key === null || !recording) return proxy(c, exchange, null);
  const { conversationId } = exchange;
  // The first request may wait for the upstream's first byte for UPSTREAM_TIMEOUT_MS.
  const patience = config.upstream.timeoutMs + 30_000;
  const claim = await claimKey(store!, c.get('principal'), key, requestHash('POST', c.req.path, request, conversationId), {
    staleMs: patience,
    waitMs: patience,
    signal: c.req.raw.signal,
  });
  if (claim.kind === 'replay') return replay(c, claim.record, request);
  try {
    return await proxy(c, exchange, claim);
  } catch (err) {
    await claim.release().catch((e: unknown) => c.get('log').error({ err: e }, 'could not give up an Idempotency-Key'));
    throw err;
  }
});

interface Exchange {
  request: ChatRequest;
  upstreamRequest: UpstreamRequest;
  recording: boolean;
  startedAt: number;
  conversationId: string | null;
  /** The client's x-on-disconnect, when it sent one. */
  onDisconnect: 'abort' | 'continue' | undefined;
}

async function proxy(c: ChatContext, { request, upstreamRequest, recording, startedAt, conversationId, onDisconnect: asked }: Exchange, claim: Run | null): Promise<Response> {
  const { config, inFlight, metrics } = c.get('services');

  // Recorded first, then sent: a request that cannot be recorded (not the caller's
  // conversation, over a limit, database down) never reaches the upstream, and the upstream's
  // body is read from the moment its headers arrive. Reading it late would lose what a
  // connection delivered before it dropped: a failed body stream discards its queued chunks.
  const turn = recording
    ? await ProxiedTurn.begin(
        turnContext(c),
        request,
        conversationId,
        upstreamRequest.stream,
      )
    : null;
  if (turn) c.header(CONVERSATION_HEADER, turn.conversationId);

  // The client leaving stops the upstream (abort), or — for an answer that is recorded, so that
  // someone can still read it — lets it run to its end within STREAM_DETACHED_MAX_MS (continue).
  // A cancel request or a shutdown stops it too.
  const clientSignal = c.req.raw.signal;
  const onDisconnect = turn ? (asked ?? config.streams.onDisconnect) : 'abort';
  const stopper = new Stopper({ clientSignal, onDisconnect, detachedMaxMs: config.streams.detachedMaxMs });
  turn?.live?.onStop((cause) => stopper.stop(cause));
  let upstream: UpstreamResponse;
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
    // The upstream refused: nothing was answered, so a retry may try again.
    await claim?.release();
    return passError(c, upstream, text, chatCompletionsUrl(config.upstream.baseUrl!));
  }
  if (!upstreamRequest.stream) return plainAnswer(c, upstream, turn, claim).finally(() => stopper.dispose());
  if (turn?.completionId) c.header(COMPLETION_HEADER, turn.completionId);

  // From here the answer is the one a retry gets, streaming or not.
  if (claim) await keep(c, claim, 200, { conversation_id: turn!.conversationId, message_id: turn!.answerId, stream: true });
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
}

/** Keeps where the answer is under the request's key; failing that is logged, never the client's failure. */
async function keep(c: ChatContext, claim: Run, status: number, pointer: AnswerPointer): Promise<void> {
  await claim.complete(status, { ...pointer }).catch((err: unknown) => c.get('log').error({ err }, 'could not record the outcome of an Idempotency-Key'));
}

/**
 * The first request's answer for a retry: JSON, or a stream rebuilt from the stored message
 * once it has ended (a retry that comes while the first stream runs waits for its end).
 */
async function replay(c: ChatContext, record: IdempotencyRecord, request: ChatRequest): Promise<Response> {
  const { store, config } = c.get('services');
  const pointer = record.response as unknown as AnswerPointer;
  c.header(CONVERSATION_HEADER, pointer.conversation_id);
  c.header('idempotent-replayed', 'true');
  if (!(await store!.getConversation(c.get('principal'), pointer.conversation_id))) throw notFound('conversation', pointer.conversation_id);
  const message = await endedMessage(store!, pointer.message_id, c.req.raw.signal);
  if (!message) {
    throw new ApiError(404, 'not_found_error', 'The answer to the first request with this Idempotency-Key is no longer stored.', 'not_found', 'Idempotency-Key');
  }
  const model = request.model ?? config.upstream.defaultModel;
  if (!pointer.stream) return c.json(completionJson(message, { model }), record.status as 200);
  const includeUsage = (request.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  return c.body(completionSse(message, { model, includeUsage }), 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
}

/** The message once it is no longer streaming (polled with backoff), or null when it is gone. */
async function endedMessage(store: Store, id: string, signal: AbortSignal): Promise<Message | null> {
  for (let attempt = 0; ; attempt++) {
    const message = await store.getMessage(id);
    if (!message || (message.status !== 'streaming' && message.status !== 'draft') || signal.aborted) return message;
    await sleep(Math.min(25 * 2 ** attempt, 500), signal);
  }
}

/** A non-streaming answer: read whole, recorded once, passed on as it came. */
async function plainAnswer(c: ChatContext, upstream: UpstreamResponse, turn: ProxiedTurn | null, claim: Run | null): Promise<Response> {
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
  if (claim) await keep(c, claim, upstream.status, { conversation_id: turn!.conversationId, message_id: turn!.answerId, stream: false });
  if (turn?.completionId) c.header(COMPLETION_HEADER, turn.completionId);
  return c.body(text, upstream.status as 200, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
}


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
