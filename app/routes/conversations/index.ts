import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { MessageNotFoundError, type AccessibleConversation, type JsonObject, type Message, type MessageView, type NewMessage } from '../../../db/store.js';
import { newShareToken } from '../../auth/api-keys.js';
import { requestIsHttps } from '../../client-address.js';
import { ApiError, notFound } from '../../errors.js';
import { idempotent } from '../../idempotency.js';
import { toNewMessage } from '../../messages.js';
import { requirePersistence, requireStorable } from '../../middleware/persistence.js';
import { sessionInfo } from '../../middleware/session.js';
import { deletedJson, deletedSchema, listJson, listSchema } from '../../openai/lists.js';
import { route } from '../../openapi/registry.js';
import { conversationJson, conversationSchema, messageJson, messageSchema, shareJson, shareSchemaJson } from '../../serialize.js';
import { validate } from '../../validate.js';
import { conversationFor, type ConversationsEnv } from './conversation-for.js';
import { conversationItemSchema, itemsOf, itemToMessage, parseItemId } from './items.js';
import { live } from './live.js';
import {
  assertMetadataFits,
  conversationQuerySchema,
  createConversationSchema,
  createItemsSchema,
  createMessageSchema,
  encodeCursor,
  getQuerySchema,
  itemQuerySchema,
  listItemsQuerySchema,
  listQuerySchema,
  messageIdSchema,
  patchConversationSchema,
  shareSchema,
  updateConversationSchema,
} from './schemas.js';
import { search } from './search.js';

type Env = ConversationsEnv;

/** PATCH and OpenAI's POST update: title and metadata, owner only. */
async function updateConversation(c: Context<Env>, id: string, patch: { title?: string | null; metadata?: JsonObject | null }) {
  assertMetadataFits(patch.metadata, c.get('services').config.limits);
  await conversationFor(c, id, 'manage');
  const updated = await c.get('store').updateConversation(c.get('principal'), id, { title: patch.title, metadata: patch.metadata === null ? {} : patch.metadata });
  if (!updated) throw notFound('conversation', id);
  const totals = await c.get('store').tokenTotals([id]);
  return c.json(conversationJson(updated, totals.get(id)));
}

/** The item `itemId` of a conversation the caller may read, with its message; 404 otherwise. */
async function itemFor(c: Context<Env>, conversationId: string, itemId: string) {
  const { messageId } = parseItemId(itemId);
  const message = await c.get('store').getMessage(messageId);
  const found = message?.conversationId === conversationId ? itemsOf(message).find((i) => i.item.id === itemId) : undefined;
  if (!message || !found) throw new ApiError(404, 'not_found_error', `No item found with id '${itemId}' in conversation '${conversationId}'.`, 'not_found', 'item_id');
  return { message, item: found.item };
}

/**
 * A conversation with a page of its messages: the active path (the conversation as it stands,
 * root to active leaf) or the whole tree, each message with its place among its siblings.
 */
async function withMessages(c: Context<Env>, conversation: AccessibleConversation, page: { view: MessageView; after_seq: number; limit: number }) {
  const store = c.get('store');
  const { view, after_seq, limit } = page;
  // One after the other: run side by side on two Postgres connections, the totals could be
  // read before an answer's counts landed while the messages show it finished.
  const messages = await store.readMessages(conversation.id, { view, afterSeq: after_seq, limit });
  const totals = await store.tokenTotals([conversation.id]);
  return {
    ...conversationJson(conversation, totals.get(conversation.id)),
    view,
    messages: messages.items.map(messageJson),
    next_after_seq: messages.hasMore ? messages.items.at(-1)!.seq : null,
  };
}

const firstPage = { view: 'active', after_seq: 0, limit: 100 } as const;

