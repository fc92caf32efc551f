import type { Context } from 'hono';
import type { Store } from '../../../db/store.js';
import { assertAllowed, type Action } from '../../access.js';
import { notFound } from '../../errors.js';
import type { AppEnv } from '../../types.js';

/** The conversation routes' context: persistence is on (requirePersistence set the store). */
export type ConversationsEnv = AppEnv & { Variables: { store: Store } };

/**
 * The conversation, if the caller may do `action` with it: 404 when it may not even read it
 * (nobody learns that it exists), 403 when it may read it but not do this.
 */
export async function conversationFor(c: Context<ConversationsEnv>, id: string, action: Action) {
  const conversation = await c.get('store').getConversation(c.get('principal'), id);
  if (!conversation) throw notFound('conversation', id);
  assertAllowed(conversation.access, action, id);
  return conversation;
}
