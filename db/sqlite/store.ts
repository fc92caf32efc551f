import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { and, asc, count, desc, eq, gt, inArray, isNotNull, isNull, lt, or, sql, sum } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { cleanJson, cleanText, listFilter, messageRow, ownedBy } from '../shared.js';
import {
  ConversationNotFoundError,
  LimitExceededError,
  type Conversation,
  type Store,
} from '../store.js';
import * as schema from './schema.js';

const { sessions, conversations, messages } = schema;
const migrationsFolder = fileURLToPath(new URL('../../drizzle/sqlite', import.meta.url));

/**
 * better-sqlite3 is synchronous, so every method runs to completion before it returns and
 * transactions cannot interleave within a process; BEGIN IMMEDIATE takes the write lock up
 * front so two processes on one file never deadlock upgrading a read lock.
 */
export function createSqliteStore(path: string): Store {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const client = new Database(path);
  client.pragma('journal_mode = WAL');
  client.pragma('synchronous = NORMAL');
  // better-sqlite3 waits for a lock synchronously, stalling every stream of the process, so
  // the wait stays short: a busy database is retried by the caller (recorder backoff, 503).
  client.pragma('busy_timeout = 50');
  client.pragma('foreign_keys = ON');
  const db = drizzle(client, { schema });
  const immediate = { behavior: 'immediate' } as const;
  const open = inArray(messages.status, ['draft', 'streaming']);

  const findOwned = (owner: Parameters<Store['getConversation']>[0], id: string, includeDeleted = false) =>
    db
      .select()
      .from(conversations)
      .where(and(eq(conversations.id, id), ownedBy(conversations, owner), includeDeleted ? undefined : isNull(conversations.deletedAt)))
      .get() ?? null;

  return {
    dialect: 'sqlite',

    async migrate() {
      migrate(db, { migrationsFolder });
    },

    async ping() {
      try {
        client.prepare('select 1').get();
        return true;
      } catch {
        return false;
      }
    },

    async close() {
      if (client.open) client.close();
    },

    async createConversation(owner, input, { maxPerSession, session }) {
      return db.transaction((tx) => {
        const live = tx
          .select({ n: count() })
          .from(conversations)
          .where(and(ownedBy(conversations, owner), isNull(conversations.deletedAt)))
          .get();
        if ((live?.n ?? 0) >= maxPerSession) throw new LimitExceededError('conversations_per_session', maxPerSession);
        const now = new Date();
        tx.insert(sessions)
          .values({ id: owner.sessionId, userId: owner.userId, createdAt: now, lastSeenAt: now, userAgent: session?.userAgent ?? null, ipHash: session?.ipHash ?? null })
          .onConflictDoUpdate({ target: sessions.id, set: { lastSeenAt: now } })
          .run();
        return tx
          .insert(conversations)
          .values({
            id: crypto.randomUUID(),
            sessionId: owner.sessionId,
            userId: owner.userId,
            title: input.title == null ? null : cleanText(input.title),
            model: input.model == null ? null : cleanText(input.model),
            metadata: cleanJson(input.metadata ?? {}),
            lastSeq: 0,
            createdAt: now,
            updatedAt: now,
          })
          .returning()
          .get();
      }, immediate);
    },

    async getConversation(owner, id, options) {
      return findOwned(owner, id, options?.includeDeleted);
    },

    async listConversations(owner, options) {
      const rows = db
        .select()
        .from(conversations)
        .where(listFilter(conversations, owner, options))
        .orderBy(desc(conversations.createdAt), desc(conversations.id))
        .limit(options.limit + 1)
        .all();
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async updateConversation(owner, id, patch) {
      const set: Partial<Conversation> = { updatedAt: new Date() };
      if (patch.title !== undefined) set.title = patch.title === null ? null : cleanText(patch.title);
      if (patch.metadata !== undefined) set.metadata = cleanJson(patch.metadata);
      return (
        db
          .update(conversations)
          .set(set)
          .where(and(eq(conversations.id, id), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
          .returning()
          .get() ?? null
      );
    },

    async deleteConversation(owner, id) {
      const now = new Date();
      const result = db
        .update(conversations)
        .set({ deletedAt: now, updatedAt: now })
        .where(and(eq(conversations.id, id), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
        .run();
      return result.changes > 0;
    },

    async listMessages(conversationId, { afterSeq, limit }) {
      return db
        .select()
        .from(messages)
        .where(and(eq(messages.conversationId, conversationId), gt(messages.seq, afterSeq)))
        .orderBy(asc(messages.seq))
        .limit(limit)
        .all();
    },

    async appendMessages(owner, conversationId, toAppend, { maxMessages }) {
      return db.transaction((tx) => {
        const conversation = tx
          .select()
          .from(conversations)
          .where(and(eq(conversations.id, conversationId), ownedBy(conversations, owner), isNull(conversations.deletedAt)))
          .get();
        if (!conversation) throw new ConversationNotFoundError(conversationId);
        const list = typeof toAppend === 'function' ? toAppend(conversation) : toAppend;
        if (list.length === 0) return [];
        if (conversation.lastSeq + list.length > maxMessages) throw new LimitExceededError('messages_per_conversation', maxMessages);
        const now = new Date();
        tx.update(conversations)
          .set({ lastSeq: conversation.lastSeq + list.length, updatedAt: now })
          .where(eq(conversations.id, conversationId))
          .run();
        const rows = list.map((m, i) => messageRow(conversationId, conversation.lastSeq + 1 + i, m, now));
        return tx.insert(messages).values(rows).returning().all();
      }, immediate);
    },

    async appendContent(messageId, text) {
      if (!text) return;
      db.update(messages)
        .set({ content: sql`${messages.content} || ${cleanText(text)}`, updatedAt: new Date() })
        .where(eq(messages.id, messageId))
        .run();
    },

    async finishMessage(messageId, finish) {
      db.update(messages)
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
        .where(and(eq(messages.id, messageId), open))
        .run();
    },

    async getMessage(messageId) {
      return db.select().from(messages).where(eq(messages.id, messageId)).get() ?? null;
    },

    async renewLeases(owner, messageIds, expiresAt) {
      if (!messageIds.length) return;
      db.update(messages)
        .set({ leaseExpiresAt: expiresAt })
        .where(and(inArray(messages.id, messageIds), eq(messages.leaseOwner, owner), open))
        .run();
    },

    async sweepOrphans(now) {
      return db
        .update(messages)
        .set({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null, updatedAt: now })
        .where(and(open, or(isNull(messages.leaseExpiresAt), lt(messages.leaseExpiresAt, now))))
        .run().changes;
    },

    async purgeExpired({ idleBefore, deletedBefore, batchSize }) {
      const expired = or(
        and(isNotNull(conversations.deletedAt), lt(conversations.deletedAt, deletedBefore)),
        idleBefore
          ? and(lt(conversations.updatedAt, idleBefore), sql`coalesce(json_type(${conversations.metadata}, '$.pinned'), '') <> 'true'`)
          : undefined,
      );
      const batch = db.select({ id: conversations.id }).from(conversations).where(expired).limit(batchSize);
      // Messages go with their conversation (ON DELETE CASCADE).
      return db.delete(conversations).where(inArray(conversations.id, batch)).run().changes;
    },

    async counts() {
      const c = db.select({ n: count() }).from(conversations).where(isNull(conversations.deletedAt)).get();
      const m = db.select({ n: count() }).from(messages).get();
      return { conversations: c?.n ?? 0, messages: m?.n ?? 0 };
    },

    async tokenTotals(ids) {
      if (!ids.length) return new Map();
      const rows = db
        .select({ id: messages.conversationId, tokensIn: sum(messages.tokensIn).mapWith(Number), tokensOut: sum(messages.tokensOut).mapWith(Number) })
        .from(messages)
        .where(inArray(messages.conversationId, ids))
        .groupBy(messages.conversationId)
        .all();
      return new Map(rows.map((r) => [r.id, { tokensIn: r.tokensIn, tokensOut: r.tokensOut }]));
    },

    async getConsent(sessionId) {
      return db.select({ consent: sessions.consent }).from(sessions).where(eq(sessions.id, sessionId)).get()?.consent ?? null;
    },

    async setConsent(sessionId, consent, session) {
      const now = new Date();
      db.insert(sessions)
        .values({ id: sessionId, createdAt: now, lastSeenAt: now, userAgent: session?.userAgent ?? null, ipHash: session?.ipHash ?? null, consent, consentAt: now })
        .onConflictDoUpdate({ target: sessions.id, set: { consent, consentAt: now, lastSeenAt: now } })
        .run();
    },
  };
}
