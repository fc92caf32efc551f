import { fileURLToPath } from 'node:url';
import { and, asc, count, desc, eq, getTableColumns, gt, inArray, isNotNull, isNull, lt, or, sql, sum, type SQLWrapper } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import type { PgTable } from 'drizzle-orm/pg-core';
import {
  accessOf,
  assertWithinLimits,
  cleanJson,
  cleanText,
  firstTurn,
  headroom,
  listFilter,
  messageRow,
  ownedBy,
  ownerOfRow,
  readableBy,
  sessionColumns,
  sessionHasNothingLeft,
} from '../shared.js';
import {
  ConversationAccessError,
  ConversationNotFoundError,
  type Conversation,
  type MessageRole,
  type Principal,
  type PurgeResult,
  type SearchHit,
  type Store,
} from '../store.js';
import { MAX_RANKED_MATCHES, pgTsquery } from '../search-query.js';
import { MAX_INDEXED_CHARS } from '../search-text.js';
import { pgIdentity } from './identity.js';
import * as schema from './schema.js';

const { sessions, conversations, messages, serverSettings, conversationShares } = schema;
const accessTables = { conversations, shares: conversationShares };
/** A conversation row with the reader's access, for selects. */
const withAccess = (reader: Principal) => ({ ...getTableColumns(conversations), access: accessOf(accessTables, reader) });
const migrationsFolder = fileURLToPath(new URL('../../drizzle/pg', import.meta.url));
// Any constant works; it only has to be the same in every process of this application.
const MIGRATION_LOCK_KEY = 7_341_920_113;

/**
 * Whole rows of `table` as `(values (…), …) as v(col, …)` plus its column list, both taken from
 * the schema, for an INSERT … SELECT that raw SQL needs: a column added to the schema cannot be
 * left out. Each value is encoded by its column and cast to its type (VALUES has no other).
 */
function rowsOf<T extends PgTable>(table: T, rows: T['$inferSelect'][]) {
  const columns = Object.entries(getTableColumns(table));
  const names = sql.join(columns.map(([, column]) => sql.identifier(column.name)), sql`, `);
  const tuple = (row: Record<string, unknown>) =>
    sql`(${sql.join(columns.map(([key, column]) => sql`${sql.param(row[key] ?? null, column)}::${sql.raw(column.getSQLType())}`), sql`, `)})`;
  return { names, values: sql`(values ${sql.join(rows.map(tuple), sql`, `)}) as v(${names})` };
}

