import { Hono } from 'hono';
import type { Store } from '../../db/store.js';
import { hashShareToken } from '../auth/api-keys.js';
import { ApiError } from '../errors.js';
import { requirePersistence } from '../middleware/persistence.js';
import { sharedMessageJson } from '../serialize.js';
import { z } from 'zod';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';
import { getQuerySchema } from './conversations/schemas.js';

/** Link tokens are 32 random bytes in base64url; anything else cannot be one. */
const LINK_TOKEN = /^[A-Za-z0-9_-]{43}$/;

const noSuchLink = () =>
  new ApiError(404, 'not_found_error', 'This share link does not exist or was revoked, or its conversation was deleted.', 'not_found', 'token');

/** `GET /v1/shared/:token`: a conversation's public read-only view, for whoever holds the link. */
export const shared = new Hono<AppEnv & { Variables: { store: Store } }>()
  .use(requirePersistence())
  .get('/:token', validate('query', getQuerySchema), async (c) => {
    const token = c.req.param('token');
    if (!LINK_TOKEN.test(token)) throw noSuchLink();
    const conversation = await c.get('store').sharedConversation(hashShareToken(token));
    if (!conversation) throw noSuchLink();
    const { after_seq, limit } = c.req.valid('query');
    // The conversation as it stands: its active path.
    const messages = await c.get('store').readMessages(conversation.id, { view: 'active', afterSeq: after_seq, limit });
    // Not for search engines or shared caches: the link is the only key to it.
    c.header('cache-control', 'private, no-store');
    c.header('x-robots-tag', 'noindex');
    c.header('referrer-policy', 'no-referrer');
    return c.json({
      object: 'shared_conversation',
      title: conversation.title,
      messages: messages.items.map(sharedMessageJson),
      next_after_seq: messages.hasMore ? messages.items.at(-1)!.seq : null,
    });
  });

export const sharedDocs = [
  route({
    method: 'get',
    path: '/v1/shared/:token',
    tag: 'Conversations',
    summary: "A shared conversation's title and messages, for whoever holds the link",
    params: { token: 'The link token' },
    query: getQuerySchema,
    auth: 'public',
    responses: {
      200: {
        description: 'The shared conversation',
        schema: z.object({
          object: z.literal('shared_conversation'),
          title: z.string().nullable(),
          messages: z.array(z.object({ seq: z.number().int(), role: z.string(), status: z.string(), content: z.string() }).loose()),
          next_after_seq: z.number().int().nullable(),
        }),
      },
    },
    errors: [404],
    persistence: true,
  }),
];
