import { asc, count, getTableColumns, type AnyColumn } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import type { PgTable } from 'drizzle-orm/pg-core';
import postgres from 'postgres';
import { keyColumns, keyIn, keyOf, keyAfter, type Row, type TableAccess, type TableName } from '../copy.js';
import * as schema from './schema.js';

const TABLES: Record<TableName, PgTable> = {
  users: schema.users,
  api_keys: schema.apiKeys,
  sessions: schema.sessions,
  conversations: schema.conversations,
  messages: schema.messages,
  conversation_shares: schema.conversationShares,
  share_links: schema.shareLinks,
  chat_completions: schema.chatCompletions,
  responses: schema.responses,
  response_events: schema.responseEvents,
  server_settings: schema.serverSettings,
};
/** Postgres takes at most 65535 parameters in one statement. */
const MAX_PARAMS = 30_000;

/** A Postgres database's tables for npm run db:copy (db/copy.ts). */
export function pgTables(url: string): TableAccess {
  const client = postgres(url, { max: 2, onnotice: () => {}, connect_timeout: 10, fetch_types: false });
  const db = drizzle(client, { schema });
  const keysOf = (name: TableName) => {
    const columns = getTableColumns(TABLES[name]) as Record<string, AnyColumn>;
    return keyColumns(name).map((k) => columns[k]!);
  };
  return {
    columns(name) {
      return Object.entries(getTableColumns(TABLES[name]))
        .filter(([, column]) => !column.generated && !column.generatedIdentity)
        .map(([key]) => key);
    },
    async page(name, after, limit) {
      const keys = keysOf(name);
      return (await db
        .select()
        .from(TABLES[name])
        .where(after ? keyAfter(keys, after) : undefined)
        .orderBy(...keys.map((k) => asc(k)))
        .limit(limit)) as Row[];
    },
    async existing(name, keys) {
      const columns = keysOf(name);
      const found = new Set<string>();
      const chunk = Math.floor(MAX_PARAMS / columns.length);
      for (let i = 0; i < keys.length; i += chunk) {
        const rows = (await db
          .select(Object.fromEntries(columns.map((c, j) => [`k${j}`, c])) as never)
          .from(TABLES[name])
          .where(keyIn(columns, keys.slice(i, i + chunk)))) as Row[];
        for (const row of rows) found.add(keyOf(columns.map((_, j) => row[`k${j}`])));
      }
      return found;
    },
    async insert(name, rows) {
      const table = TABLES[name];
      const chunk = Math.max(1, Math.floor(MAX_PARAMS / Object.keys(getTableColumns(table)).length));
      await db.transaction(async (tx) => {
        for (let i = 0; i < rows.length; i += chunk) await tx.insert(table).values(rows.slice(i, i + chunk) as never).onConflictDoNothing();
      });
    },
    async count(name) {
      const [row] = await db.select({ n: count() }).from(TABLES[name]);
      return row!.n;
    },
    async close() {
      await client.end({ timeout: 5 });
    },
  };
}