/** A message of another conversation, copied for a fork: what it says, not what it cost (the fork cost nothing). */
function copied(m: Message): NewMessage {
  const open = m.status === 'draft' || m.status === 'streaming';
  return {
    role: m.role,
    // An answer still streaming is copied as far as it got, like one its writer never finished.
    status: open ? 'error' : m.status,
    finishReason: open ? 'interrupted' : m.finishReason,
    content: m.content,
    contentJson: m.contentJson,
    clientId: m.clientId,
    toolCalls: m.toolCalls,
    functionCall: m.functionCall,
  };
}

export const conversations = new Hono<Env>()
  .use(requirePersistence())
  // Before the /:id routes, which would take "search" for an id.
  .route('/', search)

  .post('/', requireStorable(), validate('json', createConversationSchema), idempotent(), async (c) => {
    const { config } = c.get('services');
    const { items, ...input } = c.req.valid('json');
    assertMetadataFits(input.metadata, config.limits);
    const created = await c.get('store').createConversation(
      c.get('principal'),
      { ...input, metadata: input.metadata ?? undefined },
      {
        maxPerSession: config.limits.conversationsPerSession,
        maxBytes: config.limits.bytesPerSession,
        maxMessages: config.limits.messagesPerConversation,
        session: sessionInfo(c),
        ...(items && { messages: items.map(itemToMessage) }),
      },
    );
    return c.json(conversationJson(created), 201);
  })

  .get('/', validate('query', listQuerySchema), async (c) => {
    const { cursor, limit, include_deleted, scope } = c.req.valid('query');
    const page = await c.get('store').listConversations(c.get('principal'), { limit, after: cursor, includeDeleted: include_deleted, scope });
    const last = page.items.at(-1);
    const totals = await c.get('store').tokenTotals(page.items.map((i) => i.id));
    return c.json({
      object: 'list',
      items: page.items.map((i) => conversationJson(i, totals.get(i.id))),
      next_cursor: page.hasMore && last ? encodeCursor(last) : null,
    });
  })

  .get('/:id', validate('query', conversationQuerySchema), async (c) => {
    const conversation = await conversationFor(c, c.req.param('id'), 'read');
    return c.json(await withMessages(c, conversation, c.req.valid('query')));
  })

  // Switch branches: the path through the message, to its newest leaf, becomes the conversation.
  .post('/:id/active', validate('json', messageIdSchema), async (c) => {
    const id = c.req.param('id');
    const conversation = await conversationFor(c, id, 'write');
    const updated = await c.get('store').setActiveMessage(c.get('principal'), id, c.req.valid('json').message_id);
    return c.json(await withMessages(c, { ...updated, access: conversation.access, streamingMessageId: conversation.streamingMessageId }, firstPage));
  })

  // A new conversation of the caller's, holding a copy of the path up to the message.
  .post('/:id/fork', requireStorable(), validate('json', messageIdSchema), idempotent(), async (c) => {
    const id = c.req.param('id');
    const { message_id } = c.req.valid('json');
    const source = await conversationFor(c, id, 'read');
    const path = await c.get('store').pathTo(id, message_id);
    if (!path) throw new MessageNotFoundError(id, message_id);
    const { limits } = c.get('services').config;
    const forked = await c.get('store').createConversation(
      c.get('principal'),
      { title: source.title, model: source.model, metadata: { forked_from: { conversation_id: id, message_id } } },
      {
        maxPerSession: limits.conversationsPerSession,
        maxMessages: limits.messagesPerConversation,
        maxBytes: limits.bytesPerSession,
        session: sessionInfo(c),
        messages: path.map(copied),
      },
    );
    return c.json(await withMessages(c, { ...forked, access: 'owner', streamingMessageId: null }, firstPage), 201);
  })

  .patch('/:id', requireStorable(), validate('json', patchConversationSchema), (c) => updateConversation(c, c.req.param('id'), c.req.valid('json')))

  // OpenAI's update (`client.conversations.update`): the same, by POST.
  .post('/:id', requireStorable(), validate('json', updateConversationSchema), (c) => updateConversation(c, c.req.param('id'), c.req.valid('json')))

  .delete('/:id', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    if (!(await c.get('store').deleteConversation(c.get('principal'), id))) throw notFound('conversation', id);
    return c.json(deletedJson(id, 'conversation.deleted'));
  })

  // OpenAI's conversation items: the same messages, shaped as the Responses API shapes them.
  .get('/:id/items', validate('query', listItemsQuerySchema), async (c) => {
    const id = c.req.param('id');
    const conversation = await conversationFor(c, id, 'read');
    const { after, limit, order } = c.req.valid('query');
    // A page starts at the message of the `after` item (inclusive: it may hold more items).
    let cursor: readonly [number, number] | null = null;
    if (after) {
      const { messageId, n } = parseItemId(after);
      const message = await c.get('store').getMessage(messageId);
      if (message?.conversationId !== id) {
        throw new ApiError(400, 'invalid_request_error', `Invalid query parameter 'after': '${after}' is not an item of this conversation.`, 'invalid_value', 'after');
      }
      cursor = [message.seq, n];
    }
    // The items are the conversation as it stands: its active path (seqs increase along it).
    const path = conversation.activeMessageId ? ((await c.get('store').pathTo(id, conversation.activeMessageId)) ?? []) : [];
    const sign = order === 'asc' ? 1 : -1;
    const ordered = order === 'asc' ? path : [...path].reverse();
    // Every message gives at least one item: limit + 2 messages hold the cursor's and limit + 1 more.
    const messages = (cursor ? ordered.filter((m) => sign * (m.seq - cursor[0]) >= 0) : ordered).slice(0, limit + 2);
    const beyond = (place: readonly [number, number]) => !cursor || sign * (place[0] - cursor[0] || place[1] - cursor[1]) > 0;
    const items = messages
      .flatMap((m) => (order === 'asc' ? itemsOf(m) : itemsOf(m).reverse()))
      .filter((i) => beyond(i.place))
      .map((i) => i.item);
    return c.json(listJson(items.slice(0, limit), items.length > limit));
  })

  .post('/:id/items', requireStorable(), validate('query', itemQuerySchema), validate('json', createItemsSchema), async (c) => {
    const { limits } = c.get('services').config;
    const added = await c.get('store').appendMessages(c.get('principal'), c.req.param('id'), c.req.valid('json').items.map(itemToMessage), {
      maxMessages: limits.messagesPerConversation,
      maxBytes: limits.bytesPerSession,
    });
    // REDACT_SYSTEM_PROMPTS keeps system messages out: they are not among the items made.
    return c.json(listJson(added.flatMap((m) => itemsOf(m).map((i) => i.item)), false));
  })

  .get('/:id/items/:item_id', validate('query', itemQuerySchema), async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'read');
    return c.json((await itemFor(c, id, c.req.param('item_id'))).item);
  })

  // Owner only. An item goes with the message it comes from: an answer that both wrote text and
  // called tools is one message, so deleting any of its items deletes them all.
  .delete('/:id/items/:item_id', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    const { message } = await itemFor(c, id, c.req.param('item_id'));
    if (!(await c.get('store').deleteMessage(id, message.id))) throw notFound('item', c.req.param('item_id'));
    const conversation = await conversationFor(c, id, 'read');
    const totals = await c.get('store').tokenTotals([id]);
    return c.json(conversationJson(conversation, totals.get(id)));
  })

  .post('/:id/messages', requireStorable(), validate('json', createMessageSchema), idempotent(), async (c) => {
    const { role, content, parent_message_id } = c.req.valid('json');
    const { limits } = c.get('services').config;
    const message: NewMessage = { ...toNewMessage(role, content), ...(parent_message_id !== undefined && { parentMessageId: parent_message_id }) };
    const [stored] = await c.get('store').appendMessages(c.get('principal'), c.req.param('id'), [message], {
      maxMessages: limits.messagesPerConversation,
      maxBytes: limits.bytesPerSession,
    });
    if (!stored) {
      // REDACT_SYSTEM_PROMPTS: the conversation exists and is the caller's, but nothing was kept.
      return c.json(
        { object: 'conversation.message', stored: false, role, reason: 'System prompts are not stored on this server (REDACT_SYSTEM_PROMPTS=true).' },
        202,
      );
    }
    return c.json(messageJson(stored), 201);
  })

  // Sharing: the owner grants other users read (viewer) or read-and-write (editor) access.
  .put('/:id/shares/:user_id', validate('json', shareSchema), async (c) => {
    const id = c.req.param('id');
    const userId = c.req.param('user_id');
    await conversationFor(c, id, 'manage');
    if (userId === c.get('principal').userId) {
      throw new ApiError(400, 'invalid_request_error', 'You own this conversation: share it with another user.', 'invalid_value', 'user_id');
    }
    const share = await c.get('store').setShare(id, userId, c.req.valid('json').role);
    return c.json(shareJson(share));
  })

  .get('/:id/shares', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    return c.json({ object: 'list', items: (await c.get('store').listShares(id)).map(shareJson) });
  })

  .delete('/:id/shares/:user_id', async (c) => {
    const id = c.req.param('id');
    const userId = c.req.param('user_id');
    await conversationFor(c, id, 'manage');
    if (!(await c.get('store').deleteShare(id, userId))) {
      throw new ApiError(404, 'not_found_error', `Conversation '${id}' is not shared with user '${userId}'.`, 'not_found', 'user_id');
    }
    return c.body(null, 204);
  })

  // A public read-only link: whoever has it reads the title and messages, without credentials.
  .post('/:id/share_link', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    const { token, hash } = newShareToken();
    // One link per conversation: a new one replaces (and so revokes) the previous.
    await c.get('store').setShareLink(id, hash);
    const url = new URL(c.req.url);
    url.protocol = requestIsHttps(c) ? 'https:' : 'http:';
    return c.json({ object: 'conversation.share_link', conversation_id: id, token, url: `${url.origin}/v1/shared/${token}` }, 201);
  })

  .delete('/:id/share_link', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    if (!(await c.get('store').deleteShareLink(id))) {
      throw new ApiError(404, 'not_found_error', `Conversation '${id}' has no share link.`, 'not_found', 'id');
    }
    return c.body(null, 204);
  })

  // Watching, resuming and stopping an answer (live.ts).
  .route('/', live);

