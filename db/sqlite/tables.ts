import Database from 'better-sqlite3';
import { asc, count, getTableColumns, type AnyColumn } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/better-sqlite3';
import type { SQLiteTable } from 'drizzle-orm/sqlite-core';
import { keyColumns, keyIn, keyOf, keyAfter, type Row, type TableAccess, type TableName } from '../copy.js';
import * as schema from './schema.js';
import { registerSearchFunctions } from './search-index.js';

const TABLES: Record<TableName, SQLiteTable> = {
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
/** Bound parameters per statement stay well under SQLite's limit (32766). */
const MAX_PARAMS = 16_000;

/** A SQLite database's tables for npm run db:copy (db/copy.ts). */
export function sqliteTables(path: string): TableAccess {
  const client = new Database(path);
  client.pragma('journal_mode = WAL');
  client.pragma('busy_timeout = 5000');
  client.pragma('foreign_keys = ON');
  // The search index's triggers call it as messages and titles are written.
  registerSearchFunctions(client);
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
      return db
        .select()
        .from(TABLES[name])
        .where(after ? keyAfter(keys, after) : undefined)
        .orderBy(...keys.map((k) => asc(k)))
        .limit(limit)
        .all() as Row[];
    },
    async existing(name, keys) {
      const columns = keysOf(name);
      const found = new Set<string>();
      const chunk = Math.floor(MAX_PARAMS / columns.length);
      for (let i = 0; i < keys.length; i += chunk) {
        const rows = db
          .select(Object.fromEntries(columns.map((c, j) => [`k${j}`, c])) as never)
          .from(TABLES[name])
          .where(keyIn(columns, keys.slice(i, i + chunk)))
          .all() as Row[];
        for (const row of rows) found.add(keyOf(columns.map((_, j) => row[`k${j}`])));
      }
      return found;
    },
    async insert(name, rows) {
      const table = TABLES[name];
      const chunk = Math.max(1, Math.floor(MAX_PARAMS / Object.keys(getTableColumns(table)).length));
      client.transaction(() => {
        for (let i = 0; i < rows.length; i += chunk) db.insert(table).values(rows.slice(i, i + chunk) as never).onConflictDoNothing().run();
      })();
    },
    async count(name) {
      return db.select({ n: count() }).from(TABLES[name]).get()!.n;
    },
    async close() {
      if (client.open) client.close();
    },
  };
}
