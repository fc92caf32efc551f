import { and, asc, desc, eq, getTableName, gt, isNull, lt, or, sql, type AnyColumn, type Placeholder, type SQL, type Table } from 'drizzle-orm';
import { fingerprintOf, planTurn, type TreeNode } from './tree.js';
import {
  LimitExceededError,
  type Access,
  type ChatCompletionListOptions,
  type ChatCompletionRecord,
  type ChatTurn,
  type Conversation,
  type IdempotencyRecord,
  type ImportedConversation,
  type MessagePageOptions,
  type MessageView,
  type NewChatCompletion,
  type NewResponse,
  type ResponseRecord,
  type StringMap,
  type RecordedTurn,
  type Json,
  type JsonObject,
  type ListOptions,
  type Message,
  type NewConversation,
  type NewMessage,
  type Principal,
  type SessionInfo,
} from './store.js';

/**
 * Postgres text and jsonb cannot hold U+0000, and a conversation must read back the same from
 * either dialect, so every string written by either store has NUL (and any lone surrogate)
 * replaced by U+FFFD, the Unicode replacement character. Everything else is stored exactly.
 */
const NUL = /\u0000/g;
type WellFormed = { isWellFormed(): boolean; toWellFormed(): string };
export function cleanText(text: string): string {
  // Lone UTF-16 surrogates cannot be stored either (jsonb rejects them, UTF-8 has no form for
  // them): like NUL they become U+FFFD. Both checks are native and cheap when nothing is wrong.
  const wellFormed = (text as unknown as WellFormed).isWellFormed();
  if (wellFormed && !text.includes('\u0000')) return text;
  return (wellFormed ? text : (text as unknown as WellFormed).toWellFormed()).replace(NUL, '\uFFFD');
}

export function cleanJson<T extends Json | JsonObject | null | undefined>(value: T): T {
  if (typeof value === 'string') return cleanText(value) as T;
  if (Array.isArray(value)) return value.map((v) => cleanJson(v)) as T;
  if (value && typeof value === 'object') {
    const out: JsonObject = {};
    for (const [k, v] of Object.entries(value)) out[cleanText(k)] = cleanJson(v);
    return out as T;
  }
  return value;
}

/** A new conversation's row, shared by both dialects. */
export function conversationRow(owner: Principal, input: NewConversation, lastSeq: number, now: Date): Conversation {
  const who = ownerOf(owner);
  return {
    id: crypto.randomUUID(),
    sessionId: owner.sessionId,
    userId: who.by === 'user' ? who.userId : null,
    title: input.title == null ? null : cleanText(input.title),
    model: input.model == null ? null : cleanText(input.model),
    metadata: cleanJson(input.metadata ?? {}),
    lastSeq,
    activeMessageId: null,
    // Counted by the database as messages are written (see the byte triggers), never inserted.
    storedBytes: 0,
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
    importSourceId: null,
  };
}

/**
 * A new conversation and its first messages (seqs 1..n), as both dialects insert them: a chain,
 * each following the one before (unless it names its parent, as an imported tree does), the
 * last the active leaf unless another is named. `conversation` is the row to insert; `created`
 * is what reads back once the messages are in (their bytes counted), which createConversation returns.
 */
export function firstTurn(owner: Principal, input: NewConversation, first: NewMessage[], now: Date, activeMessageId?: string | null) {
  const conversation = conversationRow(owner, input, first.length, now);
  const rows = chainRows(conversation.id, 1, first, null, now);
  conversation.activeMessageId = activeMessageId !== undefined ? activeMessageId : (rows.at(-1)?.id ?? null);
  return { conversation, rows, created: { ...conversation, storedBytes: storedBytesOf(rows) } };
}

/**
 * Rows for a list of messages that follow one another: seqs from `firstSeq`, the first message
 * after `parentId` and each next one after the one before, unless a message names its parent.
 */
