import { Hono, type Context } from 'hono';
import type { Store } from '../../db/store.js';
import { assertAllowed, type Action } from '../access.js';
import { ApiError, notFound } from '../errors.js';
import { concurrencyLimit } from '../middleware/concurrency.js';
import { requirePersistence } from '../middleware/persistence.js';
import { deletedJson, deletedSchema, listJson, listSchema } from '../openai/lists.js';
import { route } from '../openapi/registry.js';
import { createResponse, followFrom } from '../responses/create.js';
import { baseOf, responseJson } from '../responses/object.js';
import { createResponseSchema, inputItemsQuerySchema, responseObjectSchema, retrieveQuerySchema } from '../responses/schemas.js';
import { cancelAnswer } from '../streaming/cancel.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';
import { conversationItemSchema, itemsOf } from './conversations/items.js';

type Env = AppEnv & { Variables: { store: Store } };

/** The response, if the caller may do `action` with it: 404 when it may not read its conversation, 403 when it may read but not do this. */
async function responseFor(c: Context<Env>, id: string, action: Action) {
  const found = await c.get('store').getResponse(c.get('principal'), id);
  if (!found) throw notFound('response', id);
  assertAllowed(found.access, action, found.record.conversationId);
  return found;
}

const running = (status: string | undefined) => status === 'streaming' || status === 'draft';

/**
 * OpenAI's Responses API over any chat-completions upstream, its state (previous responses,
 * conversations, background events) kept in this server's store.
 */
export const responses = new Hono<AppEnv>()
  .post('/', validate('json', createResponseSchema), concurrencyLimit(), async (c) => createResponse(c, c.req.valid('json')))

  .get('/:id', requirePersistence(), validate('query', retrieveQuerySchema), async (c) => {
    const found = await responseFor(c, c.req.param('id'), 'read');
    const { stream, starting_after } = c.req.valid('query');
    if (stream !== 'true') return c.json(responseJson(baseOf(found.record), found.message));
    if (!found.record.background) {
      throw new ApiError(400, 'invalid_request_error', 'Only a background response (background: true) can be streamed again; this one was not.', 'invalid_value', 'stream');
    }
    const body = followFrom(c.get('services'), { base: baseOf(found.record), answerId: found.record.messageId }, starting_after ?? -1);
    return c.body(body, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', 'x-accel-buffering': 'no' });
  })

  // The record (and its events) only: its conversation keeps the messages. A response still
  // running is stopped first.
  .delete('/:id', requirePersistence(), async (c) => {
    const { record, message } = await responseFor(c, c.req.param('id'), 'manage');
    if (running(message?.status)) {
      const { config, inFlight } = c.get('services');
      await cancelAnswer({ store: c.get('store'), bus: inFlight.bus, waitMs: config.streams.leaseMs }, record.messageId);
    }
    if (!(await c.get('store').deleteResponse(record.id))) throw notFound('response', record.id);
    return c.json(deletedJson(record.id, 'response'));
  })

  .get('/:id/input_items', requirePersistence(), validate('query', inputItemsQuerySchema), async (c) => {
    const { record } = await responseFor(c, c.req.param('id'), 'read');
    const { after, limit, order } = c.req.valid('query');
    const store = c.get('store');
    // Bounded by RESPONSES_MAX_INPUT_ITEMS.
    const messages = await Promise.all(record.inputMessageIds.map((id) => store.getMessage(id)));
    const items = messages.filter((m) => m?.conversationId === record.conversationId).flatMap((m) => itemsOf(m!).map((i) => i.item));
    const ordered = order === 'asc' ? items : items.reverse();
    let start = 0;
    if (after) {
      const at = ordered.findIndex((i) => i.id === after);
      if (at < 0) throw new ApiError(400, 'invalid_request_error', `Invalid query parameter 'after': '${after}' is not an input item of this response.`, 'invalid_value', 'after');
      start = at + 1;
    }
    const page = ordered.slice(start, start + limit + 1);
    return c.json(listJson(page.slice(0, limit), page.length > limit));
  })

  .post('/:id/cancel', requirePersistence(), async (c) => {
    const found = await responseFor(c, c.req.param('id'), 'write');
    if (!found.record.background) {
      throw new ApiError(400, 'invalid_request_error', 'Only a background response (background: true) can be cancelled.', 'invalid_value', null);
    }
    let message = found.message;
    if (running(message?.status)) {
      const { config, inFlight } = c.get('services');
      const result = await cancelAnswer({ store: c.get('store'), bus: inFlight.bus, waitMs: config.streams.leaseMs }, found.record.messageId);
      message = result?.message ?? message;
    }
    return c.json(responseJson(baseOf(found.record), message));
  });

const tag = 'Responses';
const responseId = { id: 'The response id (resp_…)' };
export const responseDocs = [
  route({
    method: 'post',
    path: '/v1/responses',
    tag,
    summary: "Create a response (OpenAI's Responses API over the chat-completions upstream)",
    description:
      'Translated into one chat-completions request: the stored history of `previous_response_id` or `conversation`, then `instructions` and the input. Recorded as a conversation turn unless `store: false`. `stream: true` answers with Responses events; `background: true` answers at once and runs on.',
    body: createResponseSchema,
    headers: { 'x-persist': '`off`: answered, nothing recorded (as store: false)' },
    responses: {
      200: {
        description: 'The response, or (stream: true) its events as Server-Sent Events',
        schema: responseObjectSchema,
        mediaType: 'text/event-stream',
        headers: { 'x-conversation-id': 'The conversation the response was recorded in' },
      },
    },
    errors: [403, 404, 502, 503, 504],
  }),
  route({
    method: 'get',
    path: '/v1/responses/:id',
    tag,
    summary: 'Get a response',
    description: 'As it stands: a response still running shows its output so far. With `stream=true` (background responses only), its events after `starting_after`, replayed then followed live, from any server process.',
    params: responseId,
    query: retrieveQuerySchema,
    responses: { 200: { description: 'The response, or its events', schema: responseObjectSchema, mediaType: 'text/event-stream' } },
    errors: [400, 404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/responses/:id',
    tag,
    summary: 'Delete a response',
    description: 'Owner only. Deletes the record; its conversation keeps the messages. A response still running is cancelled first.',
    params: responseId,
    responses: { 200: { description: 'Deleted', schema: deletedSchema('response') } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/responses/:id/input_items',
    tag,
    summary: "List a response's input items",
    description: 'The items its input was stored as (an item_reference as a copy of the item it named), newest first by default.',
    params: responseId,
    query: inputItemsQuerySchema,
    responses: { 200: { description: 'A page of items', schema: listSchema(conversationItemSchema) } },
    errors: [400, 404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/responses/:id/cancel',
    tag,
    summary: 'Cancel a background response',
    description: 'Stops the upstream request on whichever server process runs it; the response ends `cancelled`. One that already ended is returned as it is. Owner or editor.',
    params: responseId,
    responses: { 200: { description: 'The response', schema: responseObjectSchema } },
    errors: [400, 403, 404],
    persistence: true,
  }),
];
