import { sql } from 'drizzle-orm';
import { index, integer, primaryKey, sqliteTable, text, uniqueIndex } from 'drizzle-orm/sqlite-core';
import type { Consent, Json, JsonObject, MessageRole, MessageStatus, ShareRole, StringMap, TokensSource } from '../store.js';

// Timestamps are epoch milliseconds; Drizzle hands them out as Date, like the Postgres schema.
const timestamp = (name: string) => integer(name, { mode: 'timestamp_ms' });

export const sessions = sqliteTable(
  'sessions',
  {
    id: text('id').primaryKey(),
    userId: text('user_id'),
    createdAt: timestamp('created_at').notNull(),
    lastSeenAt: timestamp('last_seen_at').notNull(),
    userAgent: text('user_agent'),
    ipHash: text('ip_hash'),
    consent: text('consent').$type<Consent>(),
    consentAt: timestamp('consent_at'),
  },
  (t) => [index('sessions_last_seen_idx').on(t.lastSeenAt)],
);

export const conversations = sqliteTable(
  'conversations',
  {
    id: text('id').primaryKey(),
    sessionId: text('session_id').notNull(),
    userId: text('user_id'),
    title: text('title'),
    model: text('model'),
    metadata: text('metadata', { mode: 'json' }).$type<JsonObject>().notNull().default(sql`'{}'`),
    lastSeq: integer('last_seq').notNull().default(0),
    // The leaf of the branch the conversation shows; set with every append.
    activeMessageId: text('active_message_id'),
    // Bytes of the messages' stored text, kept by a database trigger as messages are written
    // whole or finish streaming (see the migration): MAX_BYTES_PER_SESSION is checked against it.
    storedBytes: integer('stored_bytes').notNull().default(0),
    createdAt: timestamp('created_at').notNull(),
    updatedAt: timestamp('updated_at').notNull(),
    deletedAt: timestamp('deleted_at'),
    // The id a conversation had in the file it was imported from, when that id was taken here and
    // it got a new one: importing the same file again finds it by this and skips it.
    importSourceId: text('import_source_id'),
  },
  (t) => [
    index('conversations_session_created_idx').on(t.sessionId, t.createdAt, t.id),
    index('conversations_user_created_idx').on(t.userId, t.createdAt, t.id),
    index('conversations_updated_idx').on(t.updatedAt),
    index('conversations_deleted_idx').on(t.deletedAt),
    // Source ids are UUIDs, so a lookup by one finds a row or two, then filtered by owner.
    index('conversations_import_source_idx').on(t.importSourceId),
  ],
);

export const messages = sqliteTable(
  'messages',
  {
    id: text('id').primaryKey(),
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    role: text('role').$type<MessageRole>().notNull(),
    status: text('status').$type<MessageStatus>().notNull(),
    content: text('content').notNull().default(''),
    contentJson: text('content_json', { mode: 'json' }).$type<Json>(),
    seq: integer('seq').notNull(),
    parentMessageId: text('parent_message_id'),
    // The client's own id for the message, and what the message says (db/tree.ts): how a
    // request's history is matched against the tree.
    clientId: text('client_id'),
    fingerprint: text('fingerprint'),
    tokensIn: integer('tokens_in'),
    tokensOut: integer('tokens_out'),
    tokensSource: text('tokens_source').$type<TokensSource>(),
    finishReason: text('finish_reason'),
    toolCalls: text('tool_calls', { mode: 'json' }).$type<Json>(),
    functionCall: text('function_call', { mode: 'json' }).$type<Json>(),
    createdAt: timestamp('created_at').notNull(),
    updatedAt: timestamp('updated_at').notNull(),
    // Which server process is writing a message still in flight, and until when that holds.
    leaseOwner: text('lease_owner'),
    leaseExpiresAt: timestamp('lease_expires_at'),
    // Someone asked to stop the answer (POST …/cancel): its writer, in whatever process, stops it.
    cancelRequestedAt: timestamp('cancel_requested_at'),
  },
  (t) => [
    uniqueIndex('messages_conversation_seq_uq').on(t.conversationId, t.seq),
    index('messages_status_lease_idx').on(t.status, t.leaseExpiresAt),
    // A message's siblings (its parent's children, by seq), for "2 / 3"; and, holding every
    // column matching reads, what a turn reads of the tree without touching the rows.
    index('messages_tree_idx').on(t.conversationId, t.parentMessageId, t.seq, t.id, t.fingerprint, t.clientId, t.status),
    // A conversation's answer being generated (streaming_message_id): only in-flight rows, so tiny.
    index('messages_streaming_idx').on(t.conversationId, t.seq).where(sql`status = 'streaming'`),
  ],
);

/** Values the deployment shares between its processes, made once (e.g. the session-signing secret). */
export const serverSettings = sqliteTable('server_settings', {
  key: text('key').primaryKey(),
  value: text('value').notNull(),
  createdAt: timestamp('created_at').notNull(),
});