export function chainRows(conversationId: string, firstSeq: number, list: NewMessage[], parentId: string | null, now: Date): Message[] {
  const rows: Message[] = [];
  let previous = parentId;
  for (const [i, m] of list.entries()) {
    const row = messageRow(conversationId, firstSeq + i, m.parentMessageId !== undefined ? m : { ...m, parentMessageId: previous }, now);
    rows.push(row);
    previous = row.id;
  }
  return rows;
}

/** What a message is stored as (messageRow's cleaning), for matching a request against stored rows. */
export function storedForm(m: NewMessage): Pick<Message, 'role' | 'content' | 'contentJson' | 'toolCalls' | 'functionCall' | 'clientId'> {
  return {
    role: m.role,
    content: cleanText(m.content ?? ''),
    contentJson: cleanJson(m.contentJson ?? null),
    toolCalls: cleanJson(m.toolCalls ?? null),
    functionCall: cleanJson(m.functionCall ?? null),
    clientId: m.clientId == null ? null : cleanText(m.clientId),
  };
}

/** Messages still being written: their text is not final, so they have no fingerprint yet. */
export const isOpen = (status: Message['status']) => status === 'draft' || status === 'streaming';

/**
 * The message row to insert, shared by both dialects (seq and ids are decided by the caller).
 * Typed as the whole row: a column added to the schema (and so to Message) fails to compile
 * here until it is given a value, and both stores insert every key of this row.
 */
export function messageRow(conversationId: string, seq: number, m: NewMessage, now: Date): Message {
  const stored = storedForm(m);
  const status = m.status ?? 'final';
  return {
    id: m.id ?? crypto.randomUUID(),
    conversationId,
    role: m.role,
    status,
    content: stored.content,
    contentJson: stored.contentJson,
    seq,
    parentMessageId: m.parentMessageId ?? null,
    clientId: stored.clientId,
    fingerprint: isOpen(status) ? null : fingerprintOf(stored),
    tokensIn: m.tokensIn ?? null,
    tokensOut: m.tokensOut ?? null,
    tokensSource: m.tokensSource ?? null,
    // From the upstream, so anything: cleaned like any other text.
    finishReason: m.finishReason == null ? null : cleanText(m.finishReason),
    toolCalls: stored.toolCalls,
    functionCall: stored.functionCall,
    createdAt: now,
    updatedAt: now,
    leaseOwner: m.lease?.holder ?? null,
    leaseExpiresAt: m.lease?.expiresAt ?? null,
    cancelRequestedAt: null,
  };
}


/**
 * The rows an import inserts: the conversation under `id` (the file's, or a new one when that is
 * another owner's), and its messages with seqs 1..n, each keeping its id unless `takenMessageIds`
 * has it (then a new one, and parent ids that pointed to it follow). Times are the file's.
 */
export function importedRows(owner: Principal, input: ImportedConversation, id: string, takenMessageIds: ReadonlySet<string>) {
  const renamed = id !== input.id;
  const conversation: Conversation = {
    ...conversationRow(owner, input, input.messages.length, input.createdAt),
    id,
    updatedAt: input.updatedAt,
    deletedAt: input.deletedAt,
    importSourceId: renamed ? (input.sourceId ?? input.id) : input.sourceId,
  };
  const newIds = new Map<string, string>();
  for (const m of input.messages) if (takenMessageIds.has(m.id)) newIds.set(m.id, crypto.randomUUID());
  const idOf = (old: string) => newIds.get(old) ?? old;
  // A file from before branches names no parents: its messages are one chain. A parent the file
  // does not hold (left out, as redacted system prompts are) is replaced by the message before.
  const legacy = input.messages.every((m) => m.parentMessageId == null);
  const inFile = new Set(input.messages.map((m) => m.id));
  const rows = input.messages.map((m, i) => {
    const before = i > 0 ? idOf(input.messages[i - 1]!.id) : null;
    const parent = legacy || (m.parentMessageId != null && !inFile.has(m.parentMessageId)) ? before : m.parentMessageId == null ? null : idOf(m.parentMessageId);
    return { ...messageRow(id, i + 1, { ...m, id: idOf(m.id), parentMessageId: parent, lease: null }, m.createdAt), updatedAt: m.updatedAt };
  });
  const named = input.activeMessageId != null && inFile.has(input.activeMessageId) ? idOf(input.activeMessageId) : null;
  conversation.activeMessageId = named ?? rows.at(-1)?.id ?? null;
  return { conversation, rows };
}

