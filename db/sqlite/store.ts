import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { and, asc, count, desc, eq, getTableColumns, gt, inArray, isNotNull, isNull, lt, or, sql, sum } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import { migrate } from 'drizzle-orm/better-sqlite3/migrator';
import { createHash } from 'node:crypto';
import {
  accessOf,
  assertWithinLimits,
  cancelColumns,
  cleanJson,
  cleanText,
  chainRows,
  completionListFilter,
  completionOrder,
  completionRow,
  firstTurn,
  idempotencyOwner,
  importedRows,
  importLimits,
  importSourceIds,
  isOpen,
  listFilter,
  mayTakeOver,
  messagePage,
  messageSeqPage,
  messageRow,
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
  type Owner,
  type TreeRow,
} from '../shared.js';
import { fingerprintOf } from '../tree.js';
import {
  AnswerPendingError,
  ConversationAccessError,
  ConversationNotFoundError,
  MessageNotFoundError,
  type Access,
  type AccessibleConversation,
  type ChatCompletionRecord,
  type Conversation,
  type IdempotencyRecord,
  type ImportOutcome,
  type Json,
  type Message,
  type MessageFinish,
  type Principal,
  type MessageRole,
  type PurgeResult,
  type SearchHit,
  type Store,
  type StoredChatCompletion,
} from '../store.js';
import { fts5Match, MAX_RANKED_MATCHES } from '../search-query.js';
import { MAX_INDEXED_CHARS } from '../search-text.js';
import { registerSearchFunctions } from './search-index.js';
import { sqliteIdentity } from './identity.js';
import { migrationsFolder as findMigrations } from '../migrations-folder.js';
import * as schema from './schema.js';

const { sessions, conversations, messages, serverSettings, conversationShares, idempotencyKeys, chatCompletions, responses, responseEvents } = schema;
const accessTables = { conversations, shares: conversationShares };
const streamingMessageId = streamingMessageOf({ conversations, messages });
/** A conversation row with the reader's access and its answer in flight, for selects. */
const withAccess = (reader: Parameters<typeof accessOf>[1]) => ({
  ...getTableColumns(conversations),
  access: accessOf(accessTables, reader),
  streamingMessageId,
});
const completionTables = { ...accessTables, completions: chatCompletions };
/** A completion record with its answer and the reader's access, for selects joining all three. */
const completionSelect = (reader: Principal) => ({ record: getTableColumns(chatCompletions), message: getTableColumns(messages), access: accessOf(accessTables, reader) });
/** Metadata holds this key with this string value (json_each: any key, quotes and dots included). */
const hasPair = (key: string, value: string) =>
  sql`exists (select 1 from json_each(${chatCompletions.metadata}) as pair where pair.key = ${key} and pair.type = 'text' and pair.value = ${value})`;
/** The bytes a message counts towards its owner's limit, as the byte triggers count them. */
const messageBytes = sql<number>`case when ${messages.status} in ('draft', 'streaming') then 0 else length(CAST(${messages.content} AS BLOB))
  + coalesce(length(CAST(${messages.contentJson} AS BLOB)), 0) + coalesce(length(CAST(${messages.toolCalls} AS BLOB)), 0)
  + coalesce(length(CAST(${messages.functionCall} AS BLOB)), 0) end`.mapWith(Number);

/** A message row as better-sqlite3 binds it: dates as epoch ms, JSON as text. */
function toDriverRow(row: Message): Record<string, unknown> {
  const json = (v: unknown) => (v === null ? null : JSON.stringify(v));
  return {
    ...row,
    contentJson: json(row.contentJson),
    toolCalls: json(row.toolCalls),
    functionCall: json(row.functionCall),
    createdAt: row.createdAt.getTime(),
    updatedAt: row.updatedAt.getTime(),
    leaseExpiresAt: row.leaseExpiresAt?.getTime() ?? null,
    cancelRequestedAt: row.cancelRequestedAt?.getTime() ?? null,
  };
}
const migrationsFolder = findMigrations('sqlite');

