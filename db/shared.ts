import { and, eq, isNull, lt, or, sql, type AnyColumn, type SQL, type Table } from 'drizzle-orm';
import type { Conversation, Json, JsonObject, ListOptions, NewConversation, NewMessage, Principal, SessionInfo } from './store.js';

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
  return {
    id: crypto.randomUUID(),
    sessionId: owner.sessionId,
    userId: owner.userId,
    title: input.title == null ? null : cleanText(input.title),
    model: input.model == null ? null : cleanText(input.model),
    metadata: cleanJson(input.metadata ?? {}),
    lastSeq,
    storedBytes: 0,
    createdAt: now,
    updatedAt: now,
    deletedAt: null,
  };
}

/** The message row to insert, shared by both dialects (seq and ids are decided by the caller). */
export function messageRow(conversationId: string, seq: number, m: NewMessage, now: Date) {
  return {
    id: m.id ?? crypto.randomUUID(),
    conversationId,
    role: m.role,
    status: m.status ?? 'final',
    content: cleanText(m.content ?? ''),
    contentJson: cleanJson(m.contentJson ?? null),
    seq,
    parentMessageId: m.parentMessageId ?? null,
    tokensIn: m.tokensIn ?? null,
    tokensOut: m.tokensOut ?? null,
    tokensSource: m.tokensSource ?? null,
    // From the upstream, so anything: cleaned like any other text.
    finishReason: m.finishReason == null ? null : cleanText(m.finishReason),
    toolCalls: cleanJson(m.toolCalls ?? null),
    functionCall: cleanJson(m.functionCall ?? null),
    createdAt: now,
    updatedAt: now,
    leaseOwner: m.lease?.owner ?? null,
    leaseExpiresAt: m.lease?.expiresAt ?? null,
  };
}


/** The owner filter, in Drizzle expressions that either dialect's columns accept. */
export function ownedBy(table: { sessionId: AnyColumn; userId: AnyColumn }, owner: Principal): SQL {
  return owner.userId
    ? eq(table.userId, owner.userId)
    : (and(eq(table.sessionId, owner.sessionId), isNull(table.userId)) as SQL);
}

/** Newest first, keyset on (created_at, id) so equal timestamps still page stably. */
export function listFilter(
  table: { sessionId: AnyColumn; userId: AnyColumn; createdAt: AnyColumn; id: AnyColumn; deletedAt: AnyColumn },
  owner: Principal,
  options: ListOptions,
): SQL {
  const conditions: (SQL | undefined)[] = [ownedBy(table, owner)];
  if (!options.includeDeleted) conditions.push(isNull(table.deletedAt));
  if (options.after) {
    const { createdAt, id } = options.after;
    conditions.push(or(lt(table.createdAt, createdAt), and(eq(table.createdAt, createdAt), lt(table.id, id))));
  }
  return and(...conditions) as SQL;
}

/**
 * Bytes a message will count towards its owner's MAX_BYTES_PER_SESSION, as the database triggers
 * count them (text and JSON columns in UTF-8); a message still streaming counts once finished.
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