/** The ids an import recognises a conversation by: its id in the file and the id it came from. */
export const importSourceIds = (input: ImportedConversation): string[] => [input.id, ...(input.sourceId && input.sourceId !== input.id ? [input.sourceId] : [])];

/** Limits an import is checked against: a deleted conversation adds to no live count. */
export function importLimits(input: ImportedConversation, limits: WriteLimits): WriteLimits {
  return input.deletedAt ? { maxMessages: limits.maxMessages } : limits;
}

/**
 * Whom a principal's rows belong to: a signed-in user owns what carries its user id, whichever
 * session created it; an anonymous session owns only its rows that carry no user. This is the
 * one place that decides it; every owner filter of either store is built from it.
 */
export type Owner<V = string> = { by: 'user'; userId: V } | { by: 'session'; sessionId: V };
export function ownerOf(principal: Principal): Owner {
  return principal.userId ? { by: 'user', userId: principal.userId } : { by: 'session', sessionId: principal.sessionId };
}

/**
 * The owner filter, in Drizzle expressions that either dialect's columns accept. Values may be
 * placeholders, for statements prepared once per kind of owner.
 */
export function ownedBy(table: { sessionId: AnyColumn; userId: AnyColumn }, owner: Principal | Owner<string | Placeholder>): SQL {
  const who = 'by' in owner ? owner : ownerOf(owner);
  return who.by === 'user' ? eq(table.userId, who.userId) : (and(eq(table.sessionId, who.sessionId), isNull(table.userId)) as SQL);
}

/** The principal who owns a conversation row: its user, else the session that made it. */
export const ownerOfRow = (row: { sessionId: string; userId: string | null }): Principal => ({ sessionId: row.sessionId, userId: row.userId });

/** The tables access is decided from, in either dialect. */
export interface AccessTables {
  conversations: Table & { id: AnyColumn; sessionId: AnyColumn; userId: AnyColumn };
  shares: Table & { conversationId: AnyColumn; userId: AnyColumn; role: AnyColumn };
}

/**
 * Who may read a conversation, and as what: its owner (ownedBy), or a user it is shared with,
 * as the share's role. Shares are between users: an anonymous session reads only its own.
 * `scope` narrows to owned or shared conversations. Values may be placeholders (prepared statements).
 */
export function readableBy(t: AccessTables, reader: Principal | Owner<string | Placeholder>, scope: ListOptions['scope'] = 'all'): SQL {
  const who = 'by' in reader ? reader : ownerOf(reader);
  const owned = ownedBy(t.conversations, who);
  if (who.by === 'session') return scope === 'shared' ? sql`1 = 0` : owned;
  const shared = sql`exists (select 1 from ${t.shares} where ${t.shares.conversationId} = ${t.conversations.id} and ${t.shares.userId} = ${who.userId})`;
  if (scope === 'owned') return owned;
  if (scope === 'shared') return shared;
  return sql`(${owned} or ${shared})`;
}

/** The reader's access to each row readableBy() lets through: 'owner', else its share's role. */
export function accessOf(t: AccessTables, reader: Principal | Owner<string | Placeholder>): SQL<Access> {
  const who = 'by' in reader ? reader : ownerOf(reader);
  if (who.by === 'session') return sql<Access>`'owner'`;
  return sql<Access>`case when ${t.conversations.userId} = ${who.userId} then 'owner' else (select ${t.shares.role} from ${t.shares} where ${t.shares.conversationId} = ${t.conversations.id} and ${t.shares.userId} = ${who.userId}) end`;
}

