import { and, asc, count, desc, eq, getTableColumns, gt, inArray, isNotNull, isNull, lt, or, sql, sum, type SQLWrapper } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import type { PgTable } from 'drizzle-orm/pg-core';
import {
  accessOf,
  assertWithinLimits,
  cancelColumns,
  chainRows,
  cleanJson,
  cleanText,
  completionListFilter,
  completionOrder,
  completionRow,
  firstTurn,
  headroom,
  idempotencyOwner,
  importLimits,
  importSourceIds,
  importedRows,
  listFilter,
  mayTakeOver,
  messagePage,
  messageRow,
  messageSeqPage,
  ownedBy,
  ownerOf,
  ownerOfRow,
  pageFilter,
  readableBy,
  responseRow,
  sessionColumns,
  sessionHasNothingLeft,
  streamingMessageOf,
  treeSql,
  turnRows,
  upstreamIdLookup,
  type TreeRow,
} from '../shared.js';
import { fingerprintOf, type Fingerprinted } from '../tree.js';
import {
  AnswerPendingError,
  ConversationAccessError,
  ConversationNotFoundError,
  MessageNotFoundError,
  dbErrorCode,
  type Access,
  type Conversation,
  type IdempotencyRecord,
  type ImportOutcome,
  type Message,
  type MessageRole,
  type Principal,
  type PurgeResult,
  type SearchHit,
  type Store,
  type StoredChatCompletion,
} from '../store.js';
import { MAX_RANKED_MATCHES, pgTsquery } from '../search-query.js';
import { MAX_INDEXED_CHARS } from '../search-text.js';
import { pgIdentity } from './identity.js';
import { migrationsFolder as findMigrations } from '../migrations-folder.js';
import { pgNotifications } from './notify.js';
import * as schema from './schema.js';

const { sessions, conversations, messages, serverSettings, conversationShares, idempotencyKeys, chatCompletions, responses, responseEvents } = schema;
type Tx = Parameters<Parameters<ReturnType<typeof drizzle<typeof schema>>['transaction']>[0]>[0];
const accessTables = { conversations, shares: conversationShares };
const streamingMessageId = streamingMessageOf({ conversations, messages });
/** A conversation row with the reader's access and its answer in flight, for selects. */
const withAccess = (reader: Principal) => ({ ...getTableColumns(conversations), access: accessOf(accessTables, reader), streamingMessageId });
const migrationsFolder = findMigrations('pg');
const completionTables = { ...accessTables, completions: chatCompletions };
/** A completion record with its answer and the reader's access, for selects joining all three. */
const completionSelect = (reader: Principal) => ({ record: getTableColumns(chatCompletions), message: getTableColumns(messages), access: accessOf(accessTables, reader) });
/** Metadata holds this key with this string value. */
const hasPair = (key: string, value: string) => sql`${chatCompletions.metadata} @> jsonb_build_object(${key}::text, ${value}::text)`;
/** The bytes a message counts towards its owner's limit, as the byte trigger counts them. */
const messageBytes = sql<number>`case when ${messages.status} in ('draft', 'streaming') then 0 else octet_length(${messages.content})
  + coalesce(chat_proxy_json_bytes(${messages.contentJson}), 0) + coalesce(chat_proxy_json_bytes(${messages.toolCalls}), 0)
  + coalesce(chat_proxy_json_bytes(${messages.functionCall}), 0) end`.mapWith(Number);
// Any constant works; it only has to be the same in every process of this application.
const MIGRATION_LOCK_KEY = 7_341_920_113;
/** The first half of the two-key advisory locks that serialise one owner's imports. */
const IMPORT_LOCK_SPACE = 7_341;
/** Rows per INSERT and per id lookup. */
const INSERT_CHUNK = 1_000;

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

/**
 * Inserts many whole rows of `table` as one JSON parameter expanded by jsonb_populate_recordset:
 * building a statement of one parameter per value costs Drizzle about half a millisecond a row,
 * which made a 1,000-message import spend most of its time in JavaScript. Keys come from the
 * schema's column names, so a column added to the schema is carried along.
 */
async function insertAsJson<T extends PgTable>(db: Pick<ReturnType<typeof drizzle>, 'execute'>, table: T, rows: T['$inferSelect'][]): Promise<void> {
  const names = sql.raw(columnList(table));
  await db.execute(sql`insert into ${table} (${names}) select ${names} from jsonb_populate_recordset(null::${table}, ${jsonRows(table, rows)}::jsonb)`);
}

