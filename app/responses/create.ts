import type { Context } from 'hono';
import { newResponseId, type Message, type NewMessage } from '../../db/store.js';
import { buildUpstreamRequest } from '../chat/request.js';
import type { ChatMessage, ChatRequest } from '../chat/schemas.js';
import { ProxiedTurn, toStored } from '../chat/turn.js';
import { ApiError, notFound } from '../errors.js';
import { sessionInfo } from '../middleware/session.js';
import { mayStore } from '../privacy/policy.js';
import { relay, type StreamEnd, type StreamObserver } from '../streaming/relay.js';
import { ResponsesEventsStage } from '../streaming/stages/responses-events.js';
import { Stopper, type OnDisconnect } from '../streaming/stopper.js';
import { withTelemetry } from '../streaming/telemetry.js';
import type { AppEnv, Services } from '../types.js';
import { passError, readAll } from '../upstream/answer.js';
import { chatCompletionsUrl } from '../upstream/base-url.js';
import { callChatCompletions, type UpstreamResponse } from '../upstream/client.js';
import { failureReason, turnContext } from '../chat/exchange.js';
import { EventLogWriter, followEvents } from './event-log.js';
import { chatMessagesOf, chatRequestOf, firstUserText, historyOf, resolveInput } from './input.js';
import { echoedParams, responseJson, statusOf, type AnswerView, type ResponseBase, type ResponseJson } from './object.js';
import type { CreateResponseRequest } from './schemas.js';

/*
 * POST /v1/responses: one chat-completions exchange, recorded as a turn of a conversation (the
 * previous response's, the one named, or a new one) with a response record beside it. Plain,
 * streamed as Responses events, or run in the background with its events kept for replay.
 */

type Ctx = Context<AppEnv>;
const ignore: StreamObserver = { push() {}, end() {} };
const open = (m: Message) => m.status === 'streaming' || m.status === 'draft';
const CONVERSATION_HEADER = 'x-conversation-id';
const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' };

interface Exchange {
  base: ResponseBase;
  chatRequest: ChatRequest;
  upstreamBody: string;
  turn: ProxiedTurn | null;
  /** The answer's id: its message's when recorded, else one made for its items. */
  answerId: string;
  startedAt: number;
}

/** Where the request continues from: the stored history and the message the new turn follows. */
async function stateOf(c: Ctx, request: CreateResponseRequest, conversationRef: string | null) {
  const store = c.get('services').store!;
  const owner = c.get('principal');
  if (request.previous_response_id) {
    const id = request.previous_response_id;
    const previous = await store.getResponse(owner, id);
    if (!previous) throw new ApiError(400, 'invalid_request_error', `Previous response with id '${id}' not found.`, 'previous_response_not_found', 'previous_response_id');
    if (!previous.message || open(previous.message)) {
      throw new ApiError(400, 'invalid_request_error', `Previous response '${id}' is still in progress; continue from it once it has ended.`, 'previous_response_in_progress', 'previous_response_id');
    }
    const path = (await store.pathTo(previous.record.conversationId, previous.message.id)) ?? [];
    return { conversationId: previous.record.conversationId, parentId: previous.message.id, history: historyOf(path) };
  }
  if (conversationRef) {
    const conversation = await store.getConversation(owner, conversationRef);
    if (!conversation) throw notFound('conversation', conversationRef);
    const path = conversation.activeMessageId ? ((await store.pathTo(conversation.id, conversation.activeMessageId)) ?? []) : [];
    if (path.some(open)) {
      throw new ApiError(400, 'invalid_request_error', `Conversation '${conversationRef}' has an answer in progress; continue it once that has ended.`, 'conversation_locked', 'conversation');
    }
    return { conversationId: conversation.id, parentId: conversation.activeMessageId, history: historyOf(path) };
  }
  return { conversationId: null, parentId: null, history: [] as ChatMessage[] };
}