const conversationParam = { id: 'The conversation id' };
const tag = 'Conversations';
const items = 'Conversation items';
const conversationList = z.object({ object: z.literal('list'), items: z.array(conversationSchema), next_cursor: z.string().nullable() });
const conversationWithMessages = conversationSchema.extend({ messages: z.array(messageSchema), next_after_seq: z.number().int().nullable() });
export const conversationDocs = [
  route({
    method: 'post',
    path: '/v1/conversations',
    tag,
    summary: 'Create a conversation',
    description: "Also OpenAI's `client.conversations.create`: `items` become its first messages. The answer is this server's conversation (ISO-8601 times).",
    body: createConversationSchema,
    responses: { 201: { description: 'The conversation', schema: conversationSchema } },
    errors: [403],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations',
    tag,
    summary: 'List conversations, newest first',
    query: listQuerySchema,
    responses: { 200: { description: 'A page of conversations', schema: conversationList } },
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations/:id',
    tag,
    summary: 'Get a conversation with a page of its messages',
    description: 'The active path (root to active leaf) by default; `view=tree` pages every message of every branch. Each message carries `sibling_count` and `sibling_index`.',
    params: conversationParam,
    query: conversationQuerySchema,
    responses: { 200: { description: 'The conversation and messages (seq ascending)', schema: conversationWithMessages } },
    errors: [404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/active',
    tag,
    summary: 'Switch branches: the path through a message (to its newest leaf) becomes the conversation',
    params: conversationParam,
    body: messageIdSchema,
    responses: { 200: { description: 'The conversation with the first page of its new active path', schema: conversationWithMessages } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/fork',
    tag,
    summary: "Copy the path up to a message into a new conversation of the caller's",
    params: conversationParam,
    body: messageIdSchema,
    headers: { 'idempotency-key': 'A retry with the same key within 24 h returns the first outcome' },
    responses: { 201: { description: 'The new conversation with its messages', schema: conversationWithMessages } },
    errors: [404, 409],
    persistence: true,
  }),
  route({
    method: 'patch',
    path: '/v1/conversations/:id',
    tag,
    summary: "Change a conversation's title or metadata (owner only)",
    params: conversationParam,
    body: patchConversationSchema,
    responses: { 200: { description: 'The conversation', schema: conversationSchema } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id',
    tag,
    summary: "Update a conversation (OpenAI's `conversations.update`; as PATCH, owner only)",
    params: conversationParam,
    body: updateConversationSchema,
    responses: { 200: { description: 'The conversation', schema: conversationSchema } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/conversations/:id',
    tag,
    summary: 'Delete a conversation (soft delete, owner only)',
    params: conversationParam,
    responses: { 200: { description: 'Deleted', schema: deletedSchema('conversation.deleted') } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/messages',
    tag,
    summary: 'Add a message (owner or editor)',
    params: conversationParam,
    body: createMessageSchema,
    responses: {
      201: { description: 'The message', schema: messageSchema },
      202: { description: 'Not stored: a system message under REDACT_SYSTEM_PROMPTS', schema: z.object({ object: z.literal('conversation.message'), stored: z.literal(false) }).loose() },
    },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations/:id/items',
    tag: items,
    summary: "List a conversation's items (OpenAI's `conversations.items.list`)",
    params: conversationParam,
    query: listItemsQuerySchema,
    responses: { 200: { description: 'A page of items', schema: listSchema(conversationItemSchema) } },
    errors: [404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/items',
    tag: items,
    summary: 'Add items (owner or editor)',
    params: conversationParam,
    query: itemQuerySchema,
    body: createItemsSchema,
    responses: { 200: { description: 'The items made', schema: listSchema(conversationItemSchema) } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations/:id/items/:item_id',
    tag: items,
    summary: 'Get an item',
    params: { ...conversationParam, item_id: 'The item id' },
    query: itemQuerySchema,
    responses: { 200: { description: 'The item', schema: conversationItemSchema } },
    errors: [404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/conversations/:id/items/:item_id',
    tag: items,
    summary: 'Delete an item (owner only)',
    description: "Removes the message the item comes from (with that message's other items); later messages move down one seq. Answers the conversation.",
    params: { ...conversationParam, item_id: 'The item id' },
    responses: { 200: { description: 'The conversation', schema: conversationSchema } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'put',
    path: '/v1/conversations/:id/shares/:user_id',
    tag,
    summary: 'Share with a user as viewer or editor (owner only)',
    params: { ...conversationParam, user_id: 'The user to share with' },
    body: shareSchema,
    responses: { 200: { description: 'The share', schema: shareSchemaJson } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations/:id/shares',
    tag,
    summary: "List a conversation's shares (owner only)",
    params: conversationParam,
    responses: { 200: { description: 'The shares', schema: z.object({ object: z.literal('list'), items: z.array(shareSchemaJson) }) } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/conversations/:id/shares/:user_id',
    tag,
    summary: 'Withdraw a share (owner only)',
    params: { ...conversationParam, user_id: 'The user it is shared with' },
    responses: { 204: { description: 'Withdrawn' } },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/:id/share_link',
    tag,
    summary: 'Make a public read-only link, replacing any previous one (owner only)',
    params: conversationParam,
    responses: {
      201: {
        description: 'The link',
        schema: z.object({ object: z.literal('conversation.share_link'), conversation_id: z.string(), token: z.string(), url: z.string() }),
      },
    },
    errors: [403, 404],
    persistence: true,
  }),
  route({
    method: 'delete',
    path: '/v1/conversations/:id/share_link',
    tag,
    summary: 'Revoke the public link (owner only)',
    params: conversationParam,
    responses: { 204: { description: 'Revoked' } },
    errors: [403, 404],
    persistence: true,
  }),
];
