import type { Conversation, Json, Message } from '../../db/store.js';

/**
 * The export format, version 1: JSON lines (`application/x-ndjson`). A header line, then each
 * conversation followed by its messages in seq order. Every stored field of a conversation and
 * its messages is in it; nothing about sessions, users, keys, leases or addresses is.
 *
 * The same rows give the same bytes from either dialect: keys come in a fixed order, JSON values
 * (metadata, content parts, tool calls) with their object keys sorted (Postgres's jsonb keeps
 * its own order, SQLite the writer's), timestamps as ISO-8601 UTC with milliseconds.
 */
export const EXPORT_FORMAT = 'chat-proxy';
export const EXPORT_VERSION = 1;
export const NDJSON = 'application/x-ndjson';

/** The same JSON value with every object's keys in code-unit order, for bytes that do not depend on the database. */
export function sortedKeys<T extends Json | undefined>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => sortedKeys(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, Json> = {};
  for (const key of Object.keys(value).sort()) out[key] = sortedKeys((value as Record<string, Json>)[key]!);
  return out as T;
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export const headerLine = (exportedAt: Date) =>
  `${JSON.stringify({ type: 'export', format: EXPORT_FORMAT, version: EXPORT_VERSION, exported_at: exportedAt.toISOString() })}\n`;

export function conversationLine(c: Conversation): string {
  return `${JSON.stringify({
    type: 'conversation',
    id: c.id,
    title: c.title,
    model: c.model,
    metadata: sortedKeys(c.metadata),
    created_at: iso(c.createdAt),
    updated_at: iso(c.updatedAt),
    deleted_at: iso(c.deletedAt),
    // The id it had where it came from, when an import had to give it a new one: importing
    // this file elsewhere then recognises it as the same conversation.
    import_source_id: c.importSourceId,
    // The leaf of the branch it shows (messages form a tree through parent_message_id).
    active_message_id: c.activeMessageId,
  })}\n`;
}

export function messageLine(m: Message): string {
  return `${JSON.stringify({
    type: 'message',
    id: m.id,
    conversation_id: m.conversationId,
    seq: m.seq,
    role: m.role,
    status: m.status,
    content: m.content,
    content_json: sortedKeys(m.contentJson),
    parent_message_id: m.parentMessageId,
    tokens_in: m.tokensIn,
    tokens_out: m.tokensOut,
    tokens_source: m.tokensSource,
    finish_reason: m.finishReason,
    tool_calls: sortedKeys(m.toolCalls),
    function_call: sortedKeys(m.functionCall),
    created_at: iso(m.createdAt),
    updated_at: iso(m.updatedAt),
    // The id the client gave it (a chat message's `id`), matched when the client resends it.
    client_id: m.clientId,
  })}\n`;
}

/** The line an export ends with when reading the database failed midway: an importer refuses what precedes it. */
export const errorLine = (message: string) => `${JSON.stringify({ type: 'error', error: { message, type: 'server_error' } })}\n`;