/**
 * The conversation's answer being generated now (`streaming_message_id`): the latest of its
 * messages with status `streaming`, found through the partial index messages_streaming_idx,
 * which holds in-flight rows only.
 */
export function streamingMessageOf(t: {
  conversations: Table & { id: AnyColumn };
  messages: Table & { id: AnyColumn; conversationId: AnyColumn; status: AnyColumn; seq: AnyColumn };
}): SQL<string | null> {
  // Spelled out in full: Drizzle leaves columns unqualified in a one-table select, and the
  // subquery's "id" would then be its own.
  const m = sql.identifier('streaming_m');
  const c = sql.identifier(getTableName(t.conversations));
  const of = (table: ReturnType<typeof sql.identifier>, column: AnyColumn) => sql`${table}.${sql.identifier(column.name)}`;
  const { messages } = t;
  return sql<string | null>`(select ${of(m, messages.id)} from ${messages} as ${m} where ${of(m, messages.conversationId)} = ${of(c, t.conversations.id)} and ${of(m, messages.status)} = 'streaming' order by ${of(m, messages.seq)} desc limit 1)`;
}

/**
 * Where a message stands once someone asks to stop it: the request is noted, and a message no
 * live process holds (lease expired, or none) is closed as cancelled on the spot, since no writer
 * is left to notice. The same rule as sweepOrphans, so the two agree on who is gone.
 */
export function cancelColumns(m: { status: AnyColumn; finishReason: AnyColumn; leaseOwner: AnyColumn; leaseExpiresAt: AnyColumn; cancelRequestedAt: AnyColumn }, now: SQL) {
  const gone = sql`(${m.leaseExpiresAt} is null or ${m.leaseExpiresAt} < ${now})`;
  return {
    cancelRequestedAt: sql`coalesce(${m.cancelRequestedAt}, ${now})`,
    status: sql`case when ${gone} then 'error' else ${m.status} end`,
    finishReason: sql`case when ${gone} then 'cancelled' else ${m.finishReason} end`,
    leaseOwner: sql`case when ${gone} then null else ${m.leaseOwner} end`,
    leaseExpiresAt: sql`case when ${gone} then null else ${m.leaseExpiresAt} end`,
  };
}

/** Newest first, keyset on (created_at, id) so equal timestamps still page stably. */
export function listFilter(
  t: AccessTables & { conversations: { createdAt: AnyColumn; deletedAt: AnyColumn } },
  reader: Principal,
  options: ListOptions,
): SQL {
  return and(readableBy(t, reader, options.scope), pageFilter(t.conversations, options)) as SQL;
}

/** listFilter without the reader: deleted ones or not, and the keyset position. */
export function pageFilter(
  table: { id: AnyColumn; createdAt: AnyColumn; deletedAt: AnyColumn },
  options: Omit<ListOptions, 'scope' | 'limit'>,
): SQL | undefined {
  const conditions: (SQL | undefined)[] = [];
  if (!options.includeDeleted) conditions.push(isNull(table.deletedAt));
  if (options.after) {
    const { createdAt, id } = options.after;
    conditions.push(or(lt(table.createdAt, createdAt), and(eq(table.createdAt, createdAt), lt(table.id, id))));
  }
  return and(...conditions);
}

/**
 * Bytes messages count towards their owner's MAX_BYTES_PER_SESSION, as the database triggers
 * count them: UTF-8 of the content plus the compact JSON text of the JSON columns; a message
 * still open counts once finished. Give it rows as stored (messageRow: text already cleaned,
 * so U+0000 counts the 3 bytes of the U+FFFD that replaces it).
 */
export function storedBytesOf(messages: NewMessage[]): number {
  let bytes = 0;
  for (const m of messages) {
    if (m.status === 'draft' || m.status === 'streaming') continue;
    bytes += Buffer.byteLength(m.content ?? '');
    for (const json of [m.contentJson, m.toolCalls, m.functionCall]) if (json != null) bytes += Buffer.byteLength(JSON.stringify(json));
  }
  return bytes;
}