/** Whole rows of `table` as the JSON jsonb_populate_recordset reads: keys are the schema's column names. */
function jsonRows<T extends PgTable>(table: T, rows: T['$inferSelect'][]): string {
  const columns = Object.entries(getTableColumns(table)).filter(([, column]) => !column.generated && !column.generatedIdentity);
  return JSON.stringify(
    rows.map((row) => {
      const out: Record<string, unknown> = {};
      for (const [key, column] of columns) {
        const value = (row as Record<string, unknown>)[key];
        out[column.name] = value instanceof Date ? value.toISOString() : (value ?? null);
      }
      return out;
    }),
  );
}

/** The column list of `table` for an INSERT … SELECT from jsonb_populate_recordset. */
const columnList = (table: PgTable, qualifier = '') =>
  Object.values(getTableColumns(table))
    .filter((column) => !column.generated && !column.generatedIdentity)
    .map((column) => `${qualifier}"${column.name}"`)
    .join(', ');

/**
 * A new conversation with its first turn, in one statement: the session row, the conversation,
 * its messages and its completion record, each only while the owner is within its limits (the
 * ceilings of headroom()). The count is read without a lock, so conversations created at the
 * very same moment by one owner can overshoot the cap by the number racing; it is a guard, not
 * a quota. Parameters: $1 owner (user or session id), $2–$4 the ceilings, $5 session id, $6 user
 * id, $7 now, $8 user agent, $9 ip hash, $10–$12 the rows as JSON.
 */
