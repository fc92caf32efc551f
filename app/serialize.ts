import { z } from 'zod';
import type { Access, Conversation, Message, PlacedMessage, Share, TokenTotals } from '../db/store.js';

const unknownTotals: TokenTotals = { tokensIn: null, tokensOut: null };

/**
 * The API's view of stored rows: snake_case, ISO-8601 UTC timestamps, same in both dialects.
 * `usage` sums the known token counts of the conversation's messages (null when none is known).
 */
export function conversationJson(c: Conversation & { access?: Access; streamingMessageId?: string | null }, totals: TokenTotals = unknownTotals) {
  return {
    id: c.id,
    object: 'conversation' as const,
    // What the caller may do with it: everything (owner), chat and post messages (editor), read (viewer).
    access: c.access ?? ('owner' as Access),
    title: c.title,
    model: c.model,
    metadata: c.metadata,
    message_count: c.lastSeq,
    // The leaf of the branch the conversation shows (its messages are the path to it).
    active_message_id: c.activeMessageId,
    // The answer being generated now, to watch or resume (GET …/messages/:id/stream); null when none.
    streaming_message_id: c.streamingMessageId ?? null,
    usage: { tokens_in: totals.tokensIn, tokens_out: totals.tokensOut },
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
    deleted_at: c.deletedAt?.toISOString() ?? null,
  };
}

/** A message; read as part of a conversation, with its place among its siblings ("2 / 3"). */
export function messageJson(m: Message | PlacedMessage) {
  return {
    id: m.id,
    object: 'conversation.message' as const,
    conversation_id: m.conversationId,
    seq: m.seq,
    role: m.role,
    status: m.status,
    content: m.content,
    content_json: m.contentJson,
    parent_message_id: m.parentMessageId,
    client_id: m.clientId,
    ...('siblingCount' in m && { sibling_count: m.siblingCount, sibling_index: m.siblingIndex }),
    tokens_in: m.tokensIn,
    tokens_out: m.tokensOut,
    tokens_source: m.tokensSource,
    finish_reason: m.finishReason,
    tool_calls: m.toolCalls,
    function_call: m.functionCall,
    created_at: m.createdAt.toISOString(),
    updated_at: m.updatedAt.toISOString(),
  };
}

export function shareJson(s: Share) {
  return {
    object: 'conversation.share' as const,
    conversation_id: s.conversationId,
    user_id: s.userId,
    role: s.role,
    created_at: s.createdAt.toISOString(),
  };
}

/**
 * A conversation as its public link shows it: the title and what was said, nothing that names a
 * session, a user or a message, and no metadata.
 */
export function sharedMessageJson(m: Message) {
  return {
    seq: m.seq,
    role: m.role,
    status: m.status,
    content: m.content,
    content_json: m.contentJson,
    tool_calls: m.toolCalls,
    finish_reason: m.finishReason,
    created_at: m.createdAt.toISOString(),
  };
}

// The shapes, for the API reference.
const iso = z.string().describe('ISO-8601 UTC');
const anyJson = z.unknown();
export const conversationSchema = z
  .object({
    id: z.string(),
    object: z.literal('conversation'),
    access: z.enum(['owner', 'editor', 'viewer']),
    title: z.string().nullable(),
    model: z.string().nullable(),
    metadata: z.record(z.string(), anyJson),
    message_count: z.number().int(),
    usage: z.object({ tokens_in: z.number().int().nullable(), tokens_out: z.number().int().nullable() }),
    created_at: iso,
    updated_at: iso,
    deleted_at: iso.nullable(),
  })
  .meta({ id: 'Conversation' });

export const messageSchema = z
  .object({
    id: z.string(),
    object: z.literal('conversation.message'),
    conversation_id: z.string(),
    seq: z.number().int(),
    role: z.enum(['system', 'user', 'assistant', 'tool']),
    status: z.enum(['draft', 'streaming', 'final', 'error']),
    content: z.string(),
    content_json: anyJson,
    parent_message_id: z.string().nullable(),
    tokens_in: z.number().int().nullable(),
    tokens_out: z.number().int().nullable(),
    tokens_source: z.enum(['provider', 'estimated']).nullable(),
    finish_reason: z.string().nullable(),
    tool_calls: anyJson,
    function_call: anyJson,
    created_at: iso,
    updated_at: iso,
  })
  .meta({ id: 'Message' });

export const shareSchemaJson = z.object({
  object: z.literal('conversation.share'),
  conversation_id: z.string(),
  user_id: z.string(),
  role: z.enum(['viewer', 'editor']),
  created_at: iso,
});