/** Signed-in users: made by an admin, or on first sight of an identity provider's token (issuer + subject). */
export const users = sqliteTable(
  'users',
  {
    id: text('id').primaryKey(),
    name: text('name').notNull(),
    issuer: text('issuer'),
    subject: text('subject'),
    isAdmin: integer('is_admin', { mode: 'boolean' }).notNull().default(false),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [uniqueIndex('users_external_uq').on(t.issuer, t.subject), index('users_created_idx').on(t.createdAt, t.id)],
);

/** API keys: only a SHA-256 hash of each key is kept, with a short prefix to look it up and show it by. */
export const apiKeys = sqliteTable(
  'api_keys',
  {
    id: text('id').primaryKey(),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    name: text('name'),
    prefix: text('prefix').notNull(),
    hash: text('hash').notNull(),
    createdAt: timestamp('created_at').notNull(),
    lastUsedAt: timestamp('last_used_at'),
    expiresAt: timestamp('expires_at'),
    revokedAt: timestamp('revoked_at'),
  },
  (t) => [uniqueIndex('api_keys_hash_uq').on(t.hash), index('api_keys_prefix_idx').on(t.prefix), index('api_keys_user_idx').on(t.userId)],
);

/** A conversation shared with another user, as a viewer or an editor. */
export const conversationShares = sqliteTable(
  'conversation_shares',
  {
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    userId: text('user_id')
      .notNull()
      .references(() => users.id, { onDelete: 'cascade' }),
    role: text('role').$type<ShareRole>().notNull(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.conversationId, t.userId] }), index('conversation_shares_user_idx').on(t.userId, t.conversationId)],
);

/** A conversation's public read-only link: the SHA-256 of its random token, at most one per conversation. */
export const shareLinks = sqliteTable(
  'share_links',
  {
    tokenHash: text('token_hash').primaryKey(),
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [uniqueIndex('share_links_conversation_uq').on(t.conversationId)],
);

/**
 * Idempotency-Key: a write's first outcome, per owner and key, for 24 hours. `owner` is
 * `user:<id>` or `session:<hash>`; `status` is null while the first request runs; `response` is
 * the body it answered, or for a chat completion where its answer is stored.
 */
export const idempotencyKeys = sqliteTable(
  'idempotency_keys',
  {
    owner: text('owner').notNull(),
    key: text('key').notNull(),
    requestHash: text('request_hash').notNull(),
    status: integer('status'),
    response: text('response', { mode: 'json' }).$type<Json>(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.owner, t.key] }), index('idempotency_keys_created_idx').on(t.createdAt)],
);

/**
 * OpenAI's record of one proxied exchange (a "stored chat completion"): our id for it, the
 * answer it shows (the assistant message; its request is the messages before it), the
 * upstream's own id and model once the answer starts, and the caller's metadata. Written in the
 * same transaction as the exchange's messages; goes with its message or conversation. Ids sort
 * by creation time (newChatCompletionId), so lists page on the primary key.
 */
export const chatCompletions = sqliteTable(
  'chat_completions',
  {
    id: text('id').primaryKey(),
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    messageId: text('message_id')
      .notNull()
      .references(() => messages.id, { onDelete: 'cascade' }),
    upstreamId: text('upstream_id'),
    model: text('model'),
    metadata: text('metadata', { mode: 'json' }).$type<StringMap>().notNull().default(sql`'{}'`),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [
    uniqueIndex('chat_completions_message_uq').on(t.messageId),
    index('chat_completions_conversation_idx').on(t.conversationId, t.id),
    index('chat_completions_upstream_idx').on(t.upstreamId, t.id),
  ],
);

/**
 * Responses API records (POST /v1/responses): one conversation turn as OpenAI's Responses API
 * shows it. Its output is derived from the answer message (`message_id`, which may not exist yet
 * while a plain request waits for its answer); what cannot be derived is kept here.
 */
export const responses = sqliteTable(
  'responses',
  {
    id: text('id').primaryKey(),
    conversationId: text('conversation_id')
      .notNull()
      .references(() => conversations.id, { onDelete: 'cascade' }),
    messageId: text('message_id').notNull(),
    /** The messages the response's input was stored as, in order. */
    inputMessageIds: text('input_message_ids', { mode: 'json' }).$type<string[]>().notNull(),
    model: text('model').notNull(),
    instructions: text('instructions'),
    previousResponseId: text('previous_response_id'),
    /** The request's parameters as the response object echoes them (tools, tool_choice, temperature…). */
    params: text('params', { mode: 'json' }).$type<JsonObject>().notNull(),
    metadata: text('metadata', { mode: 'json' }).$type<StringMap>().notNull(),
    background: integer('background', { mode: 'boolean' }).notNull(),
    createdAt: timestamp('created_at').notNull(),
  },
  (t) => [index('responses_conversation_idx').on(t.conversationId), index('responses_message_idx').on(t.messageId)],
);

/** A background response's stream events, as sent, for GET /v1/responses/:id?stream=true. */
export const responseEvents = sqliteTable(
  'response_events',
  {
    responseId: text('response_id')
      .notNull()
      .references(() => responses.id, { onDelete: 'cascade' }),
    seq: integer('seq').notNull(),
    data: text('data').notNull(),
  },
  (t) => [primaryKey({ columns: [t.responseId, t.seq] })],
);
