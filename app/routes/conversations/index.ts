import { Hono, type Context } from 'hono';
import type { Store } from '../../../db/store.js';
import { assertAllowed, type Action } from '../../access.js';
import { newShareToken } from '../../auth/api-keys.js';
import { requestIsHttps } from '../../client-address.js';
import { ApiError, notFound } from '../../errors.js';
import { toNewMessage } from '../../messages.js';
import { requirePersistence, requireStorable } from '../../middleware/persistence.js';
import { sessionInfo } from '../../middleware/session.js';
import { conversationJson, messageJson, shareJson } from '../../serialize.js';
import type { AppEnv } from '../../types.js';
import { validate } from '../../validate.js';
import {
  assertMetadataFits,
  createConversationSchema,
  createMessageSchema,
  encodeCursor,
  getQuerySchema,
  listQuerySchema,
  patchConversationSchema,
  shareSchema,
} from './schemas.js';
import { search } from './search.js';

type Env = AppEnv & { Variables: { store: Store } };

/**
 * The conversation, if the caller may do `action` with it: 404 when it may not even read it
 * (nobody learns that it exists), 403 when it may read it but not do this.
 */
async function conversationFor(c: Context<Env>, id: string, action: Action) {
  const conversation = await c.get('store').getConversation(c.get('principal'), id);
  if (!conversation) throw notFound('conversation', id);
  assertAllowed(conversation.access, action, id);
  return conversation;
}

export const conversations = new Hono<Env>()
  .use(requirePersistence())
  // Before the /:id routes, which would take "search" for an id.
  .route('/', search)

  .post('/', requireStorable(), validate('json', createConversationSchema), async (c) => {
    const { config } = c.get('services');
    const input = c.req.valid('json');
    assertMetadataFits(input.metadata, config.limits);
    const created = await c.get('store').createConversation(c.get('principal'), input, {
      maxPerSession: config.limits.conversationsPerSession,
      maxBytes: config.limits.bytesPerSession,
      session: sessionInfo(c),
    });
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

  .get('/:id', validate('query', getQuerySchema), async (c) => {
    const id = c.req.param('id');
    const conversation = await conversationFor(c, id, 'read');
    const { after_seq, limit } = c.req.valid('query');
    // One after the other: run side by side on two Postgres connections, the totals could be
    // read before an answer's counts landed while the messages show it finished.
    const messages = await c.get('store').listMessages(id, { afterSeq: after_seq, limit });
    const totals = await c.get('store').tokenTotals([id]);
    const last = messages.at(-1);
    return c.json({
      ...conversationJson(conversation, totals.get(id)),
      messages: messages.map(messageJson),
      // Seqs are dense, so the page is the last one exactly when it reaches the counter.
      next_after_seq: last && last.seq < conversation.lastSeq ? last.seq : null,
    });
  })

  .patch('/:id', requireStorable(), validate('json', patchConversationSchema), async (c) => {
    const id = c.req.param('id');
    const patch = c.req.valid('json');
    assertMetadataFits(patch.metadata, c.get('services').config.limits);
    await conversationFor(c, id, 'manage');
    const updated = await c.get('store').updateConversation(c.get('principal'), id, patch);
    if (!updated) throw notFound('conversation', id);
    const totals = await c.get('store').tokenTotals([id]);
    return c.json(conversationJson(updated, totals.get(id)));
  })

  .delete('/:id', async (c) => {
    const id = c.req.param('id');
    await conversationFor(c, id, 'manage');
    if (!(await c.get('store').deleteConversation(c.get('principal'), id))) throw notFound('conversation', id);
    return c.body(null, 204);
  })

  .post('/:id/messages', requireStorable(), validate('json', createMessageSchema), async (c) => {
    const { role, content } = c.req.valid('json');
    const { limits } = c.get('services').config;
    const [message] = await c.get('store').appendMessages(c.get('principal'), c.req.param('id'), [toNewMessage(role, content)], {
      maxMessages: limits.messagesPerConversation,
      maxBytes: limits.bytesPerSession,
    });
    if (!message) {
      // REDACT_SYSTEM_PROMPTS: the conversation exists and is the caller's, but nothing was kept.
      return c.json(
        { object: 'conversation.message', stored: false, role, reason: 'System prompts are not stored on this server (REDACT_SYSTEM_PROMPTS=true).' },
        202,
      );
    }
    return c.json(messageJson(message), 201);
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
  });