export interface WriteLimits {
  /** Live conversations of the owner. */
  maxPerSession?: number;
  /** Messages of the conversation written to. */
  maxMessages?: number;
  /** Bytes of the owner's live conversations (storedBytesOf). */
  maxBytes?: number;
}

/** What the owner holds before the write: live conversations, the conversation's last seq, live bytes. */
export interface Holdings {
  conversations: number;
  lastSeq: number;
  bytes: number;
}

/**
 * The most the owner may hold for `adding` to fit under every limit (MAX_SAFE_INTEGER where
 * there is none): the limits as ceilings, for a statement that checks them in SQL.
 */
export function headroom(adding: NewMessage[], limits: WriteLimits): Holdings {
  const none = Number.MAX_SAFE_INTEGER;
  return {
    conversations: limits.maxPerSession === undefined ? none : limits.maxPerSession - 1,
    lastSeq: limits.maxMessages === undefined ? none : limits.maxMessages - adding.length,
    bytes: limits.maxBytes === undefined ? none : limits.maxBytes - storedBytesOf(adding),
  };
}

/**
 * Throws LimitExceededError for the first limit that writing `adding` would pass: the
 * conversation cap, then messages, then bytes. Only the limits given are checked, each against
 * what the caller read inside the write's transaction.
 */
export function assertWithinLimits(held: Partial<Holdings>, adding: NewMessage[], limits: WriteLimits): void {
  const most = headroom(adding, limits);
  if (limits.maxPerSession !== undefined && (held.conversations ?? 0) > most.conversations) {
    throw new LimitExceededError('conversations_per_session', limits.maxPerSession);
  }
  if (limits.maxMessages !== undefined && (held.lastSeq ?? 0) > most.lastSeq) throw new LimitExceededError('messages_per_conversation', limits.maxMessages);
  if (limits.maxBytes !== undefined && (held.bytes ?? 0) > most.bytes) throw new LimitExceededError('bytes_per_session', limits.maxBytes);
}

/** User agents are kept for operators' curiosity, not as a free store: cut to 256 characters. */
export const USER_AGENT_MAX_CHARS = 256;
export function sessionColumns(session: SessionInfo | undefined): { userAgent: string | null; ipHash: string | null } {
  const agent = session?.userAgent;
  return { userAgent: agent == null ? null : cleanText(agent.slice(0, USER_AGENT_MAX_CHARS)), ipHash: session?.ipHash ?? null };
}

/**
 * An idle session may go once nothing is left of it: no conversation (deleted ones included,
 * until purged) and no refusal of consent, which must outlive the session's data.
 */
export function sessionHasNothingLeft(
  sessionsTable: { id: AnyColumn; consent: AnyColumn },
  conversationsTable: Table & { sessionId: AnyColumn },
): SQL {
  return sql`(${sessionsTable.consent} is null or ${sessionsTable.consent} <> 'denied') and not exists (select 1 from ${conversationsTable} where ${conversationsTable.sessionId} = ${sessionsTable.id})`;
}

// ---------- The message tree: what both dialects run to match, read and steer branches ----------

/** What planning a turn needs of a stored message (the row of treeNodes), status to tell open ones. */
export type TreeRow = TreeNode & { status: Message['status'] };

/**
 * A turn as rows: the request matched against the tree (planTurn), the rest of it and the answer
 * as a chain after the match, with seqs after the conversation's counter. The request's own
 * `parentMessageId`s are ignored: where its messages go is what matching decides.
 */
