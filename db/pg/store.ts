import { fileURLToPath } from 'node:url';
import { and, asc, count, desc, eq, gt, inArray, isNotNull, isNull, lt, or, sql, sum } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { cleanJson, cleanText, conversationRow, listFilter, messageRow, ownedBy } from '../shared.js';
import {
  ConversationNotFoundError,
  LimitExceededError,
  type Conversation,
  type Store,
} from '../store.js';
import * as schema from './schema.js';

const { sessions, conversations, messages } = schema;
const migrationsFolder = fileURLToPath(new URL('../../drizzle/pg', import.meta.url));
// Any constant works; it only has to be the same in every process of this application.
const MIGRATION_LOCK_KEY = 7_341_920_113;
const jsonText = (value: unknown) => (value == null ? null : JSON.stringify(value));

export interface PgStoreOptions {
  /** Pool size; the default suits one server process on a small machine. */
  max?: number;
}

/**
 * Ids from clients go through cleanText before they reach a query: Postgres refuses U+0000 and
 * lone surrogates in text parameters, and such an id can only ever be "not found".
 *
 * Seqs are allocated under SELECT … FOR UPDATE on the conversation row, so writers in any
 * number of processes queue on that row and each sees the counter the previous one committed.
 */
export function createPgStore(url: string, options: PgStoreOptions = {}): Store {
  // fetch_types off: postgres.js otherwise runs an array-type query first on every new
  // connection and drops its promise, so a connection killed during it (pg_terminate_backend,
  // a failover) rejects with nobody listening and takes the process down (porsager/postgres
  // #1192, #1223). Nothing here sends or reads Postgres arrays, so the types are not needed.
  const connection = { onnotice: () => {}, connect_timeout: 10, fetch_types: false } as const;
  const client = postgres(url, { ...connection, max: options.max ?? 10 });
  const db = drizzle(client, { schema });
  const open = inArray(messages.status, ['draft', 'streaming']);

  return {
    dialect: 'postgres',

    async migrate() {
      // Several processes may start at once: one migrates, the others wait for it. The lock is
      // held by a session of its own, one connection that also runs the migrations and whose end
      // releases the lock. (client.reserve() would do, but never settles on a cold pool with
      // fetch_types off: porsager/postgres #751.)
      const session = postgres(url, { ...connection, max: 1 });
      try {
        await session`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
        await migrate(drizzle(session), { migrationsFolder });
      } finally {
        await session.end({ timeout: 5 });
      }
    },

    async ping() {
      try {
        await client`select 1`;
        return true;
      } catch {
        return false;
      }
    },

    async close() {
      await client.end({ timeout: 5 });
    },

    async createConversation(owner, input, { maxPerSession, session, messages: first, maxMessages }) {
      const list = first ?? [];
      if (maxMessages !== undefined && list.length > maxMessages) throw new LimitExceededError('messages_per_conversation', maxMessages);
      const now = new Date();
      const conversation = conversationRow(owner, input, list.length, now);
      // One statement, one round trip: the session row, the conversation (only while the
      // session is under its cap) and the first turn's messages (only if the conversation was
      // made). The cap is read without a lock, so conversations created at the very same
      // moment in one session can overshoot it by the number racing; it is a guard, not a quota.
      const at = now.toISOString();
      const live = owner.userId ? sql`user_id = ${owner.userId}` : sql`session_id = ${owner.sessionId} and user_id is null`;
      const rows = list.map((m, i) => messageRow(conversation.id, i + 1, m, now));
      const addMessages = rows.length
        ? sql`, added as (
            insert into messages (id, conversation_id, role, status, content, content_json, seq, parent_message_id, tokens_in, tokens_out,
              tokens_source, finish_reason, tool_calls, function_call, created_at, updated_at, lease_owner, lease_expires_at)
            select v.id, made.id, v.role, v.status, v.content, v.content_json, v.seq, v.parent_message_id, v.tokens_in, v.tokens_out,
              v.tokens_source, v.finish_reason, v.tool_calls, v.function_call, ${at}::timestamptz, ${at}::timestamptz, v.lease_owner, v.lease_expires_at
            from made, (values ${sql.join(
              rows.map(
                (r) =>
                  sql`(${r.id}, ${r.role}, ${r.status}, ${r.content}, ${jsonText(r.contentJson)}::jsonb, ${r.seq}::int, ${r.parentMessageId}::text,
                    ${r.tokensIn}::int, ${r.tokensOut}::int, ${r.tokensSource}::text, ${r.finishReason}::text, ${jsonText(r.toolCalls)}::jsonb,
                    ${jsonText(r.functionCall)}::jsonb, ${r.leaseOwner}::text, ${r.leaseExpiresAt?.toISOString() ?? null}::timestamptz)`,
              ),
              sql`, `,
            )}) as v(id, role, status, content, content_json, seq, parent_message_id, tokens_in, tokens_out, tokens_source, finish_reason,
              tool_calls, function_call, lease_owner, lease_expires_at)
          )`
        : sql``;
      const [result] = await db.execute<{ created: number }>(sql`
        with live as (
          select count(*)::int as n from conversations where ${live} and deleted_at is null
        ), seen as (
          insert into sessions (id, user_id, created_at, last_seen_at, user_agent, ip_hash)
          values (${owner.sessionId}, ${owner.userId}::text, ${at}::timestamptz, ${at}::timestamptz, ${session?.userAgent ?? null}::text, ${session?.ipHash ?? null}::text)
          on conflict (id) do update set last_seen_at = excluded.last_seen_at
        ), made as (
          insert into conversations (id, session_id, user_id, title, model, metadata, last_seq, created_at, updated_at)
          select ${conversation.id}, ${owner.sessionId}, ${owner.userId}::text, ${conversation.title}::text, ${conversation.model}::text,
            ${JSON.stringify(conversation.metadata)}::jsonb, ${list.length}::int, ${at}::timestamptz, ${at}::timestamptz
          from live where live.n < ${maxPerSession}::int
          returning id
        )${addMessages}
        select count(*)::int as created from made`);
      if (!result?.created) throw new LimitExceededError('conversations_per_session', maxPerSession);
      return conversation;
    },

    async getConversation(owner, id, options) {
      const [row] = await db
        .select()
        .from(conversations)
        .where(and(eq(conversations.id, cleanText(id)), ownedBy(conversations, owner), options?.includeDeleted ? undefined : isNull(conversations.deletedAt)));
      return row ?? null;
    },

    async listConversations(owner, options) {
      const rows = await db
        .select()
        .from(conversations)
        .where(listFilter(conversations, owner, options))
        .orderBy(desc(conversations.createdAt), desc(conversations.id))
        .limit(options.limit + 1);
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async updateConversation(owner, id, patch) {
      const set: Partial<Conversation> = { updatedAt: new Date() };
      if (patch.title !== undefined) set.title = patch.title === null ? null : cleanText(patch.title);
      if (patch.metadata !== undefined) set.metadata = cleanJson(patch.metadata);
      const [row] = await db
        .update(conversations)
        .set(set)
        .where(and(eq(conversations.id, cleanText(id)), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
        .returning();
      return row ?? null;
    },

    async deleteConversation(owner, id) {
      const now = new Date();
      const rows = await db
        .update(conversations)
        .set({ deletedAt: now, updatedAt: now })
        .where(and(eq(conversations.id, cleanText(id)), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
        .returning({ id: conversations.id });
      return rows.length > 0;
    },

    async listMessages(conversationId, { afterSeq, limit }) {
      return db
        .select()
        .from(messages)
        .where(and(eq(messages.conversationId, cleanText(conversationId)), gt(messages.seq, afterSeq)))
        .orderBy(asc(messages.seq))
        .limit(limit);
    },

    async appendMessages(owner, conversationId, toAppend, { maxMessages }) {
      return db.transaction(async (tx) => {
        const [conversation] = await tx
          .select()
          .from(conversations)
          .where(and(eq(conversations.id, cleanText(conversationId)), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
          .for('update');
        if (!conversation) throw new ConversationNotFoundError(conversationId);
        const list = typeof toAppend === 'function' ? toAppend(conversation) : toAppend;
        if (list.length === 0) return [];
        if (conversation.lastSeq + list.length > maxMessages) throw new LimitExceededError('messages_per_conversation', maxMessages);
        const now = new Date();
        await tx
          .update(conversations)
          .set({ lastSeq: conversation.lastSeq + list.length, updatedAt: now })
          .where(eq(conversations.id, conversationId));
        const rows = list.map((m, i) => messageRow(conversationId, conversation.lastSeq + 1 + i, m, now));
        return tx.insert(messages).values(rows).returning();
      });
    },

    async appendContent(messageId, text) {
      if (!text) return;
      await db
        .update(messages)
        .set({ content: sql`${messages.content} || ${cleanText(text)}`, updatedAt: new Date() })
        .where(eq(messages.id, messageId));
    },

    async finishMessage(messageId, finish) {
      await db
        .update(messages)
        .set({
          status: finish.status,
          finishReason: finish.finishReason ?? null,
          tokensIn: finish.tokensIn ?? null,
          tokensOut: finish.tokensOut ?? null,
          tokensSource: finish.tokensSource ?? null,
          leaseOwner: null,
          leaseExpiresAt: null,
          ...(finish.toolCalls != null && { toolCalls: cleanJson(finish.toolCalls) }),
          ...(finish.functionCall != null && { functionCall: cleanJson(finish.functionCall) }),
          updatedAt: new Date(),
        })
        .where(and(eq(messages.id, messageId), open));
    },

    async getMessage(messageId) {
      const [row] = await db.select().from(messages).where(eq(messages.id, messageId));
      return row ?? null;
    },

    async renewLeases(owner, expiresAt) {
      await db.update(messages).set({ leaseExpiresAt: expiresAt }).where(and(eq(messages.leaseOwner, owner), open));
    },

    async sweepOrphans(now) {
      const rows = await db
        .update(messages)
        .set({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null, updatedAt: now })
        .where(and(open, or(isNull(messages.leaseExpiresAt), lt(messages.leaseExpiresAt, now))))
        .returning({ id: messages.id });
      return rows.length;
    },

    async purgeExpired({ idleBefore, deletedBefore, batchSize }) {
      const expired = or(
        and(isNotNull(conversations.deletedAt), lt(conversations.deletedAt, deletedBefore)),
        idleBefore
          ? and(lt(conversations.updatedAt, idleBefore), sql`(${conversations.metadata} -> 'pinned') is distinct from 'true'::jsonb`)
          : undefined,
      );
      // A bounded batch keeps each statement's locks short on a large table.
      const batch = db.select({ id: conversations.id }).from(conversations).where(expired).limit(batchSize);
      const rows = await db.delete(conversations).where(inArray(conversations.id, batch)).returning({ id: conversations.id });
      return rows.length;
    },

    async counts() {
      const [c] = await db.select({ n: count() }).from(conversations).where(isNull(conversations.deletedAt));
      const [m] = await db.select({ n: count() }).from(messages);
      return { conversations: c?.n ?? 0, messages: m?.n ?? 0 };
    },

    async tokenTotals(ids) {
      if (!ids.length) return new Map();
      const rows = await db
        .select({ id: messages.conversationId, tokensIn: sum(messages.tokensIn).mapWith(Number), tokensOut: sum(messages.tokensOut).mapWith(Number) })
        .from(messages)
        .where(inArray(messages.conversationId, ids))
        .groupBy(messages.conversationId);
      return new Map(rows.map((r) => [r.id, { tokensIn: r.tokensIn, tokensOut: r.tokensOut }]));
    },

    async getConsent(sessionId) {
      const [row] = await db.select({ consent: sessions.consent }).from(sessions).where(eq(sessions.id, sessionId));
      return row?.consent ?? null;
    },

    async setConsent(sessionId, consent, session) {
      const now = new Date();
      await db
        .insert(sessions)
        .values({ id: sessionId, createdAt: now, lastSeenAt: now, userAgent: session?.userAgent ?? null, ipHash: session?.ipHash ?? null, consent, consentAt: now })
        .onConflictDoUpdate({ target: sessions.id, set: { consent, consentAt: now, lastSeenAt: now } });
    },
  };
}
