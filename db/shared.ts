import { and, eq, isNull, lt, or, type AnyColumn, type SQL } from 'drizzle-orm';
import type { Conversation, Json, JsonObject, ListOptions, NewConversation, NewMessage, Principal } from './store.js';

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
    finishReason: m.finishReason ?? null,
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