/** A search hit as the query reads it: a message (seq set), or a conversation by its title. */
interface SqliteHitRow {
  score: number;
  created_ms: number;
  id: string;
  seq: number | null;
  role: MessageRole | null;
  content: string | null;
  conversation_id: string;
  title: string | null;
}

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
  // Used by the migration that replaces stored session ids by their hashes.
  client.function('chat_proxy_sha256_hex', { deterministic: true }, (v: unknown) => (v == null ? null : createHash('sha256').update(String(v)).digest('hex')));
  // What the search index is given for a message's content or a title (see the search migration):
  // the triggers call it, so every connection that writes messages must register it.
  registerSearchFunctions(client);
  const db = drizzle(client, { schema });
  const open = inArray(messages.status, ['draft', 'streaming']);

  // The statements every proxied stream runs, prepared once: building and preparing SQL on
  // each call cost more CPU than the writes themselves. Built on first use, after migrate().
  const p = sql.placeholder;
  const liveBytes = sql<number>`coalesce(sum(${conversations.storedBytes}), 0)`.mapWith(Number);
  // UPDATE … SET takes a placeholder only inside sql``, where no column encoder applies:
  // such values are passed as the driver stores them (timestamps as epoch ms).
  const raw = (name: string) => sql`${p(name)}`;
  // Owner filters differ in shape for users and sessions: one statement per kind of owner.
  const perOwner = <T>(prepare: (owner: Owner<ReturnType<typeof p>>) => T) => ({
    user: prepare({ by: 'user', userId: p('userId') }),
    session: prepare({ by: 'session', sessionId: p('sessionId') }),
  });
  let prepared: ReturnType<typeof prepareHot> | undefined;
  const prepareHot = () => ({
    liveOf: perOwner((owner) =>
      db
        .select({ n: count(), bytes: liveBytes })
        .from(conversations)
        .where(and(ownedBy(conversations, owner), isNull(conversations.deletedAt)))
        .prepare(),
    ),
    upsertSession: db
      .insert(sessions)
      .values({ id: p('id'), userId: p('userId'), createdAt: p('now'), lastSeenAt: p('now'), userAgent: p('userAgent'), ipHash: p('ipHash') })
      // A session a user signs in from becomes theirs (erased with them); it never changes hands back.
      .onConflictDoUpdate({ target: sessions.id, set: { lastSeenAt: sql`excluded.last_seen_at`, userId: sql`coalesce(excluded.user_id, ${sessions.userId})` } })
      .prepare(),
    insertConversation: db
      .insert(conversations)
      .values({
        id: p('id'),
        sessionId: p('sessionId'),
        userId: p('userId'),
        title: p('title'),
        model: p('model'),
        metadata: p('metadata'),
        lastSeq: p('lastSeq'),
        activeMessageId: p('activeMessageId'),
        createdAt: p('now'),
        updatedAt: p('now'),
      })
      .prepare(),
    readableConversation: perOwner((reader) =>
      db
        .select(withAccess(reader))
        .from(conversations)
        .where(and(eq(conversations.id, p('id')), readableBy(accessTables, reader), isNull(conversations.deletedAt)))
        .prepare(),
    ),
    setLastSeq: db
      .update(conversations)
      .set({ lastSeq: raw('lastSeq'), activeMessageId: raw('activeMessageId'), updatedAt: raw('nowMs') })
      .where(eq(conversations.id, p('id')))
      .prepare(),
    // What matching a turn reads of the tree: no text, only ids, links and fingerprints. Rows as
    // arrays, straight from the driver: mapping a thousand rows to objects through Drizzle cost
    // more than the query.
    treeNodes: client
      .prepare<[string], [string, string | null, string | null, number, string | null, Message['status']]>(
        'select id, parent_message_id, fingerprint, seq, client_id, status from messages where conversation_id = ?',
      )
      .raw(true),
    messageIn: db
      .select({ id: messages.id })
      .from(messages)
      .where(and(eq(messages.id, p('id')), eq(messages.conversationId, p('conversationId'))))
      .prepare(),
    whatItSays: client.prepare<[string], { role: Message['role']; content: string; contentJson: string | null; toolCalls: string | null; functionCall: string | null }>(
      'select role, content, content_json as contentJson, tool_calls as toolCalls, function_call as functionCall from messages where id = ?',
    ),
    setFingerprint: db.update(messages).set({ fingerprint: sql`${p('fingerprint')}` }).where(eq(messages.id, p('id'))).prepare(),
    adoptClientId: db.update(messages).set({ clientId: sql`${p('clientId')}` }).where(eq(messages.id, p('id'))).prepare(),
    // Raw placeholders: values arrive as the driver stores them (see toDriverRow).
    insertMessage: db
      .insert(messages)
      .values(Object.fromEntries(Object.keys(messageRow('', 0, { role: 'user' }, new Date())).map((k) => [k, raw(k)])) as never)
      .prepare(),
    appendContent: db
      .update(messages)
      .set({ content: sql`${messages.content} || ${p('text')}`, updatedAt: raw('nowMs') })
      .where(eq(messages.id, p('id')))
      .prepare(),
    finishMessage: db
      .update(messages)
      .set({
        status: raw('status'),
        finishReason: raw('finishReason'),
        tokensIn: raw('tokensIn'),
        tokensOut: raw('tokensOut'),
        tokensSource: raw('tokensSource'),
        leaseOwner: null,
        leaseExpiresAt: null,
        // Only replaced when the end brings them.
        toolCalls: sql`coalesce(${p('toolCalls')}, ${messages.toolCalls})`,
        functionCall: sql`coalesce(${p('functionCall')}, ${messages.functionCall})`,
        updatedAt: raw('nowMs'),
      })
      .where(and(eq(messages.id, p('id')), open))
      .prepare(),
    consentOf: db.select({ consent: sessions.consent }).from(sessions).where(eq(sessions.id, p('id'))).prepare(),
    insertCompletion: db
      .insert(chatCompletions)
      .values(Object.fromEntries(Object.keys(completionRow({ id: '', messageId: '', model: null, metadata: {} }, '', new Date())).map((k) => [k, raw(k)])) as never)
      .prepare(),
    noteUpstream: db
      .update(chatCompletions)
      .set({ upstreamId: raw('upstreamId'), model: sql`coalesce(${p('model')}, ${chatCompletions.model})` })
      .where(and(eq(chatCompletions.id, p('id')), isNull(chatCompletions.upstreamId)))
      .prepare(),
  });
  const hot = () => (prepared ??= prepareHot());
  const liveOf = (principal: Principal) => {
    const owner = ownerOf(principal);
    return hot().liveOf[owner.by].get(owner) ?? { n: 0, bytes: 0 };
  };
  const jsonText = (value: unknown) => (value == null ? null : JSON.stringify(cleanJson(value as never)));
  /** Moves a message to its end (inside the caller's transaction, if any). */
  const finishRow = (messageId: string, finish: MessageFinish) =>
    hot().finishMessage.run({
      id: messageId,
      status: finish.status,
      finishReason: finish.finishReason == null ? null : cleanText(finish.finishReason),
      tokensIn: finish.tokensIn ?? null,
      tokensOut: finish.tokensOut ?? null,
      tokensSource: finish.tokensSource ?? null,
      toolCalls: jsonText(finish.toolCalls),
      functionCall: jsonText(finish.functionCall),
      nowMs: Date.now(),
    });
  const noteUpstream = (id: string, { upstreamId, model }: { upstreamId: string | null; model: string | null }) =>
    hot().noteUpstream.run({ id, upstreamId: upstreamId == null ? null : cleanText(upstreamId), model: model == null ? null : cleanText(model) });

  /** Inserts message rows inside the caller's transaction. */
  const insertMessages = (rows: Message[]): Message[] => {
    for (const row of rows) hot().insertMessage.run(toDriverRow(row));
    return rows;
  };
  /** Inserts a completion record inside the caller's transaction (after its message). */
  const insertCompletion = (row: ChatCompletionRecord) =>
    hot().insertCompletion.run({ ...row, metadata: JSON.stringify(row.metadata), createdAt: row.createdAt.getTime() });

  const completionsJoined = (reader: Principal) =>
    db
      .select(completionSelect(reader))
      .from(chatCompletions)
      .innerJoin(conversations, eq(conversations.id, chatCompletions.conversationId))
      .innerJoin(messages, eq(messages.id, chatCompletions.messageId));

  /** The conversation `writer` may add to, read inside the caller's transaction (locked: BEGIN IMMEDIATE). */
  const writable = (writer: Principal, conversationId: string) => {
    const who = ownerOf(writer);
    const conversation = hot().readableConversation[who.by].get({ id: conversationId, ...who });
    if (!conversation) throw new ConversationNotFoundError(conversationId);
    if (conversation.access === 'viewer') throw new ConversationAccessError(conversationId, conversation.access);
    return conversation;
  };

  /** The tree of a conversation for matching, with the fingerprints not yet known computed and kept. */
  const treeOf = (conversationId: string): TreeRow[] => {
    const nodes: TreeRow[] = hot()
      .treeNodes.all(conversationId)
      .map(([id, parentId, fingerprint, seq, clientId, status]) => ({ id, parentId, fingerprint, seq, clientId, status }));
    // Usually one: the last answer, streamed, finished since the previous turn.
    for (const node of nodes) {
      if (node.fingerprint !== null || isOpen(node.status)) continue;
      const said = hot().whatItSays.get(node.id)!;
      const parse = (json: string | null) => (json === null ? null : (JSON.parse(json) as Json));
      node.fingerprint = fingerprintOf({ role: said.role, content: said.content, contentJson: parse(said.contentJson), toolCalls: parse(said.toolCalls), functionCall: parse(said.functionCall) });
      hot().setFingerprint.run({ id: node.id, fingerprint: node.fingerprint });
    }
    return nodes;
  };

  const purgeKeys = (before: Date, batchSize: number) => {
    const batch = db.select({ key: idempotencyKeys.key, owner: idempotencyKeys.owner }).from(idempotencyKeys).where(lt(idempotencyKeys.createdAt, before)).limit(batchSize);
    return db.delete(idempotencyKeys).where(sql`(${idempotencyKeys.key}, ${idempotencyKeys.owner}) in ${batch}`).run().changes;
  };

  const findReadable = (reader: Principal, id: string, includeDeleted = false): AccessibleConversation | null =>
    db
      .select(withAccess(reader))
      .from(conversations)
      .where(and(eq(conversations.id, id), readableBy(accessTables, reader), includeDeleted ? undefined : isNull(conversations.deletedAt)))
      .get() ?? null;

  return {
    dialect: 'sqlite',
    ...sqliteIdentity(db, client),

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

    async createConversation(owner, input, { maxPerSession, session, messages: first, maxMessages, maxBytes, activeMessageId, completion }) {
      return client.transaction(() => {
        const { upsertSession, insertConversation } = hot();
        const now = new Date();
        const { conversation, rows, created } = firstTurn(owner, input, first ?? [], now, activeMessageId);
        const live = liveOf(owner);
        assertWithinLimits({ conversations: live.n, lastSeq: 0, bytes: live.bytes }, rows, { maxPerSession, maxMessages, maxBytes });
        upsertSession.run({ id: owner.sessionId, userId: conversation.userId, now, ...sessionColumns(session) });
        insertConversation.run({ ...conversation, now });
        insertMessages(rows);
        if (completion) insertCompletion(completionRow(completion, conversation.id, now));
        return created;
      }).immediate();
    },

    async getConversation(reader, id, options) {
      return findReadable(reader, id, options?.includeDeleted);
    },

    async listConversations(reader, options) {
      const rows = db
        .select(withAccess(reader))
        .from(conversations)
        .where(listFilter(accessTables, reader, options))
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
          .returning({ ...getTableColumns(conversations), streamingMessageId })
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

    async listEveryConversation(options) {
      const rows = db
        .select({ ...getTableColumns(conversations), access: sql<Access>`'owner'`, streamingMessageId })
        .from(conversations)
        .where(pageFilter(conversations, options))
        .orderBy(desc(conversations.createdAt), desc(conversations.id))
        .limit(options.limit + 1)
        .all();
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async importConversation(owner, input, { maxPerSession, maxMessages, maxBytes, session, dryRun }) {
      const run = (): ImportOutcome => {
        const sources = importSourceIds(input);
        const theirs = db
          .select({ id: conversations.id })
          .from(conversations)
          .where(and(ownedBy(conversations, owner), or(inArray(conversations.id, sources), inArray(conversations.importSourceId, sources))))
          .get();
        if (theirs) return { status: 'skipped', id: theirs.id, renamed: false };
        // Not theirs (that was checked just above), so another owner's: never touched.
        const renamed = db.select({ id: conversations.id }).from(conversations).where(eq(conversations.id, input.id)).get() !== undefined;
        const taken = new Set<string>();
        const ids = input.messages.map((m) => m.id);
        for (let i = 0; i < ids.length; i += 500) {
          for (const row of db.select({ id: messages.id }).from(messages).where(inArray(messages.id, ids.slice(i, i + 500))).all()) taken.add(row.id);
        }
        const { conversation, rows } = importedRows(owner, input, renamed ? crypto.randomUUID() : input.id, taken);
        const live = liveOf(owner);
        assertWithinLimits({ conversations: live.n, lastSeq: 0, bytes: live.bytes }, rows, importLimits(input, { maxPerSession, maxMessages, maxBytes }));
        if (!dryRun) {
          hot().upsertSession.run({ id: owner.sessionId, userId: conversation.userId, now: new Date(), ...sessionColumns(session) });
          // stored_bytes is counted by the triggers as the messages go in.
          const { storedBytes: _counted, ...row } = conversation;
          db.insert(conversations).values(row).run();
          insertMessages(rows);
        }
        return { status: 'imported', id: conversation.id, renamed };
      };
      return dryRun ? client.transaction(run).deferred() : client.transaction(run).immediate();
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

    async readMessages(conversationId, { view, afterSeq, limit }) {
      const rows = db
        .select({ ...getTableColumns(messages), siblingCount: treeSql.siblingCount, siblingIndex: treeSql.siblingIndex })
        .from(messages)
        .where(messagePage(messages, conversationId, view, afterSeq))
        .orderBy(asc(messages.seq))
        .limit(limit + 1)
        .all();
      return { items: rows.slice(0, limit), hasMore: rows.length > limit };
    },

    async pathTo(conversationId, messageId) {
      const rows = db
        .select()
        .from(messages)
        .where(and(eq(messages.conversationId, conversationId), sql`${messages.id} in ${treeSql.pathIds(conversationId, messageId)}`))
        .orderBy(asc(messages.seq))
        .all();
      return rows.length ? rows : null;
    },

    async setActiveMessage(writer, conversationId, messageId) {
      return client.transaction(() => {
        const conversation = writable(writer, conversationId);
        const leaf = db.get<{ id: string } | undefined>(sql`select ${treeSql.newestLeaf(conversationId, messageId)} as id`);
        if (!leaf?.id) throw new MessageNotFoundError(conversationId, messageId);
        const now = new Date();
        hot().setLastSeq.run({ id: conversationId, lastSeq: conversation.lastSeq, activeMessageId: leaf.id, nowMs: now.getTime() });
        const { access: _, ...updated } = conversation;
        return { ...updated, activeMessageId: leaf.id, updatedAt: now };
      }).immediate();
    },

    async appendMessages(writer, conversationId, toAppend, { maxMessages, maxBytes, completion, response }) {
      return client.transaction(() => {
        const conversation = writable(writer, conversationId);
        const list = typeof toAppend === 'function' ? toAppend(conversation) : toAppend;
        if (list.length === 0) return [];
        const named = list[0]!.parentMessageId;
        if (named != null && !hot().messageIn.get({ id: named, conversationId })) throw new MessageNotFoundError(conversationId, named, 'parent_message_id');
        const now = new Date();
        // One chain, after the named parent or the active leaf.
        const chain = list.map(({ parentMessageId: _, ...m }) => m);
        const rows = chainRows(conversationId, conversation.lastSeq + 1, chain, named !== undefined ? named : conversation.activeMessageId, now);
        assertWithinLimits({ lastSeq: conversation.lastSeq }, rows, { maxMessages });
        // The owner's bytes cost a query: only when capped.
        if (maxBytes !== undefined) assertWithinLimits({ bytes: liveOf(ownerOfRow(conversation)).bytes }, rows, { maxBytes });
        hot().setLastSeq.run({ id: conversationId, lastSeq: conversation.lastSeq + rows.length, activeMessageId: rows.at(-1)!.id, nowMs: now.getTime() });
        insertMessages(rows);
        if (completion) insertCompletion(completionRow(completion, conversationId, now));
        if (response) db.insert(responses).values(responseRow(response, conversationId)).run();
        return rows;
      }).immediate();
    },

    async appendTurn(writer, conversationId, turn, { maxMessages, maxBytes, deferIfPending, completion }) {
      return client.transaction(() => {
        const conversation = writable(writer, conversationId);
        const now = new Date();
        const { rows, adopt, pending, recorded, activeMessageId } = turnRows(conversation, treeOf(conversationId), turn, now);
        if (deferIfPending && pending.length) throw new AnswerPendingError(pending);
        assertWithinLimits({ lastSeq: conversation.lastSeq }, rows, { maxMessages });
        if (maxBytes !== undefined && rows.length) assertWithinLimits({ bytes: liveOf(ownerOfRow(conversation)).bytes }, rows, { maxBytes });
        for (const { id, clientId } of adopt) hot().adoptClientId.run({ id, clientId });
        hot().setLastSeq.run({ id: conversationId, lastSeq: conversation.lastSeq + rows.length, activeMessageId, nowMs: now.getTime() });
        const inserted = insertMessages(rows);
        if (completion) insertCompletion(completionRow(completion, conversationId, now));
        return { ...recorded, inserted };
      }).immediate();
    },

    async appendContent(messageId, text) {
      if (!text) return;
      hot().appendContent.run({ id: messageId, text: cleanText(text), nowMs: Date.now() });
    },

    async writeBatch(batch) {
      client.transaction(() => {
        for (const m of batch.messages) {
          if (m.append) hot().appendContent.run({ id: m.id, text: cleanText(m.append), nowMs: Date.now() });
          if (m.finish) finishRow(m.id, m.finish);
        }
        for (const c of batch.completions) noteUpstream(c.id, c);
      }).immediate();
    },

    async finishMessage(messageId, finish) {
      finishRow(messageId, finish);
    },

    async getMessage(messageId) {
      return db.select().from(messages).where(eq(messages.id, messageId)).get() ?? null;
    },

    async readMessageText(messageId, fromChar, maxChars) {
      // substr counts characters (code points) of text, as the interface does.
      const text = maxChars === undefined ? sql<string>`substr(${messages.content}, ${fromChar + 1})` : sql<string>`substr(${messages.content}, ${fromChar + 1}, ${maxChars})`;
      return (
        db
          .select({
            conversationId: messages.conversationId,
            role: messages.role,
            status: messages.status,
            text,
            finishReason: messages.finishReason,
            toolCalls: messages.toolCalls,
          })
          .from(messages)
          .where(eq(messages.id, messageId))
          .get() ?? null
      );
    },

    async requestCancel(messageId, now) {
      return (
        db
          .update(messages)
          .set({ ...cancelColumns(messages, sql`${now.getTime()}`), updatedAt: now })
          .where(and(eq(messages.id, messageId), open))
          .returning()
          .get() ?? null
      );
    },

    async pageMessages(conversationId, options) {
      const page = messageSeqPage(messages, conversationId, options);
      return db.select().from(messages).where(page.where).orderBy(page.orderBy).limit(options.limit).all();
    },

    async deleteMessage(conversationId, messageId) {
      return client.transaction(() => {
        const live = db.select({ id: conversations.id }).from(conversations).where(and(eq(conversations.id, conversationId), isNull(conversations.deletedAt))).get();
        if (!live) return false;
        const gone = db
          .select({ seq: messages.seq, bytes: messageBytes, parent: messages.parentMessageId })
          .from(messages)
          .where(and(eq(messages.id, messageId), eq(messages.conversationId, conversationId)))
          .get();
        if (!gone) return false;
        db.delete(messages).where(eq(messages.id, messageId)).run();
        // The tree stays whole: its children follow its parent, and so does the active leaf.
        db.update(messages).set({ parentMessageId: gone.parent }).where(and(eq(messages.conversationId, conversationId), eq(messages.parentMessageId, messageId))).run();
        db.update(conversations).set({ activeMessageId: gone.parent }).where(and(eq(conversations.id, conversationId), eq(conversations.activeMessageId, messageId))).run();
        // Later messages move down one, through negative seqs so UNIQUE (conversation_id, seq)
        // holds after every row of either statement.
        const inConversation = eq(messages.conversationId, conversationId);
        db.update(messages).set({ seq: sql`-${messages.seq}` }).where(and(inConversation, gt(messages.seq, gone.seq))).run();
        db.update(messages).set({ seq: sql`-${messages.seq} - 1` }).where(and(inConversation, lt(messages.seq, 0))).run();
        db.update(conversations)
          .set({ lastSeq: sql`${conversations.lastSeq} - 1`, storedBytes: sql`max(${conversations.storedBytes} - ${gone.bytes}, 0)`, updatedAt: new Date() })
          .where(eq(conversations.id, conversationId))
          .run();
        return true;
      }).immediate();
    },

    async listChatCompletions(reader, options) {
      const rows: StoredChatCompletion[] = completionsJoined(reader)
        .where(completionListFilter(completionTables, reader, options, hasPair))
        .orderBy(completionOrder(completionTables, options.order))
        .limit(options.limit + 1)
        .all();
      return { items: rows.slice(0, options.limit), hasMore: rows.length > options.limit };
    },

    async getChatCompletion(reader, id, options) {
      const byId = completionsJoined(reader)
        .where(and(eq(chatCompletions.id, id), readableBy(accessTables, reader), isNull(conversations.deletedAt)))
        .get();
      if (byId || !options?.orUpstreamId) return byId ?? null;
      const lookup = upstreamIdLookup(completionTables, reader, id);
      return completionsJoined(reader).where(lookup.where).orderBy(...lookup.orderBy).limit(1).get() ?? null;
    },

    async updateChatCompletion(id, metadata) {
      return db.update(chatCompletions).set({ metadata: cleanJson(metadata) }).where(eq(chatCompletions.id, id)).returning().get() ?? null;
    },

    async deleteChatCompletion(id) {
      return db.delete(chatCompletions).where(eq(chatCompletions.id, id)).run().changes > 0;
    },

    async getResponse(reader, id) {
      const row = db
        .select({ record: getTableColumns(responses), message: getTableColumns(messages), access: accessOf(accessTables, reader) })
        .from(responses)
        .innerJoin(conversations, eq(conversations.id, responses.conversationId))
        .leftJoin(messages, eq(messages.id, responses.messageId))
        .where(and(eq(responses.id, id), readableBy(accessTables, reader), isNull(conversations.deletedAt)))
        .get();
      return row ? { record: row.record, message: row.message, access: row.access } : null;
    },

    async deleteResponse(id) {
      return db.delete(responses).where(eq(responses.id, id)).run().changes > 0;
    },

    async appendResponseEvents(responseId, events) {
      if (!events.length) return;
      db.insert(responseEvents)
        .values(events.map((e) => ({ responseId, seq: e.seq, data: cleanText(e.data) })))
        .onConflictDoNothing()
        .run();
    },

    async readResponseEvents(responseId, afterSeq, limit) {
      return db
        .select({ seq: responseEvents.seq, data: responseEvents.data })
        .from(responseEvents)
        .where(and(eq(responseEvents.responseId, responseId), gt(responseEvents.seq, afterSeq)))
        .orderBy(asc(responseEvents.seq))
        .limit(limit)
        .all();
    },

    async noteChatCompletionUpstream(id, upstream) {
      noteUpstream(id, upstream);
    },

    async renewLeases(holder, expiresAt) {
      return db
        .update(messages)
        .set({ leaseExpiresAt: expiresAt })
        .where(and(eq(messages.leaseOwner, holder), open))
        .returning({ id: messages.id, cancelRequestedAt: messages.cancelRequestedAt })
        .all()
        .filter((r) => r.cancelRequestedAt)
        .map((r) => r.id);
    },

    async sweepOrphans(now) {
      return db
        .update(messages)
        .set({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null, updatedAt: now })
        .where(and(open, or(isNull(messages.leaseExpiresAt), lt(messages.leaseExpiresAt, now))))
        .run().changes;
    },

    async purgeExpired({ idleBefore, deletedBefore, batchSize, keysBefore }): Promise<PurgeResult> {
      const keys = keysBefore ? purgeKeys(keysBefore, batchSize) : 0;
      // json_type fails on metadata SQLite cannot parse (e.g. nested past its limit), and one
      // such row would fail every sweep: CASE evaluates json_type only for readable metadata.
      const readable = sql`json_valid(${conversations.metadata})`;
      const notPinned = sql`case when ${readable} then coalesce(json_type(${conversations.metadata}, '$.pinned'), '') <> 'true' else 0 end`;
      const expired = or(
        and(isNotNull(conversations.deletedAt), lt(conversations.deletedAt, deletedBefore)),
        idleBefore ? and(lt(conversations.updatedAt, idleBefore), notPinned) : undefined,
      );
      const batch = db.select({ id: conversations.id }).from(conversations).where(expired).limit(batchSize);
      // Messages go with their conversation (ON DELETE CASCADE).
      const deleted = db.delete(conversations).where(inArray(conversations.id, batch)).run().changes;
      if (!idleBefore) return { conversations: deleted, sessions: 0, unreadable: [], ...(keysBefore && { idempotencyKeys: keys }) };
      const unreadable = db
        .select({ id: conversations.id })
        .from(conversations)
        .where(and(lt(conversations.updatedAt, idleBefore), isNull(conversations.deletedAt), sql`not ${readable}`))
        .limit(100)
        .all()
        .map((r) => r.id);
      const idleSessions = db
        .select({ id: sessions.id })
        .from(sessions)
        .where(and(lt(sessions.lastSeenAt, idleBefore), sessionHasNothingLeft(sessions, conversations)))
        .limit(batchSize);
      const purgedSessions = db.delete(sessions).where(inArray(sessions.id, idleSessions)).run().changes;
      return { conversations: deleted, sessions: purgedSessions, unreadable, ...(keysBefore && { idempotencyKeys: keys }) };
    },

    async counts() {
      const c = db.select({ n: count() }).from(conversations).where(isNull(conversations.deletedAt)).get();
      const m = db.select({ n: count() }).from(messages).get();
      return { conversations: c?.n ?? 0, messages: m?.n ?? 0 };
    },

    async search(reader, { query, limit, after }) {
      if (!query.terms.length) return { items: [], hasMore: false };
      // bm25 is lower for better matches: the score is its negation, higher first as in Postgres.
      const position = after
        ? sql`where score < ${after.score} or (score = ${after.score} and (created_ms < ${after.createdAt.getTime()} or (created_ms = ${after.createdAt.getTime()} and id < ${after.id})))`
        : sql``;
      // Index rowids are conversation rowid * 2^32 + seq (0: the title), newest conversations
      // highest: the caller's conversations are kept by shifting, without a lookup per match,
      // and bm25 is computed only for the newest MAX_RANKED_MATCHES of those (FTS5 walks rowids
      // in descending order itself, so LIMIT stops the walk). Then the page is chosen, and only
      // its rows' text is read.
      const rows = db.all<SqliteHitRow>(sql`
        with readable as materialized (
          select ${conversations}.rowid as r from ${conversations} where ${readableBy(accessTables, reader)} and ${conversations.deletedAt} is null
        ), found as materialized (
          select rowid >> 32 as conv, rowid & 4294967295 as seq, -bm25(search_index) as score from search_index
          where search_index match ${fts5Match(query)} and (rowid >> 32) in (select r from readable)
          order by rowid desc limit ${MAX_RANKED_MATCHES}
        ), hits as (
          select found.score, found.seq, c.id as conversation_id, coalesce(m.created_at, c.created_at) as created_ms, coalesce(m.id, c.id) as id
          from found join conversations c on c.rowid = found.conv
            left join messages m on found.seq > 0 and m.conversation_id = c.id and m.seq = found.seq
          where found.seq = 0 or m.id is not null
        ), page as (
          select * from hits ${position} order by score desc, created_ms desc, id desc limit ${limit + 1}
        )
        select page.score, page.created_ms, page.id, m.seq, m.role, substr(m.content, 1, ${MAX_INDEXED_CHARS}) as content,
          page.conversation_id, c.title
        from page join conversations c on c.id = page.conversation_id
          left join messages m on page.seq > 0 and m.id = page.id
        order by page.score desc, page.created_ms desc, page.id desc`);
      const items = rows.slice(0, limit).map(
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
      const rows = db
        .select({ id: messages.conversationId, tokensIn: sum(messages.tokensIn).mapWith(Number), tokensOut: sum(messages.tokensOut).mapWith(Number) })
        .from(messages)
        .where(inArray(messages.conversationId, ids))
        .groupBy(messages.conversationId)
        .all();
      return new Map(rows.map((r) => [r.id, { tokensIn: r.tokensIn, tokensOut: r.tokensOut }]));
    },

    async getConsent(sessionId) {
      return hot().consentOf.get({ id: sessionId })?.consent ?? null;
    },

    async setConsent(sessionId, consent, session) {
      const now = new Date();
      db.insert(sessions)
        .values({ id: sessionId, createdAt: now, lastSeenAt: now, ...sessionColumns(session), consent, consentAt: now })
        .onConflictDoUpdate({ target: sessions.id, set: { consent, consentAt: now, lastSeenAt: now } })
        .run();
    },

    async sharedSetting(key, candidate) {
      db.insert(serverSettings).values({ key, value: candidate, createdAt: new Date() }).onConflictDoNothing().run();
      return db.select({ value: serverSettings.value }).from(serverSettings).where(eq(serverSettings.key, key)).get()!.value;
    },

    async claimIdempotencyKey(principal, key, requestHash, options) {
      const owner = idempotencyOwner(principal);
      const where = and(eq(idempotencyKeys.owner, owner), eq(idempotencyKeys.key, key));
      return client.transaction(() => {
        const record: IdempotencyRecord | undefined = db
          .select({ requestHash: idempotencyKeys.requestHash, status: idempotencyKeys.status, response: idempotencyKeys.response, createdAt: idempotencyKeys.createdAt })
          .from(idempotencyKeys)
          .where(where)
          .get();
        if (record && !mayTakeOver(record, requestHash, options)) return { claimed: false as const, record };
        const claim = { requestHash, status: null, response: null, createdAt: new Date() };
        db.insert(idempotencyKeys).values({ owner, key, ...claim }).onConflictDoUpdate({ target: [idempotencyKeys.owner, idempotencyKeys.key], set: claim }).run();
        return { claimed: true as const };
      }).immediate();
    },

    async completeIdempotencyKey(principal, key, { status, response }) {
      db.update(idempotencyKeys)
        .set({ status, response: cleanJson(response) })
        .where(and(eq(idempotencyKeys.owner, idempotencyOwner(principal)), eq(idempotencyKeys.key, key)))
        .run();
    },

    async releaseIdempotencyKey(principal, key) {
      db.delete(idempotencyKeys)
        .where(and(eq(idempotencyKeys.owner, idempotencyOwner(principal)), eq(idempotencyKeys.key, key), isNull(idempotencyKeys.status)))
        .run();
    },
  };
}
