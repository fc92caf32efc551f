import { Hono, type Context } from 'hono';
import { z } from 'zod';
import type { Message } from '../../../db/store.js';
import { ApiError, notFound } from '../../errors.js';
import { route } from '../../openapi/registry.js';
import { messageJson, messageSchema } from '../../serialize.js';
import { cancelAnswer } from '../../streaming/cancel.js';
import { validate } from '../../validate.js';
import { conversationFor, type ConversationsEnv } from './conversation-for.js';
import { intParam } from './schemas.js';

const offset = intParam(0, Number.MAX_SAFE_INTEGER);
const streamQuerySchema = z.object({ offset: offset.optional() });
// What an EventSource sends back when it reconnects: the id of the last event it got.
const streamHeadersSchema = z.looseObject({ 'last-event-id': offset.optional() });

/** An answer of the conversation: one of its assistant messages, else 404. */
async function answerOf(c: Context<ConversationsEnv>, conversationId: string, messageId: string): Promise<Message> {
  const message = await c.get('store').getMessage(messageId);
  if (!message || message.conversationId !== conversationId || message.role !== 'assistant') {
    throw new ApiError(404, 'not_found_error', `Conversation '${conversationId}' has no answer with id '${messageId}'.`, 'not_found', 'message_id');
  }
  return message;
}

/**
 * Watching, resuming and stopping an answer (mounted under /v1/conversations): whoever may read
 * the conversation may watch, whoever may write to it (its owner, an editor) may stop.
 */
export const live = new Hono<ConversationsEnv>()
  .get('/:id/messages/:message_id/stream', validate('query', streamQuerySchema), validate('header', streamHeadersSchema), async (c) => {
    const id = c.req.param('id');
    const conversation = await conversationFor(c, id, 'read');
    const answer = await answerOf(c, id, c.req.param('message_id'));
    const { inFlight, config } = c.get('services');
    const watch = inFlight.watchers.open(
      {
        store: c.get('store'),
        bus: inFlight.bus,
        answers: inFlight.answers,
        messageId: answer.id,
        model: conversation.model,
        createdAt: answer.createdAt,
        // A reconnecting EventSource's Last-Event-ID is newer than the ?offset its URL still carries.
        offset: c.req.valid('header')['last-event-id'] ?? c.req.valid('query').offset ?? 0,
        log: c.get('log'),
      },
      config.streams.maxWatchers,
    );
    if (!watch) {
      throw new ApiError(
        429,
        'rate_limit_error',
        `This answer already has ${config.streams.maxWatchers} watchers on this server (STREAM_MAX_WATCHERS). Retry shortly.`,
        'too_many_watchers',
        null,
        { 'retry-after': '1' },
      );
    }
    return c.body(watch.readable, 200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
  })

  .post('/:id/messages/:message_id/cancel', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'write');
    const answer = await answerOf(c, id, c.req.param('message_id'));
    if (answer.status === 'final' || answer.status === 'error') return c.json(messageJson(answer));
    const { inFlight, config } = c.get('services');
    const result = await cancelAnswer({ store: c.get('store'), bus: inFlight.bus, waitMs: config.streams.leaseMs }, answer.id);
    if (!result) throw notFound('conversation', id);
    // 202: asked, but its writer has not recorded the end yet (it will, or the lease sweep will).
    return c.json(messageJson(result.message), result.settled ? 200 : 202);
  });

const tag = 'Live answers';
const params = { id: 'The conversation id', message_id: 'The answer (an assistant message) id' };
export const liveDocs = [
  route({
    method: 'get',
    path: '/v1/conversations/:id/messages/:message_id/stream',
    tag,
    summary: 'Watch or resume an answer',
    description:
      "Server-Sent Events in OpenAI's `chat.completion.chunk` format: the answer's text from `offset` (or `Last-Event-ID`), then its live deltas until it ends, then `data: [DONE]`. Every event's `id` is the number of UTF-16 code units of content delivered so far. Anyone who may read the conversation may watch.",
    params,
    query: streamQuerySchema,
    headers: { 'last-event-id': 'Resume after this many content code units (an EventSource sends it when it reconnects)' },
    responses: { 200: { description: 'The answer as an event stream', mediaType: 'text/event-stream' } },
    errors: [404, 429],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/messages/:message_id/cancel',
    tag,
    summary: 'Stop an answer wherever it runs',
    description:
      'Stops the upstream request on whichever server process is producing the answer, and records it `error` / `cancelled`. An answer that already ended is returned unchanged. Owner or editor only.',
    params,
    responses: {
      200: { description: 'The answer as it ended', schema: messageSchema },
      202: { description: 'Asked; the producing process has not recorded the end yet', schema: messageSchema },
    },
    errors: [403, 404],
    persistence: true,
  }),
];
