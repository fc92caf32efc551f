import { and, eq, gt, isNull, or, sql, type AnyColumn, type SQL, type Table } from 'drizzle-orm';
import { cleanText } from './shared.js';
import type { ApiKey, ListPosition, NewApiKey, NewUser, User } from './store.js';

/** Oldest first, keyset on (created_at, id): the rows after `after`, or all when null. */
export function keysetAfter(table: { createdAt: AnyColumn; id: AnyColumn }, after: ListPosition | null | undefined): SQL | undefined {
  if (!after) return undefined;
  return or(gt(table.createdAt, after.createdAt), and(eq(table.createdAt, after.createdAt), gt(table.id, after.id)));
}

/**
 * What erasing a user deletes of the conversations: those carrying the user's id, and the
 * anonymous ones made in a session the user has signed in from (the same person's browser).
 */
export function erasableConversations(
  t: { conversations: { userId: AnyColumn; sessionId: AnyColumn }; sessions: Table & { id: AnyColumn; userId: AnyColumn } },
  userId: string,
): SQL {
  return or(
    eq(t.conversations.userId, userId),
    and(isNull(t.conversations.userId), sql`${t.conversations.sessionId} in (select ${t.sessions.id} from ${t.sessions} where ${t.sessions.userId} = ${userId})`),
  )!;
}

/** The column usage rows are grouped by: the day (the dialect's expression), the model, or none. */
export function usageKey(groupBy: 'day' | 'model' | null, columns: { day: SQL<string>; model: AnyColumn }): SQL<string | null> {
  if (groupBy === 'day') return columns.day;
  if (groupBy === 'model') return sql<string | null>`${columns.model}`;
  return sql<string | null>`null`;
}

/** A new user's row, as both dialects insert it. */
export function userRow(input: NewUser): User {
  return {
    id: crypto.randomUUID(),
    name: cleanText(input.name),
    issuer: input.issuer == null ? null : cleanText(input.issuer),
    subject: input.subject == null ? null : cleanText(input.subject),
    isAdmin: input.isAdmin ?? false,
    createdAt: new Date(),
  };
}

/** A new API key's row, as both dialects insert it (the key itself is never part of it). */
export function apiKeyRow(input: NewApiKey): ApiKey {
  return {
    id: crypto.randomUUID(),
    userId: cleanText(input.userId),
    name: input.name == null ? null : cleanText(input.name),
    prefix: input.prefix,
    hash: input.hash,
    createdAt: new Date(),
    lastUsedAt: null,
    expiresAt: input.expiresAt ?? null,
    revokedAt: null,
  };
}

/** A user's Idempotency-Keys, and those of the sessions they signed in from (see idempotencyOwner). */
export function erasedKeys(keys: { owner: AnyColumn }, sessionsTable: Table & { id: AnyColumn; userId: AnyColumn }, userId: string): SQL {
  return sql`(${keys.owner} = ${`user:${userId}`} or ${keys.owner} in (select 'session:' || ${sessionsTable.id} from ${sessionsTable} where ${sessionsTable.userId} = ${userId}))`;
}