export async function createResponse(c: Ctx, request: CreateResponseRequest): Promise<Response> {
  const startedAt = performance.now();
  const { config, store } = c.get('services');
  const owner = c.get('principal');
  const conversationRef = typeof request.conversation === 'string' ? request.conversation : (request.conversation?.id ?? null);
  if (request.previous_response_id && conversationRef) {
    throw new ApiError(400, 'invalid_request_error', "Pass either 'previous_response_id' or 'conversation', not both.", 'invalid_value', 'conversation');
  }
  if (!store && (request.previous_response_id || conversationRef)) {
    const param = request.previous_response_id ? 'previous_response_id' : 'conversation';
    throw new ApiError(400, 'invalid_request_error', `This server keeps no state (PERSIST_TRANSCRIPTS=false), so '${param}' cannot be used: send the whole conversation as input.`, 'persistence_disabled', param);
  }
  const recording = request.store !== false && (await mayStore(c));
  const background = request.background === true;
  if (background && !recording) {
    throw new ApiError(400, 'invalid_request_error', 'A background response must be stored: send store: true (and no x-persist: off) to a server with persistence on.', 'invalid_value', 'background');
  }
  const state = await stateOf(c, request, conversationRef);
  const input = chatMessagesOf(await resolveInput(request, store, owner, config.responses.maxInputItems));
  const streamed = request.stream === true || background;
  const chatRequest = chatRequestOf(request, [...state.history, ...input], config, { stream: streamed });
  // The operator's limits (model allow-list, output tokens) apply as to any chat request.
  const upstreamBody = buildUpstreamRequest(chatRequest, config, { recording: false }).body;
  const base: ResponseBase = {
    id: newResponseId(),
    model: chatRequest.model!,
    instructions: request.instructions ?? null,
    previousResponseId: request.previous_response_id ?? null,
    params: echoedParams(request, conversationRef),
    metadata: request.metadata ?? {},
    background,
    createdAt: new Date(),
    store: recording,
  };
  const answerId = recording ? crypto.randomUUID() : `msg_${crypto.randomUUID().replaceAll('-', '')}`;
  const turn = recording ? await record(c, base, { ...state, input, answerId, streamed, chatRequest }) : null;
  if (turn) c.header(CONVERSATION_HEADER, turn.conversationId);
  const exchange: Exchange = { base, chatRequest, upstreamBody, turn, answerId, startedAt };
  if (background) return startBackground(c, exchange, request.stream === true);
  if (!streamed) return plainResponse(c, exchange);
  return streamedResponse(c, exchange);
}

/**
 * Records the turn: the input after the history (a branch when the history's end already has
 * children), a stream's answer, and the response record, in one transaction.
 */
async function record(
  c: Ctx,
  base: ResponseBase,
  turn: { conversationId: string | null; parentId: string | null; input: ChatMessage[]; answerId: string; streamed: boolean; chatRequest: ChatRequest },
): Promise<ProxiedTurn> {
  const { config, store } = c.get('services');
  const owner = c.get('principal');
  let conversationId = turn.conversationId;
  let created = false;
  if (!conversationId) {
    const conversation = await store!.createConversation(
      owner,
      { title: firstUserText(turn.input), model: base.model },
      { maxPerSession: config.limits.conversationsPerSession, maxBytes: config.limits.bytesPerSession, session: sessionInfo(c) },
    );
    conversationId = conversation.id;
    created = true;
  }
  const messages: NewMessage[] = turn.input.map((m) => ({ ...toStored(m), id: crypto.randomUUID() }));
  const answer: NewMessage | null = turn.streamed ? { id: turn.answerId, role: 'assistant', status: 'streaming', content: '', lease: c.get('services').inFlight.lease() } : null;
  const list = [...messages, ...(answer ? [answer] : [])];
  list[0] = { ...list[0]!, parentMessageId: turn.parentId };
  let inserted: Message[];
  try {
    inserted = await store!.appendMessages(owner, conversationId, list, {
      // A plain request writes its answer afterwards: keep a place for it under the limit.
      maxMessages: config.limits.messagesPerConversation - (answer ? 0 : 1),
      maxBytes: config.limits.bytesPerSession,
      response: {
        id: base.id,
        messageId: turn.answerId,
        inputMessageIds: messages.map((m) => m.id!),
        model: base.model,
        instructions: base.instructions,
        previousResponseId: base.previousResponseId,
        params: base.params,
        metadata: base.metadata,
        background: base.background,
        createdAt: base.createdAt,
      },
    });
  } catch (err) {
    // Nothing of the turn was written: the conversation made for it goes too.
    if (created) await store!.deleteConversation(owner, conversationId).catch(() => {});
    throw err;
  }
  const inputs = answer ? inserted.slice(0, -1) : inserted;
  const ctx = turnContext(c);
  return ProxiedTurn.recorded(ctx, turn.chatRequest, { conversationId, answerId: turn.answerId, answerParentId: inputs.at(-1)?.id ?? turn.parentId, stream: turn.streamed });
}


/** Calls the upstream; a failure is recorded as the answer's before it is thrown. */
async function callUpstream(c: Ctx, exchange: Exchange, stopper: Stopper): Promise<UpstreamResponse> {
  const { config } = c.get('services');
  try {
    return await callChatCompletions(config.upstream, exchange.upstreamBody, { stream: exchange.chatRequest.stream === true, signal: stopper.signal });
  } catch (err) {
    stopper.dispose();
    await exchange.turn?.recordFailure(stopper.cause ?? failureReason(err));
    throw err;
  }
}

