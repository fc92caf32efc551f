import { and, asc, count, eq, getTableColumns, inArray, isNull, lt, or, sql, sum } from 'drizzle-orm';
import type { PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { apiKeyRow, erasableConversations, erasedKeys, keysetAfter, usageKey, userRow } from '../identity-shared.js';
import { cleanText, ownedBy } from '../shared.js';
import { ConversationNotFoundError, DuplicateError, UserNotFoundError, dbErrorCode, type IdentityStore, type User } from '../store.js';
import * as schema from './schema.js';

const { users, apiKeys, conversationShares: shares, shareLinks, sessions, conversations, messages, idempotencyKeys } = schema;

/**
 * The identity half of the Postgres store: users, keys, shares, links, claims and usage. Ids from
 * clients pass through cleanText (Postgres refuses U+0000 in text parameters).
 */
export function pgIdentity(db: PostgresJsDatabase<typeof schema>): IdentityStore {
  const userById = async (id: string): Promise<User | null> => (await db.select().from(users).where(eq(users.id, cleanText(id))))[0] ?? null;

  return {
    async createUser(input) {
      const user = userRow(input);
      try {
        await db.insert(users).values(user);
      } catch (err) {
        if (dbErrorCode(err) === '23505') throw new DuplicateError(`A user with issuer '${user.issuer}' and subject '${user.subject}' already exists.`);
        throw err;
      }
      return user;
    },

    getUser: userById,

    async updateUser(id, patch) {
      const set: Partial<User> = {};
      if (patch.name !== undefined) set.name = cleanText(patch.name);
      if (patch.isAdmin !== undefined) set.isAdmin = patch.isAdmin;
      if (!Object.keys(set).length) return userById(id);
      const [row] = await db.update(users).set(set).where(eq(users.id, cleanText(id))).returning();
      return row ?? null;
    },

    async listUsers({ limit, after }) {
      const rows = await db
        .select()
        .from(users)
        .where(keysetAfter(users, after && { ...after, id: cleanText(after.id) }))
        .orderBy(asc(users.createdAt), asc(users.id))
        .limit(limit + 1);
      return { items: rows.slice(0, limit), hasMore: rows.length > limit };
    },

    async userForExternalId(issuer, subject, name) {
      const who = and(eq(users.issuer, cleanText(issuer)), eq(users.subject, cleanText(subject)));
      const [found] = await db.select().from(users).where(who);
      if (found) {
        if (!name || found.name === cleanText(name)) return found;
        const [renamed] = await db.update(users).set({ name: cleanText(name) }).where(eq(users.id, found.id)).returning();
        return renamed ?? found;
      }
      // Two first requests of one new user may race: the unique index keeps one row, both read it.
      await db
        .insert(users)
        .values({ id: crypto.randomUUID(), name: cleanText(name || subject), issuer: cleanText(issuer), subject: cleanText(subject), isAdmin: false, createdAt: new Date() })
        .onConflictDoNothing();
      return (await db.select().from(users).where(who))[0]!;
    },

    async eraseUser(rawId, batchSize) {
      const id = cleanText(rawId);
      if (!(await userById(id))) return null;
      const erased = { conversations: 0, messages: 0, apiKeys: 0, shares: 0 };
      const theirs = erasableConversations({ conversations, sessions }, id);
      for (;;) {
        // One short transaction per batch: other writers wait a batch, not the whole erasure.
        const size = await db.transaction(async (tx) => {
          const batch = (await tx.select({ id: conversations.id }).from(conversations).where(theirs).limit(batchSize).for('update')).map((r) => r.id);
          if (!batch.length) return 0;
          const [m] = await tx.select({ n: count() }).from(messages).where(inArray(messages.conversationId, batch));
          const [s] = await tx.select({ n: count() }).from(shares).where(inArray(shares.conversationId, batch));
          erased.messages += m!.n;
          erased.shares += s!.n;
          // Messages, shares and links go with their conversation (ON DELETE CASCADE).
          erased.conversations += (await tx.delete(conversations).where(inArray(conversations.id, batch)).returning({ id: conversations.id })).length;
          return batch.length;
        });
        if (size < batchSize) break;
      }
      await db.transaction(async (tx) => {
        erased.shares += (await tx.delete(shares).where(eq(shares.userId, id)).returning({ id: shares.conversationId })).length;
        erased.apiKeys += (await tx.delete(apiKeys).where(eq(apiKeys.userId, id)).returning({ id: apiKeys.id })).length;
        // Their idempotency keys keep what their writes answered (titles, messages).
        await tx.delete(idempotencyKeys).where(erasedKeys(idempotencyKeys, sessions, id));
        await tx.delete(sessions).where(eq(sessions.userId, id));
        await tx.delete(users).where(eq(users.id, id));
      });
      return erased;
    },

    async createApiKey(input) {
      const key = apiKeyRow(input);
      try {
        await db.insert(apiKeys).values(key);
      } catch (err) {
        if (dbErrorCode(err) === '23503') throw new UserNotFoundError(input.userId);
        throw err;
      }
      return key;
    },

    async listApiKeys(userId) {
      return db.select().from(apiKeys).where(eq(apiKeys.userId, cleanText(userId))).orderBy(asc(apiKeys.createdAt), asc(apiKeys.id));
    },

    async apiKeysByPrefix(prefix) {
      return db
        .select({ key: getTableColumns(apiKeys), user: getTableColumns(users) })
        .from(apiKeys)
        .innerJoin(users, eq(users.id, apiKeys.userId))
        .where(eq(apiKeys.prefix, cleanText(prefix)));
    },

    async touchApiKey(id, now, notBefore) {
      await db
        .update(apiKeys)
        .set({ lastUsedAt: now })
        .where(and(eq(apiKeys.id, id), or(isNull(apiKeys.lastUsedAt), lt(apiKeys.lastUsedAt, notBefore))));
    },

    async revokeApiKey(id, now) {
      const rows = await db
        .update(apiKeys)
        .set({ revokedAt: sql`coalesce(${apiKeys.revokedAt}, ${now.toISOString()}::timestamptz)` })
        .where(eq(apiKeys.id, cleanText(id)))
        .returning({ id: apiKeys.id });
      return rows.length > 0;
    },

    async setShare(rawConversationId, rawUserId, role) {
      const conversationId = cleanText(rawConversationId);
      const userId = cleanText(rawUserId);
      return db.transaction(async (tx) => {
        // Locked, so a delete of the conversation cannot slip between the check and the insert.
        const [live] = await tx
          .select({ id: conversations.id })
          .from(conversations)
          .where(and(eq(conversations.id, conversationId), isNull(conversations.deletedAt)))
          .for('update');
        if (!live) throw new ConversationNotFoundError(conversationId);
        const [user] = await tx.select({ id: users.id }).from(users).where(eq(users.id, userId));
        if (!user) throw new UserNotFoundError(userId);
        const [share] = await tx
          .insert(shares)
          .values({ conversationId, userId, role, createdAt: new Date() })
          .onConflictDoUpdate({ target: [shares.conversationId, shares.userId], set: { role } })
          .returning();
        return share!;
      });
    },

    async listShares(conversationId) {
      return db.select().from(shares).where(eq(shares.conversationId, cleanText(conversationId))).orderBy(asc(shares.createdAt), asc(shares.userId));
    },

    async deleteShare(conversationId, userId) {
      const rows = await db
        .delete(shares)
        .where(and(eq(shares.conversationId, cleanText(conversationId)), eq(shares.userId, cleanText(userId))))
        .returning({ id: shares.userId });
      return rows.length > 0;
    },

    async setShareLink(conversationId, tokenHash) {
      await db.transaction(async (tx) => {
        await tx.delete(shareLinks).where(eq(shareLinks.conversationId, cleanText(conversationId)));
        await tx.insert(shareLinks).values({ tokenHash, conversationId: cleanText(conversationId), createdAt: new Date() });
      });
    },

    async deleteShareLink(conversationId) {
      const rows = await db.delete(shareLinks).where(eq(shareLinks.conversationId, cleanText(conversationId))).returning({ id: shareLinks.tokenHash });
      return rows.length > 0;
    },

    async sharedConversation(tokenHash) {
      const [row] = await db
        .select({ conversation: getTableColumns(conversations) })
        .from(shareLinks)
        .innerJoin(conversations, eq(conversations.id, shareLinks.conversationId))
        .where(and(eq(shareLinks.tokenHash, cleanText(tokenHash)), isNull(conversations.deletedAt)));
      return row?.conversation ?? null;
    },

    async claimSession(sessionId, userId) {
      return db.transaction(async (tx) => {
        const claimed = await tx
          .update(conversations)
          .set({ userId })
          .where(and(eq(conversations.sessionId, sessionId), isNull(conversations.userId)))
          .returning({ id: conversations.id });
        await tx.update(sessions).set({ userId }).where(eq(sessions.id, sessionId));
        return claimed.length;
      });
    },

    async usage(owner, { from, to, groupBy }) {
      const key = usageKey(groupBy, { day: sql<string>`to_char(${messages.createdAt} at time zone 'UTC', 'YYYY-MM-DD')`, model: conversations.model });
      const rows = await db
        .select({
          key,
          tokensIn: sum(messages.tokensIn).mapWith(Number),
          tokensOut: sum(messages.tokensOut).mapWith(Number),
          requests: sql<number>`count(*) filter (where ${messages.role} = 'assistant')`.mapWith(Number),
        })
        .from(messages)
        .innerJoin(conversations, eq(conversations.id, messages.conversationId))
        .where(and(ownedBy(conversations, owner), sql`${messages.createdAt} >= ${from.toISOString()}::timestamptz`, sql`${messages.createdAt} < ${to.toISOString()}::timestamptz`))
        .groupBy(...(groupBy ? [key] : []))
        .orderBy(...(groupBy ? [key] : []));
      return rows.map((r) => ({ key: r.key ?? null, tokensIn: r.tokensIn ?? 0, tokensOut: r.tokensOut ?? 0, requests: r.requests ?? 0 }));
    },
  };
}
