import { fileURLToPath } from 'node:url';
import { and, asc, count, desc, eq, gt, inArray, isNotNull, isNull, lt, or, sql, sum } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { cleanJson, cleanText, listFilter, messageRow, ownedBy } from '../shared.js';
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
  const client = postgres(url, { max: options.max ?? 10, onnotice: () => {}, connect_timeout: 10 });
  const db = drizzle(client, { schema });
  const open = inArray(messages.status, ['draft', 'streaming']);

  return {
    dialect: 'postgres',

    async migrate() {
      // Several processes may start at once: one migrates, the others wait for it.
      const lock = await client.reserve();
      try {
        await lock`select pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
        await migrate(db, { migrationsFolder });
      } finally {
        await lock`select pg_advisory_unlock(${MIGRATION_LOCK_KEY})`.catch(() => {});
        lock.release();
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
      return db.transaction(async (tx) => {
        // Serialise creations per session so two racing requests cannot both pass the limit.
        await tx.execute(sql`select pg_advisory_xact_lock(hashtext(${owner.userId ?? owner.sessionId}))`);
        const [live] = await tx
          .select({ n: count() })
          .from(conversations)
          .where(and(ownedBy(conversations, owner), isNull(conversations.deletedAt)));
        if ((live?.n ?? 0) >= maxPerSession) throw new LimitExceededError('conversations_per_session', maxPerSession);
        const list = first ?? [];
        if (maxMessages !== undefined && list.length > maxMessages) throw new LimitExceededError('messages_per_conversation', maxMessages);
        const now = new Date();
        await tx
          .insert(sessions)
          .values({ id: owner.sessionId, userId: owner.userId, createdAt: now, lastSeenAt: now, userAgent: session?.userAgent ?? null, ipHash: session?.ipHash ?? null })
          .onConflictDoUpdate({ target: sessions.id, set: { lastSeenAt: now } });
        const [created] = await tx
          .insert(conversations)
          .values({
            id: crypto.randomUUID(),
            sessionId: owner.sessionId,
            userId: owner.userId,
            title: input.title == null ? null : cleanText(input.title),
            model: input.model == null ? null : cleanText(input.model),
            metadata: cleanJson(input.metadata ?? {}),
            lastSeq: list.length,
            createdAt: now,
            updatedAt: now,
          })
          .returning();
        if (list.length) await tx.insert(messages).values(list.map((m, i) => messageRow(created!.id, i + 1, m, now)));
        return created!;
      });
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