export function turnRows(conversation: Pick<Conversation, 'id' | 'lastSeq' | 'activeMessageId'>, nodes: readonly TreeNode[], turn: ChatTurn, now: Date) {
  const steps = turn.messages.map((m) => {
    const stored = storedForm(m);
    return { fingerprint: fingerprintOf(stored), clientId: stored.clientId };
  });
  const plan = planTurn(nodes, conversation.activeMessageId, steps);
  const rest = turn.messages.slice(plan.matched.length).map(({ parentMessageId: _, ...m }) => m);
  const chain = turn.answer ? [...rest, (({ parentMessageId: _, ...m }) => m)(turn.answer)] : rest;
  const rows = chainRows(conversation.id, conversation.lastSeq + 1, chain, plan.parentId, now);
  const path = [...plan.matched, ...rows.slice(0, rest.length).map((r) => r.id)];
  const answerParentId = path.at(-1) ?? null;
  const recorded: Omit<RecordedTurn, 'inserted'> = { path, matched: plan.matched.length, answerParentId };
  return { rows, adopt: plan.adopt, pending: plan.pending, recorded, activeMessageId: rows.at(-1)?.id ?? answerParentId ?? conversation.activeMessageId };
}

/**
 * The tree's queries, in SQL both dialects accept (double-quoted names, WITH RECURSIVE). Every
 * walk stays inside one conversation and goes strictly down (or up) in seq, so it ends even on
 * rows that were imported with parents pointing anywhere.
 */
export const treeSql = {
  /** The conversation's active leaf. */
  activeLeaf: (conversationId: string) => sql`(select "active_message_id" from "conversations" where "id" = ${conversationId})`,
  /** Ids of the messages from the root to `leaf` (an id or a subquery yielding one). */
  pathIds: (conversationId: string, leaf: SQL | string) => sql`(with recursive path(id, parent, seq) as (
      select m."id", m."parent_message_id", m."seq" from "messages" m where m."conversation_id" = ${conversationId} and m."id" = ${leaf}
      union all
      select m."id", m."parent_message_id", m."seq" from "messages" m join path on m."id" = path.parent
      where m."conversation_id" = ${conversationId} and m."seq" < path.seq
    ) select id from path)`,
  /** The newest message (highest seq) of the subtree under `messageId`: necessarily a leaf. */
  newestLeaf: (conversationId: string, messageId: string) => sql`(with recursive sub(id, seq) as (
      select m."id", m."seq" from "messages" m where m."conversation_id" = ${conversationId} and m."id" = ${messageId}
      union all
      select m."id", m."seq" from "messages" m join sub on m."parent_message_id" = sub.id
      where m."conversation_id" = ${conversationId} and m."seq" > sub.seq
    ) select id from sub order by seq desc limit 1)`,
  /** Messages with the same parent as the selected "messages" row (roots: the other roots), and those of them before it. */
  siblingCount: sql<number>`(case when "messages"."parent_message_id" is null
      then (select count(*) from "messages" s where s."conversation_id" = "messages"."conversation_id" and s."parent_message_id" is null)
      else (select count(*) from "messages" s where s."conversation_id" = "messages"."conversation_id" and s."parent_message_id" = "messages"."parent_message_id") end)`.mapWith(Number),
  siblingIndex: sql<number>`(case when "messages"."parent_message_id" is null
      then (select count(*) from "messages" s where s."conversation_id" = "messages"."conversation_id" and s."parent_message_id" is null and s."seq" < "messages"."seq")
      else (select count(*) from "messages" s where s."conversation_id" = "messages"."conversation_id" and s."parent_message_id" = "messages"."parent_message_id" and s."seq" < "messages"."seq") end)`.mapWith(Number),
};

/** The filter of a page of messages: the conversation, after a seq, and (active view) on the active path. */
export function messagePage(messagesTable: { conversationId: AnyColumn; seq: AnyColumn; id: AnyColumn }, conversationId: string, view: MessageView, afterSeq: number): SQL {
  return and(
    eq(messagesTable.conversationId, conversationId),
    gt(messagesTable.seq, afterSeq),
    view === 'active' ? sql`${messagesTable.id} in ${treeSql.pathIds(conversationId, treeSql.activeLeaf(conversationId))}` : undefined,
  ) as SQL;
}

// ---------- Idempotency-Key ----------

/** Whose keys these are: a user's across their sessions, else the session's. */
export function idempotencyOwner(principal: Principal): string {
  const who = ownerOf(principal);
  return who.by === 'user' ? `user:${who.userId}` : `session:${who.sessionId}`;
}

