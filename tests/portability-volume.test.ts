import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPORT_PAGE } from '../app/portability/export.js';
import { bulkSeedSql } from '../bench/seed-messages.js';
import type { Store } from '../db/store.js';
import { newSession, testApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { sessionPrincipal } from './helpers/portability.js';

/*
 * A 100,000-message export streams with flat memory: the server reads the database a page at a
 * time, only as the client reads, so the rows it holds ahead of the client never pass two pages
 * however large the export. (npm run bench:export measures the heap of the same export; the
 * README has its figures.)
 */
const CONVERSATIONS = 100;
const PER_CONVERSATION = 1_000;
const MESSAGES = CONVERSATIONS * PER_CONVERSATION;

/** The store, counting the message rows it has handed out. */
function counting(store: Store) {
  const seen = { messages: 0 };
  const wrapped = Object.assign(Object.create(store) as Store, {
    listMessages: (async (id, options) => {
      const rows = await store.listMessages(id, options);
      seen.messages += rows.length;
      return rows;
    }) satisfies Store['listMessages'],
  });
  return { store: wrapped, seen };
}

describe.each(dialects)('a 100,000-message export on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  const session = newSession();

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    // Bulk SQL, not HTTP.
    for (const statement of bulkSeedSql(dialect, { conversations: CONVERSATIONS, perConversation: PER_CONVERSATION, sessionHash: sessionPrincipal(session).sessionId })) await db.sql(statement);
  }, 60_000);
  afterAll(async () => {
    await db?.cleanup();
  });

  it('streams page by page, reading the database only as the client reads', async () => {
    const { store, seen } = counting(db.store);
    const app = testApp(store);
    const res = await app.request('/v1/conversations/export', { headers: { 'x-session-id': session } });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let delivered = 0;
    let conversations = 0;
    let bytes = 0;
    let mostAhead = 0;
    let tail = '';
    let lastSeq = 0;
    for (let chunk = 0; ; chunk++) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
      const text = tail + decoder.decode(value, { stream: true });
      const lines = text.split('\n');
      tail = lines.pop()!;
      for (const line of lines) {
        if (line.startsWith('{"type":"message"')) {
          delivered += 1;
          const seq = Number(/"seq":(\d+)/.exec(line)![1]);
          expect(seq).toBe(lastSeq + 1);
          lastSeq = seq;
        } else if (line.startsWith('{"type":"conversation"')) {
          conversations += 1;
          lastSeq = 0;
        }
      }
      mostAhead = Math.max(mostAhead, seen.messages - delivered);
      if (chunk === 10) {
        // A client that stops reading stops the reads: nothing more is fetched meanwhile.
        const before = seen.messages;
        await new Promise((r) => setTimeout(r, 100));
        expect(seen.messages).toBe(before);
      }
    }
    expect(tail).toBe('');
    expect([conversations, delivered]).toEqual([CONVERSATIONS, MESSAGES]);
    expect(seen.messages).toBe(MESSAGES);
    expect(bytes).toBeGreaterThan(40 * 1024 * 1024);
    // Never more than a page of messages and one chunk of text ahead of the client.
    expect(mostAhead).toBeLessThanOrEqual(2 * EXPORT_PAGE.messages);
    console.info(`${dialect}: ${(bytes / 1024 / 1024).toFixed(1)} MB exported; at most ${mostAhead} messages read ahead of the client`);
  }, 60_000);

  it('stops reading the database when the client goes away', async () => {
    const { store, seen } = counting(db.store);
    const res = await testApp(store).request('/v1/conversations/export', { headers: { 'x-session-id': session } });
    const reader = res.body!.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    await reader.cancel();
    const after = seen.messages;
    await new Promise((r) => setTimeout(r, 100));
    expect(seen.messages).toBe(after);
    expect(after).toBeLessThanOrEqual(2 * EXPORT_PAGE.messages);
  });
});