/** A non-streaming response: the upstream's answer read whole, recorded, and given as a response object. */
async function plainResponse(c: Ctx, exchange: Exchange): Promise<Response> {
  const { config, store } = c.get('services');
  const { turn } = exchange;
  const stopper = new Stopper({ clientSignal: c.req.raw.signal, onDisconnect: 'abort', detachedMaxMs: config.streams.detachedMaxMs });
  try {
    const upstream = await callUpstream(c, exchange, stopper);
    let text: string;
    try {
      text = await readAll(upstream, config.upstream.timeoutMs);
    } catch (err) {
      await turn?.recordFailure(failureReason(err));
      throw err;
    }
    if (!upstream.ok) {
      await turn?.recordFailure('upstream_error');
      return passError(c, upstream, text, chatCompletionsUrl(config.upstream.baseUrl!));
    }
    let answer: AnswerView | null;
    if (turn) {
      if ((await turn.recordAnswer(upstream.status, text)) === 'not_json') throw notJson();
      answer = await store!.getMessage(exchange.answerId);
    } else answer = plainAnswer(text, exchange.answerId);
    return c.json(responseJson(exchange.base, answer));
  } finally {
    stopper.dispose();
  }
}

const notJson = () => new ApiError(502, 'upstream_error', 'The upstream provider answered with a body that is not JSON.', 'upstream_invalid_response');

/** An upstream's plain answer as a response's answer, for a response that is not recorded. */
function plainAnswer(text: string, id: string): AnswerView {
  let parsed: any;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw notJson();
  }
  const choice = parsed?.choices?.[0];
  const usage = parsed?.usage;
  return {
    id,
    status: choice ? 'final' : 'error',
    content: typeof choice?.message?.content === 'string' ? choice.message.content : '',
    toolCalls: Array.isArray(choice?.message?.tool_calls) ? choice.message.tool_calls : null,
    finishReason: choice ? (choice.finish_reason ?? null) : 'upstream_invalid_response',
    tokensIn: typeof usage?.prompt_tokens === 'number' ? usage.prompt_tokens : null,
    tokensOut: typeof usage?.completion_tokens === 'number' ? usage.completion_tokens : null,
    updatedAt: new Date(),
  };
}

interface EventsRun {
  /** The events, created first, the response's end last (written once the answer's end is committed). */
  readable: ReadableStream<Uint8Array>;
}

/**
 * The upstream's stream as Responses events: the relay (idle timeout, framing, the tap that
 * records the answer) with the translator after the tap, and a tail that adds the last events
 * once the relay has settled, that is once the answer's end is in the database, so that a
 * response is `completed` to every reader the moment its client hears it is.
 */
function eventsOf(
  c: Ctx,
  exchange: Exchange,
  upstream: UpstreamResponse,
  stopper: Stopper,
  run: { observer: StreamObserver; clientSignal: AbortSignal; onDisconnect: OnDisconnect },
  translator: ResponsesEventsStage,
): EventsRun {
  const { config, inFlight, store } = c.get('services');
  const { base, turn } = exchange;
  let how: StreamEnd = 'completed';
  const begun = translator.begin(responseJson(base, null, { status: base.background ? 'queued' : 'in_progress' }));
  const relayed = relay(upstream.body!, {
    observer: {
      push: (bytes) => run.observer.push(bytes),
      end: (ended) => {
        how = ended;
        return run.observer.end(ended);
      },
    },
    timeoutMs: config.upstream.timeoutMs,
    stripUsage: false,
    abortUpstream: (reason) => stopper.abortUpstream(reason),
    clientSignal: run.clientSignal,
    stages: [translator],
    ...(run.onDisconnect === 'continue' && { detach: { onClientGone: stopper.clientGone } }),
  });
  stopper.attach(relayed);
  void relayed.settled.finally(() => stopper.dispose());
  inFlight.track({ interrupt: () => stopper.stop('interrupted'), settled: relayed.settled });
  const ending = async (): Promise<ResponseJson> => {
    await relayed.settled;
    if (turn) {
      const stored = await store!.getMessage(exchange.answerId).catch(() => null);
      if (stored) return responseJson(base, stored);
    }
    const answer = translator.answer(how);
    return responseJson(base, answer, { output: translator.output(statusOf(answer, base.background).status) });
  };
  const readable = relayed.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      start(controller) {
        controller.enqueue(begun);
      },
      async flush(controller) {
        controller.enqueue(translator.finish(await ending()));
      },
    }),
  );
  return { readable };
}