/** A search hit as the query reads it: a message (seq set), or a conversation by its title. */
type PgHitRow = {
  score: number;
  created_ms: number;
  id: string;
  seq: number | null;
  role: MessageRole | null;
  content: string | null;
  conversation_id: string;
  title: string | null;
};

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
  const liveBytes = sql<number>`coalesce(sum(${conversations.storedBytes}), 0)`.mapWith(Number);

  return {
    dialect: 'postgres',
    ...pgIdentity(db),

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

    async createConversation(owner, input, { maxPerSession, session, messages: first, maxMessages, maxBytes }) {
      const limits = { maxPerSession, maxMessages, maxBytes };
      const now = new Date();
      const { conversation, rows, created } = firstTurn(owner, input, first ?? [], now);
      // One statement, one round trip: the session row, the conversation and the first turn's
      // messages, all only while the owner is within its limits (the ceilings of headroom()).
      // The count is read without a lock, so conversations created at the very same moment by
      // one owner can overshoot the cap by the number racing; it is a guard, not a quota.
      const most = headroom(rows, limits);
      const { userAgent, ipHash } = sessionColumns(session);
      const made = rowsOf(conversations, [conversation]);
      const added = rows.length ? rowsOf(messages, rows) : null;
      const [result] = await db.execute<{ created: number; n: number; bytes: string }>(sql`
        with live as (
          select count(*)::int as n, coalesce(sum(${conversations.storedBytes}), 0)::bigint as bytes
          from ${conversations} where ${ownedBy(conversations, owner)} and ${isNull(conversations.deletedAt)}
        ), allowed as (
          select 1 from live where live.n <= ${most.conversations}::bigint and 0 <= ${most.lastSeq}::bigint and live.bytes <= ${most.bytes}::bigint
        ), seen as (
          insert into sessions (id, user_id, created_at, last_seen_at, user_agent, ip_hash)
          select ${owner.sessionId}, ${conversation.userId}::text, ${now.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz, ${userAgent}::text, ${ipHash}::text
          from allowed
          on conflict (id) do update set last_seen_at = excluded.last_seen_at, user_id = coalesce(excluded.user_id, sessions.user_id)
        ), made as (
          insert into ${conversations} (${made.names}) select v.* from allowed, ${made.values} returning id
        )${added ? sql`, added as (insert into ${messages} (${added.names}) select v.* from made, ${added.values})` : sql``}
        select (select count(*) from made)::int as created, live.n, live.bytes from live`);
      if (!result?.created) {
        assertWithinLimits({ conversations: result?.n ?? 0, lastSeq: 0, bytes: Number(result?.bytes ?? 0) }, rows, limits);
        throw new Error('createConversation: the conversation was not inserted, yet no limit is exceeded');
      }
      return created;
    },

    async getConversation(reader, id, options) {
      const [row] = await db
        .select(withAccess(reader))
        .from(conversations)
        .where(and(eq(conversations.id, cleanText(id)), readableBy(accessTables, reader), options?.includeDeleted ? undefined : isNull(conversations.deletedAt)));
      return row ?? null;
    },

    async listConversations(reader, options) {
      const rows = await db
        .select(withAccess(reader))
        .from(conversations)
        .where(listFilter(accessTables, reader, options))
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

    async appendMessages(writer, conversationId, toAppend, { maxMessages, maxBytes }) {
      return db.transaction(async (tx) => {
        const [conversation] = await tx
          .select(withAccess(writer))
          .from(conversations)
          .where(and(eq(conversations.id, cleanText(conversationId)), readableBy(accessTables, writer), isNull(conversations.deletedAt)))
          .for('update', { of: conversations });
        if (!conversation) throw new ConversationNotFoundError(conversationId);
        if (conversation.access === 'viewer') throw new ConversationAccessError(conversationId, conversation.access);
        const list = typeof toAppend === 'function' ? toAppend(conversation) : toAppend;
        if (list.length === 0) return [];
        const now = new Date();
        const rows = list.map((m, i) => messageRow(conversation.id, conversation.lastSeq + 1 + i, m, now));
        assertWithinLimits({ lastSeq: conversation.lastSeq }, rows, { maxMessages });
        // The owner's bytes cost a query: only when capped.
        if (maxBytes !== undefined) {
          const [live] = await tx
            .select({ bytes: liveBytes })
            .from(conversations)
            .where(and(ownedBy(conversations, ownerOfRow(conversation)), isNull(conversations.deletedAt)));
          assertWithinLimits({ bytes: live?.bytes ?? 0 }, rows, { maxBytes });
        }
        await tx
          .update(conversations)
          .set({ lastSeq: conversation.lastSeq + rows.length, updatedAt: now })
          .where(eq(conversations.id, conversation.id));
        return tx.insert(messages).values(rows).returning();
      });
    },

    async appendContent(messageId, text) {
      if (!text) return;
      await db
        .update(messages)
        .set({ content: sql`${messages.content} || ${cleanText(text)}`, updatedAt: new Date() })
        .where(eq(messages.id, cleanText(messageId)));
    },

    async finishMessage(messageId, finish) {
      await db
        .update(messages)
        .set({
          status: finish.status,
          finishReason: finish.finishReason == null ? null : cleanText(finish.finishReason),
          tokensIn: finish.tokensIn ?? null,
          tokensOut: finish.tokensOut ?? null,
          tokensSource: finish.tokensSource ?? null,
          leaseOwner: null,
          leaseExpiresAt: null,
          ...(finish.toolCalls != null && { toolCalls: cleanJson(finish.toolCalls) }),
          ...(finish.functionCall != null && { functionCall: cleanJson(finish.functionCall) }),
          updatedAt: new Date(),
        })
        .where(and(eq(messages.id, cleanText(messageId)), open));
    },

    async getMessage(messageId) {
      const [row] = await db.select().from(messages).where(eq(messages.id, cleanText(messageId)));
      return row ?? null;
    },

    async renewLeases(holder, expiresAt) {
      await db.update(messages).set({ leaseExpiresAt: expiresAt }).where(and(eq(messages.leaseOwner, holder), open));
    },

    async sweepOrphans(now) {
      const rows = await db
        .update(messages)
        .set({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null, updatedAt: now })
        .where(and(open, or(isNull(messages.leaseExpiresAt), lt(messages.leaseExpiresAt, now))))
        .returning({ id: messages.id });
      return rows.length;
    },

    async purgeExpired({ idleBefore, deletedBefore, batchSize }): Promise<PurgeResult> {
      // jsonb is always readable: no row can make this sweep fail, so none is reported unreadable.
      const expired = or(
        and(isNotNull(conversations.deletedAt), lt(conversations.deletedAt, deletedBefore)),
        idleBefore
          ? and(lt(conversations.updatedAt, idleBefore), sql`(${conversations.metadata} -> 'pinned') is distinct from 'true'::jsonb`)
          : undefined,
      );
      // A bounded batch keeps each statement's locks short on a large table.
      const batch = db.select({ id: conversations.id }).from(conversations).where(expired).limit(batchSize);
      const rows = await db.delete(conversations).where(inArray(conversations.id, batch)).returning({ id: conversations.id });
      if (!idleBefore) return { conversations: rows.length, sessions: 0, unreadable: [] };
      const idleSessions = db
        .select({ id: sessions.id })
        .from(sessions)
        .where(and(lt(sessions.lastSeenAt, idleBefore), sessionHasNothingLeft(sessions, conversations)))
        .limit(batchSize);
      const purged = await db.delete(sessions).where(inArray(sessions.id, idleSessions)).returning({ id: sessions.id });
      return { conversations: rows.length, sessions: purged.length, unreadable: [] };
    },

    async counts() {
      const [c] = await db.select({ n: count() }).from(conversations).where(isNull(conversations.deletedAt));
      const [m] = await db.select({ n: count() }).from(messages);
      return { conversations: c?.n ?? 0, messages: m?.n ?? 0 };
    },

    async search(reader, { query, limit, after }) {
      if (!query.terms.length) return { items: [], hasMore: false };
      // The conversations the caller may read, first and by value: the planner then sees how
      // many messages they hold, and can combine their index with the text index (BitmapAnd)
      // or walk the caller's messages newest first, whichever the words' frequency favours.
      const readable = (
        await db
          .select({ id: conversations.id })
          .from(conversations)
          .where(and(readableBy(accessTables, reader), isNull(conversations.deletedAt)))
      ).map((r) => r.id);
      if (!readable.length) return { items: [], hasMore: false };
      // One text[] parameter however many there are (a list of parameters has a limit), its
      // elements quoted as an array literal wants them.
      const readableIds = sql`${`{${readable.map((id) => `"${id.replace(/[\\"]/g, '\\$&')}"`).join(',')}}`}::text[]`;
      const tsquery = pgTsquery(query);
      // The same expression as conversations_title_search_idx.
      const titleVector = sql`to_tsvector('simple', chat_proxy_search_text(${conversations.title}))`;
      // Timestamps are compared in whole milliseconds, as cursors carry them (and as SQLite stores them).
      const ms = (column: SQLWrapper) => sql`floor(extract(epoch from ${column}) * 1000)::float8`;
      const position = after
        ? sql`where score < ${after.score}::float8 or (score = ${after.score}::float8 and (created_ms < ${after.createdAt.getTime()}::float8 or (created_ms = ${after.createdAt.getTime()}::float8 and id < ${cleanText(after.id)})))`
        : sql``;
      // ts_rank only for the newest MAX_RANKED_MATCHES matches; then the page is chosen, and
      // only its rows' text is read.
      const rows = await db.execute<PgHitRow>(sql`
        with found as (
          select ${messages.id} as id, ${messages.conversationId} as conversation_id, ${messages.createdAt} as created_at, search_vector
          from ${messages}
          where search_vector @@ ${tsquery} and ${messages.conversationId} = any(${readableIds})
          order by ${messages.createdAt} desc, ${messages.seq} desc, ${messages.id} desc limit ${MAX_RANKED_MATCHES}
        ), titled as (
          select ${conversations.id} as id, ${conversations.createdAt} as created_at, ${titleVector} as vector
          from ${conversations}
          where ${titleVector} @@ ${tsquery} and ${conversations.id} = any(${readableIds})
          order by ${conversations.createdAt} desc, ${conversations.id} desc limit ${MAX_RANKED_MATCHES}
        ), hits as (
          select id, conversation_id, ${ms(sql`created_at`)} as created_ms, ts_rank(search_vector, ${tsquery}, 1)::float8 as score, true as is_message from found
          union all
          select id, id, ${ms(sql`created_at`)}, ts_rank(vector, ${tsquery}, 1)::float8, false from titled
        ), page as (
          select * from hits ${position} order by score desc, created_ms desc, id desc limit ${limit + 1}
        )
        select page.score, page.created_ms, page.id, m.seq, m.role, left(m.content, ${MAX_INDEXED_CHARS}) as content,
          page.conversation_id, c.title
        from page left join messages m on page.is_message and m.id = page.id
          join conversations c on c.id = page.conversation_id
        order by page.score desc, page.created_ms desc, page.id desc`);
      const items = [...rows].slice(0, limit).map(
        (r): SearchHit => ({
          conversationId: r.conversation_id,
          conversationTitle: r.title,
          messageId: r.seq === null ? null : r.id,
          seq: r.seq,
          role: r.role,
          text: r.seq === null ? (r.title ?? '') : (r.content ?? ''),
          createdAt: new Date(r.created_ms),
          score: r.score,
        }),
      );
      return { items, hasMore: rows.length > limit };
    },

    async tokenTotals(ids) {
      if (!ids.length) return new Map();
      const rows = await db
        .select({ id: messages.conversationId, tokensIn: sum(messages.tokensIn).mapWith(Number), tokensOut: sum(messages.tokensOut).mapWith(Number) })
        .from(messages)
        .where(inArray(messages.conversationId, ids.map(cleanText)))
        .groupBy(messages.conversationId);
      return new Map(rows.map((r) => [r.id, { tokensIn: r.tokensIn, tokensOut: r.tokensOut }]));
    },

    async getConsent(sessionId) {
      const [row] = await db.select({ consent: sessions.consent }).from(sessions).where(eq(sessions.id, cleanText(sessionId)));
      return row?.consent ?? null;
    },

    async setConsent(sessionId, consent, session) {
      const now = new Date();
      await db
        .insert(sessions)
        .values({ id: sessionId, createdAt: now, lastSeenAt: now, ...sessionColumns(session), consent, consentAt: now })
        .onConflictDoUpdate({ target: sessions.id, set: { consent, consentAt: now, lastSeenAt: now } });
    },

    async sharedSetting(key, candidate) {
      await db.insert(serverSettings).values({ key, value: candidate, createdAt: new Date() }).onConflictDoNothing();
      const [row] = await db.select({ value: serverSettings.value }).from(serverSettings).where(eq(serverSettings.key, key));
      return row!.value;
    },
  };
}
