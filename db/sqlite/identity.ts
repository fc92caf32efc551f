import type Database from 'better-sqlite3';
import { and, asc, count, eq, getTableColumns, inArray, isNull, or, sql, sum } from 'drizzle-orm';
import type { BetterSQLite3Database } from 'drizzle-orm/better-sqlite3';
import { apiKeyRow, erasableConversations, erasedKeys, keysetAfter, usageKey, userRow } from '../identity-shared.js';
import { cleanText, ownedBy } from '../shared.js';
import { ConversationNotFoundError, DuplicateError, UserNotFoundError, dbErrorCode, type IdentityStore, type User } from '../store.js';
import * as schema from './schema.js';

const { users, apiKeys, conversationShares: shares, shareLinks, sessions, conversations, messages, idempotencyKeys } = schema;

/** The identity half of the SQLite store: users, keys, shares, links, claims and usage. */
export function sqliteIdentity(db: BetterSQLite3Database<typeof schema>, client: Database.Database): IdentityStore {
  const userById = (id: string): User | null => db.select().from(users).where(eq(users.id, id)).get() ?? null;

  return {
    async createUser(input) {
      const user = userRow(input);
      try {
        db.insert(users).values(user).run();
      } catch (err) {
        if (String(dbErrorCode(err)).startsWith('SQLITE_CONSTRAINT')) throw new DuplicateError(`A user with issuer '${user.issuer}' and subject '${user.subject}' already exists.`);
        throw err;
      }
      return user;
    },

    async getUser(id) {
      return userById(id);
    },

    async updateUser(id, patch) {
      const set: Partial<User> = {};
      if (patch.name !== undefined) set.name = cleanText(patch.name);
      if (patch.isAdmin !== undefined) set.isAdmin = patch.isAdmin;
      if (!Object.keys(set).length) return userById(id);
      return db.update(users).set(set).where(eq(users.id, id)).returning().get() ?? null;
    },

    async listUsers({ limit, after }) {
      const rows = db
        .select()
        .from(users)
        .where(keysetAfter(users, after))
        .orderBy(asc(users.createdAt), asc(users.id))
        .limit(limit + 1)
        .all();
      return { items: rows.slice(0, limit), hasMore: rows.length > limit };
    },

    async userForExternalId(issuer, subject, name) {
      const who = and(eq(users.issuer, cleanText(issuer)), eq(users.subject, cleanText(subject)));
      const found = db.select().from(users).where(who).get();
      if (found) {
        if (name && found.name !== cleanText(name)) return db.update(users).set({ name: cleanText(name) }).where(eq(users.id, found.id)).returning().get()!;
        return found;
      }
      db.insert(users)
        .values({ id: crypto.randomUUID(), name: cleanText(name || subject), issuer: cleanText(issuer), subject: cleanText(subject), isAdmin: false, createdAt: new Date() })
        .onConflictDoNothing()
        .run();
      return db.select().from(users).where(who).get()!;
    },

    async eraseUser(id, batchSize) {
      if (!userById(id)) return null;
      const erased = { conversations: 0, messages: 0, apiKeys: 0, shares: 0 };
      const theirs = erasableConversations({ conversations, sessions }, id);
      for (;;) {
        // One short transaction per batch: other writers wait a batch, not the whole erasure.
        const done = client.transaction(() => {
          const batch = db.select({ id: conversations.id }).from(conversations).where(theirs).limit(batchSize).all().map((r) => r.id);
          if (!batch.length) return true;
          erased.messages += db.select({ n: count() }).from(messages).where(inArray(messages.conversationId, batch)).get()!.n;
          erased.shares += db.select({ n: count() }).from(shares).where(inArray(shares.conversationId, batch)).get()!.n;
          // Messages, shares and links go with their conversation (ON DELETE CASCADE).
          erased.conversations += db.delete(conversations).where(inArray(conversations.id, batch)).run().changes;
          return batch.length < batchSize;
        }).immediate();
        if (done) break;
      }
      client
        .transaction(() => {
          erased.shares += db.delete(shares).where(eq(shares.userId, id)).run().changes;
          erased.apiKeys += db.delete(apiKeys).where(eq(apiKeys.userId, id)).run().changes;
          // Their idempotency keys keep what their writes answered (titles, messages).
          db.delete(idempotencyKeys).where(erasedKeys(idempotencyKeys, sessions, id)).run();
          db.delete(sessions).where(eq(sessions.userId, id)).run();
          db.delete(users).where(eq(users.id, id)).run();
        })
        .immediate();
      return erased;
    },

    async createApiKey(input) {
      const key = apiKeyRow(input);
      if (!userById(input.userId)) throw new UserNotFoundError(input.userId);
      db.insert(apiKeys).values(key).run();
      return key;
    },

    async listApiKeys(userId) {
      return db.select().from(apiKeys).where(eq(apiKeys.userId, userId)).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id)).all();
    },

    async apiKeysByPrefix(prefix) {
      return db
        .select({ key: getTableColumns(apiKeys), user: getTableColumns(users) })
        .from(apiKeys)
        .innerJoin(users, eq(users.id, apiKeys.userId))
        .where(eq(apiKeys.prefix, prefix))
        .all();
    },

    async touchApiKey(id, now, notBefore) {
      db.update(apiKeys)
        .set({ lastUsedAt: now })
        .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), sql`${apiKeys.lastUsedAt} < ${notBefore.getTime()}`)))
        .run();
    },

    async revokeApiKey(id, now) {
      return db.update(apiKeys).set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, ${now.getTime()})` }).where(eq(apiKeys.id, id)).run().changes > 0;
    },

    async setShare(conversationId, userId, role) {
      return client
        .transaction(() => {
          const live = db.select({ id: conversations.id }).from(conversations).where(and(eq(conversations.id, conversationId), isNull(conversations.deletedAt))).get();
          if (!live) throw new ConversationNotFoundError(conversationId);
          if (!userById(userId)) throw new UserNotFoundError(userId);
          return db
            .insert(shares)
            .values({ conversationId, userId, role, createdAt: new Date() })
            .onConflictDoUpdate({ target: [shares.conversationId, shares.userId], set: { role } })
            .returning()
            .get();
        })
        .immediate();
    },

    async listShares(conversationId) {
      return db.select().from(shares).where(eq(shares.conversationId, conversationId)).orderBy(asc(shares.createdAt), asc(shares.userId)).all();
    },

    async deleteShare(conversationId, userId) {
      return db.delete(shares).where(and(eq(shares.conversationId, conversationId), eq(shares.userId, userId))).run().changes > 0;
    },

    async setShareLink(conversationId, tokenHash) {
      client
        .transaction(() => {
          db.delete(shareLinks).where(eq(shareLinks.conversationId, conversationId)).run();
          db.insert(shareLinks).values({ tokenHash, conversationId, createdAt: new Date() }).run();
        })
        .immediate();
    },

    async deleteShareLink(conversationId) {
      return db.delete(shareLinks).where(eq(shareLinks.conversationId, conversationId)).run().changes > 0;
    },

    async sharedConversation(tokenHash) {
      const row = db
        .select({ conversation: getTableColumns(conversations) })
        .from(shareLinks)
        .innerJoin(conversations, eq(conversations.id, shareLinks.conversationId))
        .where(and(eq(shareLinks.tokenHash, tokenHash), isNull(conversations.deletedAt)))
        .get();
      return row?.conversation ?? null;
    },

    async claimSession(sessionId, userId) {
      return client
        .transaction(() => {
          const claimed = db
            .update(conversations)
            .set({ userId })
            .where(and(eq(conversations.sessionId, sessionId), isNull(conversations.userId)))
            .run().changes;
          db.update(sessions).set({ userId }).where(eq(sessions.id, sessionId)).run();
          return claimed;
        })
        .immediate();
    },

    async usage(owner, { from, to, groupBy }) {
      const key = usageKey(groupBy, { day: sql<string>`strftime('%Y-%m-%d', ${messages.createdAt} / 1000, 'unixepoch')`, model: conversations.model });
      const rows = db
        .select({
          key,
          tokensIn: sum(messages.tokensIn).mapWith(Number),
          tokensOut: sum(messages.tokensOut).mapWith(Number),
          requests: sql<number>`sum(case when ${messages.role} = 'assistant' then 1 else 0 end)`.mapWith(Number),
        })
        .from(messages)
        .innerJoin(conversations, eq(conversations.id, messages.conversationId))
        .where(and(ownedBy(conversations, owner), sql`${messages.createdAt} >= ${from.getTime()}`, sql`${messages.createdAt} < ${to.getTime()}`))
        .groupBy(...(groupBy ? [key] : []))
        .orderBy(...(groupBy ? [key] : []))
        .all();
      return rows.map((r) => ({ key: r.key ?? null, tokensIn: r.tokensIn ?? 0, tokensOut: r.tokensOut ?? 0, requests: r.requests ?? 0 }));
    },
  };
}