/** Whether a stored key may be taken by a new request: expired, or a claim whose process is gone. */
export function mayTakeOver(record: IdempotencyRecord, requestHash: string, { expiredBefore, staleBefore }: { expiredBefore: Date; staleBefore: Date }): boolean {
  if (record.createdAt < expiredBefore) return true;
  return record.status === null && record.requestHash === requestHash && record.createdAt < staleBefore;
}

/** A completion record's row, as both dialects insert it. */
export function completionRow(c: NewChatCompletion, conversationId: string, now: Date): ChatCompletionRecord {
  return {
    id: c.id,
    conversationId,
    messageId: c.messageId,
    upstreamId: c.upstreamId == null ? null : cleanText(c.upstreamId),
    model: c.model == null ? null : cleanText(c.model),
    metadata: cleanJson(c.metadata),
    createdAt: now,
  };
}

/** A response record's row, as both dialects insert it. */
export function responseRow(r: NewResponse, conversationId: string): ResponseRecord {
  return {
    id: r.id,
    conversationId,
    messageId: r.messageId,
    inputMessageIds: r.inputMessageIds,
    model: cleanText(r.model),
    instructions: r.instructions == null ? null : cleanText(r.instructions),
    previousResponseId: r.previousResponseId,
    params: cleanJson(r.params) as JsonObject,
    metadata: cleanJson(r.metadata) as StringMap,
    background: r.background,
    createdAt: r.createdAt,
  };
}

/** The tables a completion listing reads, in either dialect. */
export interface CompletionTables extends AccessTables {
  conversations: AccessTables['conversations'] & { deletedAt: AnyColumn };
  completions: Table & { id: AnyColumn; model: AnyColumn; upstreamId: AnyColumn };
}

/**
 * Completions the reader may read (owned or shared, live conversations), after `after` in the
 * listing's order, of a model and with metadata pairs (`hasPair` is the dialect's JSON test).
 * Ids sort by creation time, so the keyset is the id alone.
 */
export function completionListFilter(t: CompletionTables, reader: Principal, options: ChatCompletionListOptions, hasPair: (key: string, value: string) => SQL): SQL {
  const c = t.completions;
  const conditions: SQL[] = [readableBy(t, reader), isNull(t.conversations.deletedAt)];
  if (options.after) conditions.push(options.order === 'asc' ? gt(c.id, options.after) : lt(c.id, options.after));
  if (options.model !== undefined) conditions.push(eq(c.model, cleanText(options.model)));
  for (const [key, value] of Object.entries(options.metadata ?? {})) conditions.push(hasPair(cleanText(key), cleanText(value)));
  return and(...conditions) as SQL;
}

export const completionOrder = (t: CompletionTables, order: 'asc' | 'desc') => (order === 'asc' ? asc(t.completions.id) : desc(t.completions.id));

/** A completion looked up by the upstream's id: the reader's own first, then the most recent. */
export function upstreamIdLookup(t: CompletionTables, reader: Principal, upstreamId: string) {
  return {
    where: and(eq(t.completions.upstreamId, cleanText(upstreamId)), readableBy(t, reader), isNull(t.conversations.deletedAt)) as SQL,
    orderBy: [sql`case when ${ownedBy(t.conversations, reader)} then 0 else 1 end`, desc(t.completions.id)],
  };
}

/** The seq bounds of a page of messages (MessagePageOptions), and its order. */
export function messageSeqPage(t: { conversationId: AnyColumn; seq: AnyColumn }, conversationId: string, options: MessagePageOptions) {
  const conditions: (SQL | undefined)[] = [eq(t.conversationId, conversationId)];
  if (options.from != null) conditions.push(options.order === 'asc' ? sql`${t.seq} >= ${options.from}` : sql`${t.seq} <= ${options.from}`);
  if (options.below != null) conditions.push(lt(t.seq, options.below));
  return { where: and(...conditions) as SQL, orderBy: options.order === 'asc' ? asc(t.seq) : desc(t.seq) };
}
