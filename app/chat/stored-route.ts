import { Hono, type Context } from 'hono';
import { z } from 'zod';
import type { Store } from '../../db/store.js';
import { assertAllowed, type Action } from '../access.js';
import { ApiError, notFound } from '../errors.js';
import { requirePersistence, requireStorable } from '../middleware/persistence.js';
import { afterParam, deletedJson, deletedSchema, foldQuery, limitParam, listJson, listSchema, orderParam } from '../openai/lists.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';
import { openAiMetadataSchema } from './schemas.js';
import { chatCompletionSchema, completionJson, storeMessageJson, storeMessageSchema } from './stored.js';

type Env = AppEnv & { Variables: { store: Store } };

export const listCompletionsQuerySchema = z.preprocess(
  foldQuery,
  z.object({
    model: z.string().min(1).max(256).optional().describe('Only completions by this model (as the completion names it)'),
    metadata: openAiMetadataSchema.optional().describe('metadata[key]=value: only completions whose metadata holds every pair given (at most 16)'),
    after: afterParam,
    limit: limitParam,
    order: orderParam('asc'),
  }),
);

export const listCompletionMessagesQuerySchema = z.object({ after: afterParam, limit: limitParam, order: orderParam('asc') });

export const updateCompletionSchema = z.strictObject({
  metadata: openAiMetadataSchema.nullable().describe('Replaces the metadata; null clears it'),
});

/**
 * The completion, if the caller may do `action` with it: 404 when it may not read its
 * conversation, 403 when it may read it but not do this (as for conversations).
 */
async function completionFor(c: Context<Env>, id: string, action: Action, options?: { orUpstreamId?: boolean }) {
  const found = await c.get('store').getChatCompletion(c.get('principal'), id, options);
  if (!found) throw notFound('chat completion', id);
  assertAllowed(found.access, action, found.record.conversationId);
  return found;
}

/**
 * OpenAI's stored chat completions: every exchange this server recorded, whatever upstream
 * answered it. Mounted beside the proxy under /v1/chat; each route needs persistence (the proxy
 * does not).
 */
export const storedCompletions = new Hono<Env>()
  .get('/completions', requirePersistence(), validate('query', listCompletionsQuerySchema), async (c) => {
    const { after, limit, order, model, metadata } = c.req.valid('query');
    const page = await c.get('store').listChatCompletions(c.get('principal'), { after, limit, order, model, metadata });
    return c.json(listJson(page.items.map(completionJson), page.hasMore));
  })

  // Our id, or else the upstream's (the caller's own most recent first): a client that only
  // kept the `id` of the answer it streamed can still find it.
  .get('/completions/:id', requirePersistence(), async (c) => {
    return c.json(completionJson(await completionFor(c, c.req.param('id'), 'read', { orUpstreamId: true })));
  })

  .post('/completions/:id', requirePersistence(), requireStorable(), validate('json', updateCompletionSchema), async (c) => {
    const found = await completionFor(c, c.req.param('id'), 'manage');
    const updated = await c.get('store').updateChatCompletion(found.record.id, c.req.valid('json').metadata ?? {});
    if (!updated) throw notFound('chat completion', found.record.id);
    return c.json(completionJson({ ...found, record: updated }));
  })

  // The record only: the conversation keeps its messages.
  .delete('/completions/:id', requirePersistence(), async (c) => {
    const found = await completionFor(c, c.req.param('id'), 'manage');
    if (!(await c.get('store').deleteChatCompletion(found.record.id))) throw notFound('chat completion', found.record.id);
    return c.json(deletedJson(found.record.id, 'chat.completion.deleted'));
  })

  // The messages that led to the answer: those before it in its conversation.
  .get('/completions/:id/messages', requirePersistence(), validate('query', listCompletionMessagesQuerySchema), async (c) => {
    const { record, message: answer } = await completionFor(c, c.req.param('id'), 'read');
    const { after, limit, order } = c.req.valid('query');
    // The messages that led to the answer: its path in the conversation's tree, not every
    // message before it (another branch's are no part of this exchange).
    const path = (await c.get('store').pathTo(record.conversationId, answer.id)) ?? [answer];
    const led = path.slice(0, -1);
    const ordered = order === 'asc' ? led : [...led].reverse();
    let start = 0;
    if (after) {
      const at = ordered.findIndex((m) => m.id === after);
      if (at < 0) throw new ApiError(400, 'invalid_request_error', `Invalid query parameter 'after': '${after}' is not a message of this completion.`, 'invalid_value', 'after');
      start = at + 1;
    }
    const page = ordered.slice(start, start + limit + 1);
    return c.json(listJson(page.slice(0, limit).map(storeMessageJson), page.length > limit));
  });

const completionId = { id: 'Our completion id (chatcmpl-…)' };
export const storedCompletionDocs = [
  route({
    method: 'get',
    path: '/v1/chat/completions',
    tag: 'Stored chat completions',
    summary: 'List stored chat completions',
    description: 'Every exchange the caller may read (its own and those shared with it), oldest first by default. `client.chat.completions.list()`.',
    query: listCompletionsQuerySchema,
    responses: { 200: { description: 'A page of completions', schema: listSchema(chatCompletionSchema) } },
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/chat/completions/:id',
    tag: 'Stored chat completions',
    summary: 'Get a stored chat completion',
    description: "By our id, or by the upstream's id (the caller's own most recent one first). A streamed answer still running shows as it stands.",
    params: { id: "Our completion id, or the upstream's" },
    responses: { 200: { description: 'The completion', schema: chatCompletionSchema } },
    errors: [404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/chat/completions/:id',
    tag: 'Stored chat completions',
    summary: "Update a stored chat completion's metadata",
    description: 'Owner only.',
    params: completionId,
    body: updateCompletionSchema,
    responses: { 200: { description: 'The updated completion', schema: chatCompletionSchema } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/chat/completions/:id',
    tag: 'Stored chat completions',
    summary: 'Delete a stored chat completion',
    description: 'Owner only. Deletes the record; its conversation keeps the messages.',
    params: completionId,
    responses: { 200: { description: 'Deleted', schema: deletedSchema('chat.completion.deleted') } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/chat/completions/:id/messages',
    tag: 'Stored chat completions',
    summary: 'List the messages that led to a stored chat completion',
    params: completionId,
    query: listCompletionMessagesQuerySchema,
    responses: { 200: { description: 'A page of messages', schema: listSchema(storeMessageSchema) } },
    errors: [404],
    persistence: true,
  }),
];
