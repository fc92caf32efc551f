import type Database from 'better-sqlite3';
import { searchText } from '../search-text.js';

/** Registers what the search index triggers call (drizzle/sqlite/0005_search.sql) on a connection. */
export function registerSearchFunctions(client: Database.Database): void {
  client.function('chat_proxy_search_text', { deterministic: true }, (v: unknown) => (v == null ? null : searchText(String(v))));
}

/**
 * Rebuilds the search index from the messages and titles, as the migration first filled it: for
 * a copy of the database whose conversations got new rowids (the index's rowids are made from
 * them). Returns how many entries it wrote.
 */
export function rebuildSearchIndex(client: Database.Database): number {
  registerSearchFunctions(client);
  return client.transaction(() => {
    client.prepare(`INSERT INTO search_index (search_index) VALUES ('delete-all')`).run();
    const messages = client
      .prepare(
        `INSERT INTO search_index (rowid, body)
         SELECT c.rowid * 4294967296 + m.seq, chat_proxy_search_text(m.content)
         FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.content <> ''`,
      )
      .run().changes;
    const titles = client
      .prepare(`INSERT INTO search_index (rowid, body) SELECT rowid * 4294967296, chat_proxy_search_text(title) FROM conversations WHERE title <> ''`)
      .run().changes;
    return messages + titles;
  }).immediate();
}