/** A streamed response: its events go to the client as the upstream's chunks arrive. */
async function streamedResponse(c: Ctx, exchange: Exchange): Promise<Response> {
  const { config, metrics } = c.get('services');
  const { turn } = exchange;
  const clientSignal = c.req.raw.signal;
  const onDisconnect: OnDisconnect = turn ? config.streams.onDisconnect : 'abort';
  const stopper = new Stopper({ clientSignal, onDisconnect, detachedMaxMs: config.streams.detachedMaxMs });
  turn?.live?.onStop((cause) => stopper.stop(cause));
  const upstream = await callUpstream(c, exchange, stopper);
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
  const observer = c.get('slot').holdUntilEnd(withTelemetry(turn?.observer() ?? ignore, metrics, c.get('log'), exchange.startedAt));
  const translator = new ResponsesEventsStage({ itemId: exchange.answerId });
  const { readable } = eventsOf(c, exchange, upstream, stopper, { observer, clientSignal, onDisconnect }, translator);
  return c.body(readable, 200, SSE_HEADERS);
}

/**
 * A background response: answered at once (`queued`), run to its end whatever the client does,
 * every event kept in the database for GET …?stream=true. With `stream`, the client follows the
 * events from the first, as any later reader would.
 */
function startBackground(c: Ctx, exchange: Exchange, stream: boolean): Response {
  const { config, store, inFlight, metrics } = c.get('services');
  const log = c.get('log');
  const turn = exchange.turn!;
  const writer = new EventLogWriter({ store: store!, bus: inFlight.bus, log, responseId: exchange.base.id, messageId: exchange.answerId, retryForMs: config.flush.retryMs });
  const translator = new ResponsesEventsStage({ itemId: exchange.answerId, onEvent: (e) => writer.add(e) });
  // The slot is held until the answer ends: background work counts against the same caps.
  let inner: StreamObserver = ignore;
  const held = c.get('slot').holdUntilEnd({ push: (b) => inner.push(b), end: (how) => inner.end(how) });
  // Nobody's connection: only a cancel, or a shutdown, stops it.
  const clientSignal = new AbortController().signal;
  const stopper = new Stopper({ clientSignal, onDisconnect: 'continue', detachedMaxMs: config.streams.detachedMaxMs });
  turn.live?.onStop((cause) => stopper.stop(cause));
  const run = async () => {
    let upstream: UpstreamResponse | null;
    try {
      upstream = await callUpstream(c, exchange, stopper);
      if (!upstream.ok) {
        stopper.dispose();
        await readAll(upstream, config.upstream.timeoutMs).catch(() => '');
        await turn.recordFailure('upstream_error');
      }
    } catch {
      // recorded by callUpstream
      upstream = null;
    }
    if (!upstream?.ok) {
      held.end('upstream_error');
      // The response failed before its first chunk: its events say so.
      translator.begin(responseJson(exchange.base, null, { status: 'queued' }));
      const stored = await store!.getMessage(exchange.answerId).catch(() => null);
      translator.finish(responseJson(exchange.base, stored ?? translator.answer('upstream_error')));
      await writer.finish();
      return;
    }
    inner = withTelemetry(turn.observer(), metrics, log, exchange.startedAt);
    const { readable } = eventsOf(c, exchange, upstream, stopper, { observer: held, clientSignal, onDisconnect: 'continue' }, translator);
    const reader = readable.getReader();
    try {
      while (!(await reader.read()).done);
    } catch (err) {
      log.warn({ err, response_id: exchange.base.id }, 'background response stream failed');
    }
    await writer.finish();
  };
  const done = run().catch((err: unknown) => log.error({ err, response_id: exchange.base.id }, 'background response failed'));
  inFlight.track({ interrupt: () => stopper.stop('interrupted'), settled: done });
  if (!stream) return c.json(responseJson(exchange.base, null), 200);
  return c.body(followFrom(c.get('services'), exchange, -1), 200, SSE_HEADERS);
}

/** A background response's events after `after`, for this caller. */
export function followFrom({ store, inFlight }: Pick<Services, 'store' | 'inFlight'>, exchange: Pick<Exchange, 'base' | 'answerId'>, after: number): ReadableStream<Uint8Array> {
  return followEvents({
    store: store!,
    bus: inFlight.bus,
    responseId: exchange.base.id,
    messageId: exchange.answerId,
    after,
    ending: async () => {
      const response = responseJson(exchange.base, await store!.getMessage(exchange.answerId));
      const type = response.status === 'completed' ? 'response.completed' : response.status === 'incomplete' ? 'response.incomplete' : 'response.failed';
      return { type, body: { response } };
    },
  });
}