const createConversationSql = (() => {
  const text = (owned: string) => `
    with live as (
      select count(*)::int as n, coalesce(sum(stored_bytes), 0)::bigint as bytes
      from conversations where ${owned} and deleted_at is null
    ), allowed as (
      select 1 from live where live.n <= $2::bigint and 0 <= $3::bigint and live.bytes <= $4::bigint
    ), seen as (
      insert into sessions (id, user_id, created_at, last_seen_at, user_agent, ip_hash)
      select $5::text, $6::text, $7::timestamptz, $7::timestamptz, $8::text, $9::text from allowed
      on conflict (id) do update set last_seen_at = excluded.last_seen_at, user_id = coalesce(excluded.user_id, sessions.user_id)
    ), made as (
      insert into conversations (${columnList(conversations)})
      select ${columnList(conversations, 'v.')} from allowed, jsonb_populate_recordset(null::conversations, $10::jsonb) as v returning id
    ), added as (
      insert into messages (${columnList(messages)})
      select ${columnList(messages, 'v.')} from made, jsonb_populate_recordset(null::messages, $11::jsonb) as v
    ), recorded as (
      insert into chat_completions (${columnList(chatCompletions)})
      select ${columnList(chatCompletions, 'v.')} from made, jsonb_populate_recordset(null::chat_completions, $12::jsonb) as v
    )
    select (select count(*) from made)::int as created, live.n, live.bytes from live`;
  return { user: text('user_id = $1::text'), session: text('session_id = $1::text and user_id is null') };
})();

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
  const completionsJoined = (reader: Principal) =>
    db
      .select(completionSelect(reader))
      .from(chatCompletions)
      .innerJoin(conversations, eq(conversations.id, chatCompletions.conversationId))
      .innerJoin(messages, eq(messages.id, chatCompletions.messageId));

  /**
   * The conversation `writer` may add to, locked FOR UPDATE: writers in any process queue on its
   * row, and each then sees what the previous one committed (READ COMMITTED: a new snapshot per statement).
   */
  const writable = async (tx: Tx, writer: Principal, conversationId: string) => {
    const [conversation] = await tx
      .select(withAccess(writer))
      .from(conversations)
      .where(and(eq(conversations.id, cleanText(conversationId)), readableBy(accessTables, writer), isNull(conversations.deletedAt)))
      .for('update', { of: conversations });
    if (!conversation) throw new ConversationNotFoundError(conversationId);
    if (conversation.access === 'viewer') throw new ConversationAccessError(conversationId, conversation.access);
    return conversation;
  };

  const assertBytes = async (tx: Tx, conversation: Conversation, rows: Message[], maxBytes: number | undefined) => {
    // The owner's bytes cost a query: only when capped.
    if (maxBytes === undefined) return;
    const [live] = await tx
      .select({ bytes: liveBytes })
      .from(conversations)
      .where(and(ownedBy(conversations, ownerOfRow(conversation)), isNull(conversations.deletedAt)));
    assertWithinLimits({ bytes: live?.bytes ?? 0 }, rows, { maxBytes });
  };

  /**
   * The tree of a conversation for matching, with the fingerprints not yet known computed; those,
   * and the client ids matched messages take, written back in one statement by `touch`.
   */
  const treeOf = async (tx: Tx, conversationId: string): Promise<{ nodes: TreeRow[]; fingerprints: Map<string, string> }> => {
    // Raw rows (no Drizzle mapping, which cost more than the query for a thousand rows); what a
    // fingerprint is made of comes along only for the finished messages that have none yet.
    const unknown = sql`${messages.fingerprint} is null and ${messages.status} not in ('draft', 'streaming')`;
    const rows = await tx.execute<Record<string, unknown> & TreeRow & Partial<Fingerprinted>>(sql`
      select id, parent_message_id as "parentId", fingerprint, seq, client_id as "clientId", status,
        case when ${unknown} then role end as role, case when ${unknown} then content end as content,
        case when ${unknown} then content_json end as "contentJson", case when ${unknown} then tool_calls end as "toolCalls",
        case when ${unknown} then function_call end as "functionCall"
      from ${messages} where conversation_id = ${conversationId}`);
    const fingerprints = new Map<string, string>();
    const nodes: TreeRow[] = rows.map((r) => {
      const node = { id: r.id, parentId: r.parentId, fingerprint: r.fingerprint, seq: r.seq, clientId: r.clientId, status: r.status };
      if (node.fingerprint !== null || r.role == null) return node;
      const fingerprint = fingerprintOf({ role: r.role, content: r.content ?? '', contentJson: r.contentJson ?? null, toolCalls: r.toolCalls ?? null, functionCall: r.functionCall ?? null });
      fingerprints.set(node.id, fingerprint);
      return { ...node, fingerprint };
    });
    return { nodes, fingerprints };
  };

  /**
   * A turn's writes as one statement (one round trip under the lock): the fingerprints computed
   * and client ids adopted, the conversation's counter and active leaf, and the new messages.
   */
  const writeTurn = async (
    tx: Tx,
    conversation: Conversation,
    write: { rows: Message[]; fingerprints: Map<string, string>; adopt: { id: string; clientId: string }[]; activeMessageId: string | null; now: Date },
  ) => {
    const changes = new Map<string, { fingerprint: string | null; clientId: string | null }>();
    for (const [id, fingerprint] of write.fingerprints) changes.set(id, { fingerprint, clientId: null });
    for (const { id, clientId } of write.adopt) changes.set(id, { fingerprint: changes.get(id)?.fingerprint ?? null, clientId });
    const touched = changes.size
      ? sql`, touched as (update ${messages} set fingerprint = coalesce(v.fingerprint, ${messages.fingerprint}), client_id = coalesce(v.client_id, ${messages.clientId})
          from (values ${sql.join([...changes].map(([id, c]) => sql`(${id}::text, ${c.fingerprint}::text, ${c.clientId}::text)`), sql`, `)}) as v(id, fingerprint, client_id)
          where ${messages.id} = v.id)`
      : sql``;
    const added = write.rows.length ? rowsOf(messages, write.rows) : null;
    await tx.execute(sql`
      with bumped as (
        update ${conversations} set last_seq = ${conversation.lastSeq + write.rows.length}::int, active_message_id = ${write.activeMessageId}::text, updated_at = ${write.now.toISOString()}::timestamptz
        where ${conversations.id} = ${conversation.id}
      )${touched}
      ${added ? sql`insert into ${messages} (${added.names}) select v.* from ${added.values}` : sql`select 1`}`);
  };

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

    async createConversation(owner, input, { maxPerSession, session, messages: first, maxMessages, maxBytes, activeMessageId, completion }) {
      const limits = { maxPerSession, maxMessages, maxBytes };
      const now = new Date();
      const { conversation, rows, created } = firstTurn(owner, input, first ?? [], now, activeMessageId);
      // One statement, one round trip: the session row, the conversation and the first turn's
      // messages, all only while the owner is within its limits (the ceilings of headroom()).
      // The count is read without a lock, so conversations created at the very same moment by
      // one owner can overshoot the cap by the number racing; it is a guard, not a quota.
      const most = headroom(rows, limits);
      const { userAgent, ipHash } = sessionColumns(session);
      const who = ownerOf(owner);
      // A statement of fixed text, prepared once per connection: the rows go as JSON parameters.
      const [result] = await client.unsafe<{ created: number; n: number; bytes: string }[]>(createConversationSql[who.by], [
        who.by === 'user' ? who.userId : who.sessionId,
        most.conversations,
        most.lastSeq,
        most.bytes,
        owner.sessionId,
        conversation.userId,
        now.toISOString(),
        userAgent,
        ipHash,
        jsonRows(conversations, [conversation]),
        jsonRows(messages, rows),
        jsonRows(chatCompletions, completion ? [completionRow(completion, conversation.id, now)] : []),
      ], { prepare: true });
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
        .returning({ ...getTableColumns(conversations), streamingMessageId });
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

    async listEveryConversation(options) {
      const rows = await db
        .select({ ...getTableColumns(conversations), access: sql<Access>`'owner'`, streamingMessageId })
        .from(conversations)
        .where(pageFilter(conversations, { ...options, after: options.after && { ...options.after, id: cleanText(options.after.id) } }))
        .orderBy(desc(conversations.createdAt), desc(conversations.id))
        .limit(options.limit + 1);
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async importConversation(owner, input, { maxPerSession, maxMessages, maxBytes, session, dryRun }) {
      const who = ownerOf(owner);
      const lockKey = who.by === 'user' ? `user:${who.userId}` : `session:${who.sessionId}`;
      const attempt = () =>
        db.transaction(async (tx): Promise<ImportOutcome> => {
          // One import at a time per owner: the same file sent twice at once must not insert it
          // twice (with a new id each, when its own is another owner's).
          await tx.execute(sql`select pg_advisory_xact_lock(${IMPORT_LOCK_SPACE}::int, hashtext(${lockKey}))`);
          const sources = importSourceIds(input).map(cleanText);
          const [theirs] = await tx
            .select({ id: conversations.id })
            .from(conversations)
            .where(and(ownedBy(conversations, owner), or(inArray(conversations.id, sources), inArray(conversations.importSourceId, sources))))
            .limit(1);
          if (theirs) return { status: 'skipped', id: theirs.id, renamed: false };
          // Not theirs (that was checked just above), so another owner's: never touched.
          const renamed = (await tx.select({ id: conversations.id }).from(conversations).where(eq(conversations.id, sources[0]!))).length > 0;
          const taken = new Set<string>();
          const ids = input.messages.map((m) => cleanText(m.id));
          for (let i = 0; i < ids.length; i += INSERT_CHUNK) {
            // One JSON parameter rather than one per id (see insertAsJson).
            const chunk = JSON.stringify(ids.slice(i, i + INSERT_CHUNK));
            for (const row of await tx.select({ id: messages.id }).from(messages).where(sql`${messages.id} in (select jsonb_array_elements_text(${chunk}::jsonb))`)) taken.add(row.id);
          }
          const { conversation, rows } = importedRows(owner, input, renamed ? crypto.randomUUID() : input.id, taken);
          const [live] = await tx
            .select({ n: count(), bytes: liveBytes })
            .from(conversations)
            .where(and(ownedBy(conversations, owner), isNull(conversations.deletedAt)));
          assertWithinLimits({ conversations: live?.n ?? 0, lastSeq: 0, bytes: live?.bytes ?? 0 }, rows, importLimits(input, { maxPerSession, maxMessages, maxBytes }));
          if (dryRun) return { status: 'imported', id: conversation.id, renamed };
          const now = new Date();
          await tx
            .insert(sessions)
            .values({ id: owner.sessionId, userId: conversation.userId, createdAt: now, lastSeenAt: now, ...sessionColumns(session) })
            .onConflictDoUpdate({ target: sessions.id, set: { lastSeenAt: sql`excluded.last_seen_at`, userId: sql`coalesce(excluded.user_id, ${sessions.userId})` } });
          // stored_bytes is counted by the trigger as the messages go in.
          const { storedBytes: _counted, ...row } = conversation;
          await tx.insert(conversations).values(row);
          for (let i = 0; i < rows.length; i += INSERT_CHUNK) await insertAsJson(tx, messages, rows.slice(i, i + INSERT_CHUNK));
          return { status: 'imported', id: conversation.id, renamed };
        });
      for (let tries = 1; ; tries++) {
        try {
          return await attempt();
        } catch (err) {
          // Another owner's import took one of these ids between the check and the insert: the
          // next attempt sees it taken and picks a new one.
          if (dbErrorCode(err) !== '23505' || tries >= 3) throw err;
        }
      }
    },

    async listMessages(conversationId, { afterSeq, limit }) {
      return db
        .select()
        .from(messages)
        .where(and(eq(messages.conversationId, cleanText(conversationId)), gt(messages.seq, afterSeq)))
        .orderBy(asc(messages.seq))
        .limit(limit);
    },

    async readMessages(conversationId, { view, afterSeq, limit }) {
      const rows = await db
        .select({ ...getTableColumns(messages), siblingCount: treeSql.siblingCount, siblingIndex: treeSql.siblingIndex })
        .from(messages)
        .where(messagePage(messages, cleanText(conversationId), view, afterSeq))
        .orderBy(asc(messages.seq))
        .limit(limit + 1);
      return { items: rows.slice(0, limit), hasMore: rows.length > limit };
    },

    async pathTo(conversationId, messageId) {
      const id = cleanText(conversationId);
      const rows = await db
        .select()
        .from(messages)
        .where(and(eq(messages.conversationId, id), sql`${messages.id} in ${treeSql.pathIds(id, cleanText(messageId))}`))
        .orderBy(asc(messages.seq));
      return rows.length ? rows : null;
    },

    async setActiveMessage(writer, conversationId, messageId) {
      return db.transaction(async (tx) => {
        const conversation = await writable(tx, writer, conversationId);
        const [leaf] = await tx.execute<{ id: string | null }>(sql`select ${treeSql.newestLeaf(conversation.id, cleanText(messageId))} as id`);
        if (!leaf?.id) throw new MessageNotFoundError(conversationId, messageId);
        const [updated] = await tx
          .update(conversations)
          .set({ activeMessageId: leaf.id, updatedAt: new Date() })
          .where(eq(conversations.id, conversation.id))
          .returning();
        return updated!;
      });
    },

    async appendMessages(writer, conversationId, toAppend, { maxMessages, maxBytes, completion, response }) {
      return db.transaction(async (tx) => {
        const conversation = await writable(tx, writer, conversationId);
        const list = typeof toAppend === 'function' ? toAppend(conversation) : toAppend;
        if (list.length === 0) return [];
        const named = list[0]!.parentMessageId;
        if (named != null) {
          const [found] = await tx
            .select({ id: messages.id })
            .from(messages)
            .where(and(eq(messages.id, cleanText(named)), eq(messages.conversationId, conversation.id)));
          if (!found) throw new MessageNotFoundError(conversationId, named, 'parent_message_id');
        }
        const now = new Date();
        // One chain, after the named parent or the active leaf.
        const chain = list.map(({ parentMessageId: _, ...m }) => m);
        const rows = chainRows(conversation.id, conversation.lastSeq + 1, chain, named !== undefined ? named : conversation.activeMessageId, now);
        assertWithinLimits({ lastSeq: conversation.lastSeq }, rows, { maxMessages });
        await assertBytes(tx, conversation, rows, maxBytes);
        await tx
          .update(conversations)
          .set({ lastSeq: conversation.lastSeq + rows.length, activeMessageId: rows.at(-1)!.id, updatedAt: now })
          .where(eq(conversations.id, conversation.id));
        const inserted = await tx.insert(messages).values(rows).returning();
        if (completion) await tx.insert(chatCompletions).values(completionRow(completion, conversation.id, now));
        if (response) await tx.insert(responses).values(responseRow(response, conversation.id));
        return inserted;
      });
    },

    async appendTurn(writer, conversationId, turn, { maxMessages, maxBytes, deferIfPending, completion }) {
      return db.transaction(async (tx) => {
        const conversation = await writable(tx, writer, conversationId);
        const now = new Date();
        const { nodes, fingerprints } = await treeOf(tx, conversation.id);
        const { rows, adopt, pending, recorded, activeMessageId } = turnRows(conversation, nodes, turn, now);
        if (deferIfPending && pending.length) throw new AnswerPendingError(pending);
        assertWithinLimits({ lastSeq: conversation.lastSeq }, rows, { maxMessages });
        if (rows.length) await assertBytes(tx, conversation, rows, maxBytes);
        await writeTurn(tx, conversation, { rows, fingerprints, adopt, activeMessageId, now });
        if (completion) await tx.insert(chatCompletions).values(completionRow(completion, conversation.id, now));
        // The rows as built are the rows as stored (the contract suite reads them back).
        return { ...recorded, inserted: rows };
      });
    },

    async appendContent(messageId, text) {
      if (!text) return;
      await db
        .update(messages)
        .set({ content: sql`${messages.content} || ${cleanText(text)}`, updatedAt: new Date() })
        .where(eq(messages.id, cleanText(messageId)));
    },

    async writeBatch(batch) {
      if (batch.messages.length === 0 && batch.completions.length === 0) return;
      // One statement, so one round trip and one commit for every running answer at once. Rows
      // come as one JSON parameter (no per-row placeholders, no Postgres array types): each
      // message once, its text appended, then its end taken if it is still open. SET reads the
      // old row throughout, so `open` is the status before this statement.
      const now = new Date().toISOString();
      const rows = batch.messages.map((m) => ({
        id: cleanText(m.id),
        t: cleanText(m.append),
        status: m.finish?.status ?? null,
        finish_reason: m.finish?.finishReason == null ? null : cleanText(m.finish.finishReason),
        tokens_in: m.finish?.tokensIn ?? null,
        tokens_out: m.finish?.tokensOut ?? null,
        tokens_source: m.finish?.tokensSource ?? null,
        tool_calls: m.finish?.toolCalls == null ? null : cleanJson(m.finish.toolCalls),
        function_call: m.finish?.functionCall == null ? null : cleanJson(m.finish.functionCall),
      }));
      const notes = batch.completions.map((c) => ({
        id: cleanText(c.id),
        upstream_id: c.upstreamId == null ? null : cleanText(c.upstreamId),
        model: c.model == null ? null : cleanText(c.model),
      }));
      const ends = sql`(u.status is not null and m.status in ('draft', 'streaming'))`;
      const taken = (column: string, value: string) => sql.raw(`case when `).append(ends).append(sql.raw(` then ${value} else m.${column} end`));
      await db.execute(sql`
        with noted as (
          update ${chatCompletions} c set upstream_id = n.upstream_id, model = coalesce(n.model, c.model)
          from json_to_recordset(${JSON.stringify(notes)}::json) as n(id text, upstream_id text, model text)
          where c.id = n.id and c.upstream_id is null
        )
        update ${messages} m set
          content = m.content || u.t,
          status = ${taken('status', 'u.status')},
          finish_reason = ${taken('finish_reason', 'u.finish_reason')},
          tokens_in = ${taken('tokens_in', 'u.tokens_in')},
          tokens_out = ${taken('tokens_out', 'u.tokens_out')},
          tokens_source = ${taken('tokens_source', 'u.tokens_source')},
          tool_calls = ${taken('tool_calls', 'coalesce(u.tool_calls, m.tool_calls)')},
          function_call = ${taken('function_call', 'coalesce(u.function_call, m.function_call)')},
          lease_owner = ${taken('lease_owner', 'null')},
          lease_expires_at = ${taken('lease_expires_at', 'null')},
          updated_at = ${now}::timestamptz
        from json_to_recordset(${JSON.stringify(rows)}::json) as u(id text, t text, status text, finish_reason text,
          tokens_in int, tokens_out int, tokens_source text, tool_calls jsonb, function_call jsonb)
        where m.id = u.id and (u.t <> '' or ${ends})`);
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

    async readMessageText(messageId, fromChar, maxChars) {
      // substr counts characters (code points), as the interface does.
      const text = maxChars === undefined ? sql<string>`substr(${messages.content}, ${fromChar + 1})` : sql<string>`substr(${messages.content}, ${fromChar + 1}, ${maxChars})`;
      const [row] = await db
        .select({
          conversationId: messages.conversationId,
          role: messages.role,
          status: messages.status,
          text,
          finishReason: messages.finishReason,
          toolCalls: messages.toolCalls,
        })
        .from(messages)
        .where(eq(messages.id, cleanText(messageId)));
      return row ?? null;
    },

    async requestCancel(messageId, now) {
      const [row] = await db
        .update(messages)
        .set({ ...cancelColumns(messages, sql`${now.toISOString()}::timestamptz`), updatedAt: now })
        .where(and(eq(messages.id, cleanText(messageId)), open))
        .returning();
      return row ?? null;
    },

    async pageMessages(conversationId, options) {
      const page = messageSeqPage(messages, cleanText(conversationId), options);
      return db.select().from(messages).where(page.where).orderBy(page.orderBy).limit(options.limit);
    },

    async deleteMessage(conversationId, messageId) {
      return db.transaction(async (tx) => {
        // The conversation's row lock queues this behind (and ahead of) appends, as seqs need.
        const [live] = await tx
          .select({ id: conversations.id })
          .from(conversations)
          .where(and(eq(conversations.id, cleanText(conversationId)), isNull(conversations.deletedAt)))
          .for('update');
        if (!live) return false;
        const [gone] = await tx
          .delete(messages)
          .where(and(eq(messages.id, cleanText(messageId)), eq(messages.conversationId, live.id)))
          .returning({ seq: messages.seq, bytes: messageBytes, parent: messages.parentMessageId, id: messages.id });
        if (!gone) return false;
        // The tree stays whole: its children follow its parent, and so does the active leaf.
        await tx.update(messages).set({ parentMessageId: gone.parent }).where(and(eq(messages.conversationId, live.id), eq(messages.parentMessageId, gone.id)));
        await tx.update(conversations).set({ activeMessageId: gone.parent }).where(and(eq(conversations.id, live.id), eq(conversations.activeMessageId, gone.id)));
        // Later messages move down one, through negative seqs so UNIQUE (conversation_id, seq)
        // holds after every row of either statement.
        const inConversation = eq(messages.conversationId, live.id);
        await tx.update(messages).set({ seq: sql`-${messages.seq}` }).where(and(inConversation, gt(messages.seq, gone.seq)));
        await tx.update(messages).set({ seq: sql`-${messages.seq} - 1` }).where(and(inConversation, lt(messages.seq, 0)));
        await tx
          .update(conversations)
          .set({ lastSeq: sql`${conversations.lastSeq} - 1`, storedBytes: sql`greatest(${conversations.storedBytes} - ${gone.bytes}::bigint, 0)`, updatedAt: new Date() })
          .where(eq(conversations.id, live.id));
        return true;
      });
    },

    async listChatCompletions(reader, options) {
      const rows: StoredChatCompletion[] = await completionsJoined(reader)
        .where(completionListFilter(completionTables, reader, options, hasPair))
        .orderBy(completionOrder(completionTables, options.order))
        .limit(options.limit + 1);
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async getChatCompletion(reader, id, options) {
      const [byId] = await completionsJoined(reader).where(
        and(eq(chatCompletions.id, cleanText(id)), readableBy(accessTables, reader), isNull(conversations.deletedAt)),
      );
      if (byId || !options?.orUpstreamId) return byId ?? null;
      const lookup = upstreamIdLookup(completionTables, reader, id);
      const [byUpstream] = await completionsJoined(reader)
        .where(lookup.where)
        .orderBy(...lookup.orderBy)
        .limit(1);
      return byUpstream ?? null;
    },

    async updateChatCompletion(id, metadata) {
      const [row] = await db.update(chatCompletions).set({ metadata: cleanJson(metadata) }).where(eq(chatCompletions.id, cleanText(id))).returning();
      return row ?? null;
    },

    async deleteChatCompletion(id) {
      const rows = await db.delete(chatCompletions).where(eq(chatCompletions.id, cleanText(id))).returning({ id: chatCompletions.id });
      return rows.length > 0;
    },

    async getResponse(reader, id) {
      const [row] = await db
        .select({ record: getTableColumns(responses), message: getTableColumns(messages), access: accessOf(accessTables, reader) })
        .from(responses)
        .innerJoin(conversations, eq(conversations.id, responses.conversationId))
        .leftJoin(messages, eq(messages.id, responses.messageId))
        .where(and(eq(responses.id, cleanText(id)), readableBy(accessTables, reader), isNull(conversations.deletedAt)));
      return row ? { record: row.record, message: row.message, access: row.access } : null;
    },

    async deleteResponse(id) {
      const rows = await db.delete(responses).where(eq(responses.id, cleanText(id))).returning({ id: responses.id });
      return rows.length > 0;
    },

    async appendResponseEvents(responseId, events) {
      if (!events.length) return;
      await db
        .insert(responseEvents)
        .values(events.map((e) => ({ responseId, seq: e.seq, data: cleanText(e.data) })))
        .onConflictDoNothing();
    },

    async readResponseEvents(responseId, afterSeq, limit) {
      return db
        .select({ seq: responseEvents.seq, data: responseEvents.data })
        .from(responseEvents)
        .where(and(eq(responseEvents.responseId, cleanText(responseId)), gt(responseEvents.seq, afterSeq)))
        .orderBy(asc(responseEvents.seq))
        .limit(limit);
    },

    async noteChatCompletionUpstream(id, { upstreamId, model }) {
      await db
        .update(chatCompletions)
        .set({ upstreamId: upstreamId == null ? null : cleanText(upstreamId), ...(model != null && { model: cleanText(model) }) })
        .where(and(eq(chatCompletions.id, cleanText(id)), isNull(chatCompletions.upstreamId)));
    },

    async renewLeases(holder, expiresAt) {
      const rows = await db
        .update(messages)
        .set({ leaseExpiresAt: expiresAt })
        .where(and(eq(messages.leaseOwner, holder), open))
        .returning({ id: messages.id, cancelRequestedAt: messages.cancelRequestedAt });
      return rows.filter((r) => r.cancelRequestedAt).map((r) => r.id);
    },

    async sweepOrphans(now) {
      const rows = await db
        .update(messages)
        .set({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null, updatedAt: now })
        .where(and(open, or(isNull(messages.leaseExpiresAt), lt(messages.leaseExpiresAt, now))))
        .returning({ id: messages.id });
      return rows.length;
    },

    async purgeExpired({ idleBefore, deletedBefore, batchSize, keysBefore }): Promise<PurgeResult> {
      let keys = 0;
      if (keysBefore) {
        const batch = db.select({ key: idempotencyKeys.key, owner: idempotencyKeys.owner }).from(idempotencyKeys).where(lt(idempotencyKeys.createdAt, keysBefore)).limit(batchSize);
        keys = (await db.delete(idempotencyKeys).where(sql`(${idempotencyKeys.key}, ${idempotencyKeys.owner}) in ${batch}`).returning({ key: idempotencyKeys.key })).length;
      }
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
      if (!idleBefore) return { conversations: rows.length, sessions: 0, unreadable: [], ...(keysBefore && { idempotencyKeys: keys }) };
      const idleSessions = db
        .select({ id: sessions.id })
        .from(sessions)
        .where(and(lt(sessions.lastSeenAt, idleBefore), sessionHasNothingLeft(sessions, conversations)))
        .limit(batchSize);
      const purged = await db.delete(sessions).where(inArray(sessions.id, idleSessions)).returning({ id: sessions.id });
      return { conversations: rows.length, sessions: purged.length, unreadable: [], ...(keysBefore && { idempotencyKeys: keys }) };
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

    async claimIdempotencyKey(principal, key, requestHash, options) {
      const owner = idempotencyOwner(principal);
      const claim = { requestHash, status: null, response: null, createdAt: new Date() };
      return db.transaction(async (tx) => {
        const inserted = await tx.insert(idempotencyKeys).values({ owner, key, ...claim }).onConflictDoNothing().returning({ key: idempotencyKeys.key });
        if (inserted.length) return { claimed: true as const };
        // Taken already: decide on the row as it stands, locked so two retries cannot both take it over.
        const where = and(eq(idempotencyKeys.owner, owner), eq(idempotencyKeys.key, key));
        const [record]: IdempotencyRecord[] = await tx
          .select({ requestHash: idempotencyKeys.requestHash, status: idempotencyKeys.status, response: idempotencyKeys.response, createdAt: idempotencyKeys.createdAt })
          .from(idempotencyKeys)
          .where(where)
          .for('update');
        if (record && !mayTakeOver(record, requestHash, options)) return { claimed: false as const, record };
        await tx.update(idempotencyKeys).set(claim).where(where);
        return { claimed: true as const };
      });
    },

    async completeIdempotencyKey(principal, key, { status, response }) {
      await db
        .update(idempotencyKeys)
        .set({ status, response: cleanJson(response) })
        .where(and(eq(idempotencyKeys.owner, idempotencyOwner(principal)), eq(idempotencyKeys.key, key)));
    },

    async releaseIdempotencyKey(principal, key) {
      await db
        .delete(idempotencyKeys)
        .where(and(eq(idempotencyKeys.owner, idempotencyOwner(principal)), eq(idempotencyKeys.key, key), isNull(idempotencyKeys.status)));
    },

    notifications: pgNotifications(client),
  };
}
