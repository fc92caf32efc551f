import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { MAX_RANKED_MATCHES, parseSearchQuery } from '../db/search-query.js';
import { CJK_RANGES } from '../db/search-text.js';
import { rebuildSearchIndex } from '../db/sqlite/search-index.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { anyText, SPECIAL_STRINGS } from './helpers/fuzz-inputs.js';
import { useMockUpstream } from './helpers/mock.js';
import { signedInUser, type TestUser } from './helpers/users.js';

const mock = useMockUpstream();
const root = resolve(import.meta.dirname, '..');

interface Hit {
  conversation_id: string;
  conversation_title: string | null;
  message_id: string | null;
  seq: number | null;
  role: string | null;
  snippet: string;
  highlights: [number, number][];
  created_at: string;
}

describe.each(dialects)('search on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url, MAX_CONVERSATIONS_PER_SESSION: '1000' });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  type Caller = { session?: string; headers?: Record<string, string> };
  const as = (who: Caller | TestUser): Caller => ('auth' in who ? { headers: who.auth } : who);

  async function conversation(who: Caller | TestUser, title: string | null, ...contents: string[]): Promise<{ id: string; messages: string[] }> {
    const made = await call(app, 'POST', '/v1/conversations', { ...as(who), body: { title } });
    expect(made.status).toBe(201);
    const messages: string[] = [];
    for (const content of contents) {
      const m = await call(app, 'POST', `/v1/conversations/${made.json.id}/messages`, { ...as(who), body: { role: 'user', content } });
      expect(m.status).toBe(201);
      messages.push(m.json.id);
    }
    return { id: made.json.id, messages };
  }

  async function search(who: Caller | TestUser, q: string, extra: Record<string, string> = {}) {
    const params = new URLSearchParams({ q, ...extra });
    return call(app, 'GET', `/v1/conversations/search?${params}`, as(who));
  }
  /** The hits' snippets, in order, after checking the answer's shape. */
  async function found(who: Caller | TestUser, q: string, extra: Record<string, string> = {}): Promise<Hit[]> {
    const res = await search(who, q, extra);
    expect(res.status, res.text).toBe(200);
    expect(res.json).toMatchObject({ object: 'list', next_cursor: expect.toSatisfy((v) => v === null || typeof v === 'string') });
    for (const hit of res.json.data as Hit[]) checkHit(hit);
    return res.json.data;
  }
  const highlighted = (hit: Hit) => hit.highlights.map(([a, b]) => hit.snippet.slice(a, b));

  it('finds messages by their words, best match first, with a plain-text snippet and highlight ranges', async () => {
    const s = { session: newSession() };
    const c = await conversation(
      s,
      'Bread',
      'How long should sourdough rise before baking?',
      'Sourdough, sourdough, sourdough: the starter needs feeding every day.',
      'A long answer about flour, water, salt and time, in which sourdough appears once among many other words about baking bread at home.',
    );
    const hits = await found(s, 'sourdough');
    expect(hits.map((h) => h.message_id)).toEqual([c.messages[1], c.messages[0], c.messages[2]]);
    expect(hits[0]).toMatchObject({ conversation_id: c.id, conversation_title: 'Bread', seq: 2, role: 'user' });
    expect(highlighted(hits[0]!)).toEqual(['Sourdough', 'sourdough', 'sourdough']);
    expect(hits[0]!.snippet).toBe('Sourdough, sourdough, sourdough: the starter needs feeding every day.');
    // Every word must appear; order does not matter unless quoted.
    expect((await found(s, 'starter sourdough')).map((h) => h.message_id)).toEqual([c.messages[1]]);
    expect(await found(s, 'sourdough pizza')).toEqual([]);
  });

  it('takes quoted phrases and prefix*, and searches any other syntax as plain words', async () => {
    const s = { session: newSession() };
    const c = await conversation(s, null, 'The quick brown fox jumps over the lazy dog', 'A brown quick fox, the other way round', 'Quickly, quicker, quickest');
    expect((await found(s, '"quick brown fox"')).map((h) => h.message_id)).toEqual([c.messages[0]]);
    expect((await found(s, '"brown quick"')).map((h) => h.message_id)).toEqual([c.messages[1]]);
    // A phrase that is never closed runs to the end.
    expect((await found(s, '"lazy dog')).map((h) => h.message_id)).toEqual([c.messages[0]]);
    const prefixed = await found(s, 'quick*');
    expect(prefixed.map((h) => h.message_id).sort()).toEqual([...c.messages].sort());
    expect(highlighted(prefixed.find((h) => h.message_id === c.messages[2])!)).toEqual(['Quickly', 'quicker', 'quickest']);
    expect((await found(s, '"the lazy do"*')).map((h) => h.message_id)).toEqual([c.messages[0]]);
    // A one-letter prefix would match most of the index: it is searched as the word.
    expect(await found(s, 'q*')).toEqual([]);
    // Operators of FTS5 and tsquery are words here: all of them must appear, so nothing matches.
    for (const q of ['quick OR slow', 'quick NOT fox', 'NEAR(quick fox)', 'fox -quick', 'quick | fox', 'quick & !fox', 'body:fox', '^quick', 'quick:*']) {
      const res = await search(s, q);
      expect(res.status, q).toBe(200);
    }
    expect(await found(s, 'quick OR slow')).toEqual([]);
    // A trailing * makes a prefix whatever comes before it.
    expect((await found(s, 'quick:*')).length).toBe(3);
    // Punctuation separates words, as in the text.
    expect((await found(s, 'fox, (jumps)!')).map((h) => h.message_id)).toEqual([c.messages[0]]);
    // Only punctuation or emoji: nothing to look for, nothing found.
    for (const q of ['!!!', '"""', '*', '🦊', '(){}[]']) expect(await found(s, q), q).toEqual([]);
  });

  it('finds accented, CJK, Korean and emoji-laden text by its words, whichever way the accents are typed', async () => {
    const s = { session: newSession() };
    const c = await conversation(
      s,
      null,
      'Un café crème à Łódź, naïvement',
      '今天天气很好，我们去公园吧',
      '我用Python写了一个脚本',
      '東京の天気は晴れです',
      '학교에 갔어요',
      'Party time 🎉🎉 with confetti🎊everywhere',
      'cafe\u0301 written with a combining accent',
    );
    const ids = async (q: string) => (await found(s, q)).map((h) => h.message_id).sort();
    expect(await ids('cafe')).toEqual([c.messages[0], c.messages[6]].sort());
    expect(await ids('CAFÉ')).toEqual([c.messages[0], c.messages[6]].sort());
    expect(await ids('lodz')).toEqual([c.messages[0]]);
    expect(await ids('crème')).toEqual([c.messages[0]]);
    expect(await ids('naive*')).toEqual([c.messages[0]]);
    expect(await ids('天气')).toEqual([c.messages[1]]);
    expect(await ids('公园')).toEqual([c.messages[1]]);
    expect(await ids('天')).toEqual([c.messages[1], c.messages[3]].sort());
    expect(await ids('天気')).toEqual([c.messages[3]]);
    expect(await ids('python')).toEqual([c.messages[2]]);
    expect(await ids('脚本')).toEqual([c.messages[2]]);
    expect(await ids('학교')).toEqual([c.messages[4]]);
    expect(await ids('confetti')).toEqual([c.messages[5]]);
    expect(await ids('everywhere party')).toEqual([c.messages[5]]);
    expect(await ids('天很')).toEqual([]);
    const hit = (await found(s, '天气 公园'))[0]!;
    expect(highlighted(hit)).toEqual(['天气', '公园']);
    expect(highlighted((await found(s, 'lodz cafe'))[0]!)).toEqual(['café', 'Łódź']);
  });

  it('indexes every CJK range alike in both dialects', async () => {
    const s = { session: newSession() };
    // The first and last letter of each range (a range's ends may be unassigned code points, which no engine indexes).
    const letter = (cp: number, step: number) => {
      while (!/\p{L}/u.test(String.fromCodePoint(cp))) cp += step;
      return String.fromCodePoint(cp);
    };
    // Postgres knows letters by its C library's Unicode tables: CJK Extension H (Unicode 15) is
    // not one yet in Debian 12's, so the astral range is tested up to the end of Extension B.
    const chars = CJK_RANGES.flatMap(([a, b]) => [letter(a, 1), letter(Math.min(b, 0x2a6df), -1)]);
    const c = await conversation(s, null, ...chars.map((ch) => `x${ch}y`));
    for (const [i, ch] of chars.entries()) {
      expect((await found(s, ch)).map((h) => h.message_id), `U+${ch.codePointAt(0)!.toString(16)}`).toEqual([c.messages[i]]);
    }
  });

  it('finds conversations by title, as items without a message, and follows a rename', async () => {
    const u = await signedInUser(db.store, 'titles');
    const c = await conversation(u, 'Holiday planning for Lisbon', 'Which neighbourhood should we stay in?');
    const hits = await found(u, 'lisbon');
    expect(hits).toEqual([
      expect.objectContaining({ conversation_id: c.id, conversation_title: 'Holiday planning for Lisbon', message_id: null, seq: null, role: null, snippet: 'Holiday planning for Lisbon' }),
    ]);
    expect(highlighted(hits[0]!)).toEqual(['Lisbon']);
    expect((await call(app, 'PATCH', `/v1/conversations/${c.id}`, { headers: u.auth, body: { title: 'Porto instead' } })).status).toBe(200);
    expect(await found(u, 'lisbon')).toEqual([]);
    expect((await found(u, 'porto')).map((h) => [h.message_id, h.conversation_title])).toEqual([[null, 'Porto instead']]);
    // A message hit carries the current title too.
    expect((await found(u, 'neighbourhood'))[0]).toMatchObject({ message_id: c.messages[0], conversation_title: 'Porto instead' });
    expect((await call(app, 'PATCH', `/v1/conversations/${c.id}`, { headers: u.auth, body: { title: null } })).status).toBe(200);
    expect(await found(u, 'porto')).toEqual([]);
  });

  it('indexes streamed answers as they are written', async () => {
    const s = newSession();
    const text = 'Photosynthesis turns light into chemical energy in the chloroplasts.';
    const res = await call(app, 'POST', '/v1/chat/completions', {
      session: s,
      body: { model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'Explain plants' }], mock: { text, chunks: 7 } },
    });
    expect(res.status).toBe(200);
    const id = res.headers.get('x-conversation-id');
    await expect.poll(async () => (await found({ session: s }, 'chloroplasts')).map((h) => [h.conversation_id, h.role, h.seq])).toEqual([[id, 'assistant', 2]]);
    const [hit] = await found({ session: s }, '"light into chemical energy"');
    expect(highlighted(hit!)).toEqual(['light into chemical energy']);
    // The user's message of the exchange is there too, and the conversation, titled after it.
    expect((await found({ session: s }, 'plants')).map((h) => [h.role, h.seq]).sort()).toEqual([['user', 1], [null, null]].sort());
  });

  it('indexes an answer still streaming each time it passes 2048 bytes, and all of it when it ends or its writer dies', async () => {
    const s = newSession();
    const made = await conversation({ session: s }, null, 'start');
    const owner = { sessionId: hashSessionId(s), userId: null };
    const streaming = async () =>
      (await db.store.appendMessages(owner, made.id, [{ role: 'assistant', status: 'streaming', content: '' }], { maxMessages: 100 }))[0]!;
    const ids = async (q: string) => (await found({ session: s }, q)).map((h) => h.message_id);

    const answer = await streaming();
    await db.store.appendContent(answer.id, 'The mitochondria is the ');
    expect(await ids('mitochondria')).toEqual([]);
    // Past 2048 bytes, everything written so far is found, the last delta included.
    await db.store.appendContent(answer.id, `${'filler '.repeat(300)}powerhouse `);
    expect(await ids('mitochondria')).toEqual([answer.id]);
    expect(await ids('powerhouse')).toEqual([answer.id]);
    // Below the next multiple of 2048, a new word waits for the end of the stream.
    await db.store.appendContent(answer.id, 'of the cell');
    expect(await ids('cell')).toEqual([]);
    await db.store.finishMessage(answer.id, { status: 'final', finishReason: 'stop' });
    expect(await ids('"powerhouse of the cell"')).toEqual([answer.id]);

    // A writer that died mid-stream: the orphan sweep closes its message, and its text is found.
    const orphan = await streaming();
    await db.store.appendContent(orphan.id, 'Ribosomes build proteins');
    expect(await ids('ribosomes')).toEqual([]);
    expect(await db.store.sweepOrphans(new Date(Date.now() + 60_000))).toBeGreaterThanOrEqual(1);
    expect(await ids('ribosomes')).toEqual([orphan.id]);
  });

  it("never finds another owner's text: other sessions, other users, deleted conversations, shares that were taken back", async () => {
    const [ada, bob, eve] = await Promise.all([signedInUser(db.store, 'Ada'), signedInUser(db.store, 'Bob'), signedInUser(db.store, 'Eve')]);
    const anon = { session: newSession() };
    const secret = 'xylophonequartz';
    const adas = await conversation(ada, `Ada ${secret} title`, `Ada's ${secret} message`);
    const bobs = await conversation(bob, `Bob ${secret} title`, `Bob's ${secret} message`);
    const anons = await conversation(anon, `Anon ${secret} title`, `Anon's ${secret} message`);
    const gone = await conversation(ada, `Deleted ${secret} title`, `Deleted ${secret} message`);
    expect((await call(app, 'DELETE', `/v1/conversations/${gone.id}`, { headers: ada.auth })).status).toBe(200);

    const conversationsOf = async (who: Caller | TestUser) => [...new Set((await found(who, secret)).map((h) => h.conversation_id))].sort();
    expect(await conversationsOf(ada)).toEqual([adas.id]);
    expect(await conversationsOf(bob)).toEqual([bobs.id]);
    expect(await conversationsOf(anon)).toEqual([anons.id]);
    expect(await conversationsOf(eve)).toEqual([]);
    expect(await conversationsOf({ session: newSession() })).toEqual([]);
    // The anonymous session Ada sends along does not widen what she sees, nor does a session see her conversations.
    expect(await conversationsOf({ session: anon.session, headers: ada.auth })).toEqual([adas.id]);

    // Shared with Bob as a viewer: Bob finds it (title and message); Eve still does not.
    expect((await call(app, 'PUT', `/v1/conversations/${adas.id}/shares/${bob.user.id}`, { headers: ada.auth, body: { role: 'viewer' } })).status).toBe(200);
    const bobSees = await found(bob, secret);
    expect(bobSees.filter((h) => h.conversation_id === adas.id).map((h) => h.message_id ?? 'title').sort()).toEqual([adas.messages[0], 'title'].sort());
    expect(await conversationsOf(eve)).toEqual([]);
    // Taken back: gone from Bob's results at once.
    expect((await call(app, 'DELETE', `/v1/conversations/${adas.id}/shares/${bob.user.id}`, { headers: ada.auth })).status).toBe(204);
    expect(await conversationsOf(bob)).toEqual([bobs.id]);

    // Every word of every other conversation, one by one, finds nothing for Eve.
    for (const word of ['Ada', 'Bob', 'Anon', 'Deleted', 'message', 'title', `${secret.slice(0, 4)}*`]) expect(await found(eve, word), word).toEqual([]);
  });

  it('pages through equal matches without repeating or skipping, newest first, and ties its cursor to its query', async () => {
    const s = { session: newSession() };
    const c = await conversation(s, null, ...Array.from({ length: 7 }, () => 'identical twin text'));
    const all = (await found(s, 'twin', { limit: '50' })).map((h) => h.message_id);
    // Equal scores: newest first, then by id, which for messages written in one millisecond is any fixed order.
    expect([...all].sort()).toEqual([...c.messages].sort());
    const rows = await db.sql(`select id, created_at from messages where conversation_id = '${c.id}'`);
    const time = new Map(rows.map((r) => [String(r.id), new Date(r.created_at as string | number).getTime()]));
    for (let i = 1; i < all.length; i++) expect(time.get(all[i - 1]!)!).toBeGreaterThanOrEqual(time.get(all[i]!)!);

    const paged: string[] = [];
    let cursor: string | null = null;
    do {
      const res = await search(s, 'twin', { limit: '2', ...(cursor ? { cursor } : {}) });
      expect(res.status).toBe(200);
      expect(res.json.data.length).toBeLessThanOrEqual(2);
      paged.push(...res.json.data.map((h: Hit) => h.message_id));
      cursor = res.json.next_cursor;
    } while (cursor);
    expect(paged).toEqual(all);

    const first = await search(s, 'twin', { limit: '2' });
    const other = await search(s, 'text', { limit: '2', cursor: first.json.next_cursor });
    expect(other.status).toBe(400);
    expect(other.json.error).toMatchObject({ type: 'invalid_request_error', param: 'cursor' });
    expect(other.json.error.message).toContain('same q');
  });

  it(`ranks at most the ${MAX_RANKED_MATCHES} newest matches of a word found everywhere`, async () => {
    const s = newSession();
    const owner = { sessionId: hashSessionId(s), userId: null };
    const made = await conversation({ session: s }, null);
    const total = MAX_RANKED_MATCHES + 60;
    await db.store.appendMessages(owner, made.id, Array.from({ length: total }, (_, i) => ({ role: 'user' as const, content: `ubiquitous entry ${i + 1}` })), { maxMessages: total });
    const seqs: number[] = [];
    let after = null;
    for (;;) {
      const page = await db.store.search(owner, { query: parseSearchQuery('ubiquitous'), limit: 50, after });
      seqs.push(...page.items.map((h) => h.seq!));
      if (!page.hasMore) break;
      const last = page.items.at(-1)!;
      after = { score: last.score, createdAt: last.createdAt, id: last.messageId! };
    }
    expect(seqs).toHaveLength(MAX_RANKED_MATCHES);
    expect(Math.min(...seqs)).toBe(total - MAX_RANKED_MATCHES + 1);
    // A rarer word of an older message is still found: the bound is on matches, not on history.
    expect((await found({ session: s }, '"entry 1"')).map((h) => h.seq)).toEqual([1]);
  }, 60_000);

  it('drops a conversation from the index when it is purged', async () => {
    const s = newSession();
    const c = await conversation({ session: s }, 'Ephemeral quokka', 'The quokka smiles');
    expect((await call(app, 'DELETE', `/v1/conversations/${c.id}`, { session: s })).status).toBe(200);
    while ((await db.store.purgeExpired({ idleBefore: null, deletedBefore: new Date(Date.now() + 60_000), batchSize: 500 })).conversations > 0);
    const left =
      dialect === 'sqlite'
        ? await db.sql(`select rowid from search_index where search_index match 'quokka'`)
        : await db.sql(`select id from messages where search_vector @@ 'quokka'::tsquery`);
    expect(left).toEqual([]);
  });

  it.runIf(dialect === 'sqlite')('rebuilds the SQLite index from the messages and titles (npm run search:reindex)', async () => {
    const s = { session: newSession() };
    const c = await conversation(s, 'Rebuilt narwhal', 'A narwhal tusk', '独角鲸');
    const before = await found(s, 'narwhal');
    expect(before.map((h) => h.message_id).sort()).toEqual([c.messages[0], null].sort());
    const raw = new Database((db.target as { path: string }).path);
    try {
      raw.prepare(`insert into search_index (search_index) values ('delete-all')`).run();
      expect(await found(s, 'narwhal')).toEqual([]);
      expect(rebuildSearchIndex(raw)).toBeGreaterThanOrEqual(3);
    } finally {
      raw.close();
    }
    expect(await found(s, 'narwhal')).toEqual(before);
    expect((await found(s, '角鲸')).map((h) => h.message_id)).toEqual([c.messages[1]]);
  });

  it('answers 400 naming the parameter for a missing, empty or too long q, a bad limit or cursor', async () => {
    const s = { session: newSession() };
    const cases: [string, string][] = [
      ['', 'q'],
      ['q=', 'q'],
      ['q=%20%20%09', 'q'],
      [`q=${'a'.repeat(201)}`, 'q'],
      [`q=${encodeURIComponent(Array.from({ length: 33 }, (_, i) => `w${i}`).join(' '))}`, 'q'],
      [`q=${encodeURIComponent('"' + '天'.repeat(40) + '"')}`, 'q'],
      ['q=x&limit=0', 'limit'],
      ['q=x&limit=51', 'limit'],
      ['q=x&limit=ten', 'limit'],
      ['q=x&cursor=nonsense', 'cursor'],
      [`q=x&cursor=${Buffer.from(JSON.stringify([1, 2, 'id'])).toString('base64url')}`, 'cursor'],
      [`q=x&cursor=${Buffer.from(JSON.stringify(['1', 2, 'id', 'k'])).toString('base64url')}`, 'cursor'],
    ];
    for (const [query, param] of cases) {
      const res = await call(app, 'GET', `/v1/conversations/search?${query}`, s);
      expect(res.status, query).toBe(400);
      expect(res.json.error, query).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value', param });
    }
    // 200 characters and 32 words are fine.
    expect((await search(s, 'a'.repeat(200))).status).toBe(200);
    expect((await search(s, Array.from({ length: 32 }, (_, i) => `w${i}`).join(' '))).status).toBe(200);
  });

  it('is a route of its own: /search is never read as a conversation id, needs persistence, and refuses the callers other routes refuse', async () => {
    const s = { session: newSession() };
    expect((await search(s, 'anything')).json).toMatchObject({ object: 'list', data: [] });
    const off = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });
    expect((await call(off, 'GET', '/v1/conversations/search?q=x', s)).status).toBe(501);
    const adminKey = 'search-admin-key-0123456789-abcdefghijk';
    const guarded = testApp(db.store, { ADMIN_API_KEY: adminKey, ANONYMOUS_ACCESS: 'false' });
    expect((await call(guarded, 'GET', '/v1/conversations/search?q=x', s)).status).toBe(401);
    expect((await call(guarded, 'GET', '/v1/conversations/search?q=x', { headers: { authorization: `Bearer cpk_${'A'.repeat(43)}` } })).status).toBe(401);
    expect((await call(guarded, 'GET', '/v1/conversations/search?q=x', { headers: { authorization: `Bearer ${adminKey}` } })).status).toBe(403);
  });

  it('never fails in the store either, whatever the parsed query holds', async () => {
    const s = newSession();
    await conversation({ session: s }, 'Store fuzz', 'plain words and 天气 and café');
    const reader = { sessionId: hashSessionId(s), userId: null };
    await fc.assert(
      fc.asyncProperty(fc.oneof(anyText, fc.array(anyText, { maxLength: 8 }).map((p) => p.join(' '))), async (text) => {
        let query;
        try {
          query = parseSearchQuery(text);
        } catch {
          return;
        }
        const page = await db.store.search(reader, { query, limit: 5 });
        expect(page.items.length).toBeLessThanOrEqual(5);
      }),
      { numRuns: 400 },
    );
  }, 60_000);

  it('cuts a long message around its best match, at most 200 characters, without splitting a character', async () => {
    const s = { session: newSession() };
    const filler = (n: number) => Array.from({ length: n }, (_, i) => `word${i}`).join(' ');
    const text = `${filler(300)} 👩‍👩‍👧 the needle and the haystack meet here 🎉 ${filler(300)}\n\n\nfinal needle`;
    const c = await conversation(s, null, text);
    const [hit] = await found(s, 'needle haystack');
    expect(hit!.message_id).toBe(c.messages[0]);
    expect(hit!.snippet.length).toBeLessThanOrEqual(200);
    expect(hit!.snippet.startsWith('…') && hit!.snippet.endsWith('…')).toBe(true);
    expect(highlighted(hit!)).toEqual(['needle', 'haystack']);
    expect(hit!.snippet).toContain('the needle and the haystack meet here 🎉');
  });

  it('keeps results for messages written before the search migration', async () => {
    const old = await sharedTestStore(dialect, { migrate: false });
    const folder = dialect === 'sqlite' ? 'sqlite' : 'pg';
    const partial = join(root, 'test-results', `search-partial-${folder}-${process.pid}`);
    try {
      // The first migrations, then rows as an older version wrote them, then every migration since.
      cpSync(join(root, 'drizzle', folder), partial, { recursive: true });
      const journal = JSON.parse(readFileSync(join(partial, 'meta/_journal.json'), 'utf8'));
      journal.entries = journal.entries.filter((e: { idx: number }) => e.idx <= 1);
      writeFileSync(join(partial, 'meta/_journal.json'), JSON.stringify(journal));
      await old.migrateWith(partial);
      const now = dialect === 'sqlite' ? String(Date.now()) : 'now()';
      await old.sql(`insert into sessions (id, created_at, last_seen_at) values ('legacy-search-1', ${now}, ${now})`);
      await old.sql(`insert into conversations (id, session_id, title, metadata, last_seq, created_at, updated_at) values ('c-old', 'legacy-search-1', 'Vintage zeppelin', '{}', 1, ${now}, ${now})`);
      await old.sql(`insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at) values ('m-old', 'c-old', 'user', 'final', 'An old dirigible story', 1, ${now}, ${now})`);
      await old.store.migrate();
      const after = testApp(old.store, { ALLOW_CLIENT_SESSION_IDS: 'true' });
      const res = await call(after, 'GET', '/v1/conversations/search?q=dirigible', { session: 'legacy-search-1' });
      expect(res.json.data.map((h: Hit) => [h.message_id, h.snippet])).toEqual([['m-old', 'An old dirigible story']]);
      const titled = await call(after, 'GET', '/v1/conversations/search?q=zeppelin', { session: 'legacy-search-1' });
      expect(titled.json.data.map((h: Hit) => [h.message_id, h.snippet])).toEqual([[null, 'Vintage zeppelin']]);
    } finally {
      rmSync(partial, { recursive: true, force: true });
      await old.cleanup();
    }
  }, 60_000);

  it('never answers 500, whatever q holds', async () => {
    const s = { session: newSession() };
    await conversation(s, 'Fuzz target', 'Some ordinary words, quotes " and stars * and an apostrophe\'s worth', '天气 café 🎉');
    const syntax = fc.constantFrom(...SPECIAL_STRINGS, '"', '""', '"*', '*"', 'a"b"c', 'NEAR(a b)', 'a:*', "'a' & 'b'", '\\', "it's", 'col:word', '{a b}', '-x', '^x', 'a + b', '!(a|b)', 'x <-> y', 'x <2> y', "a'':*", 'OR', 'AND');
    const q = fc.oneof(anyText, syntax, fc.array(fc.oneof(syntax, anyText), { maxLength: 6 }).map((parts) => parts.join(' ')));
    await fc.assert(
      fc.asyncProperty(q, async (text) => {
        const res = await search(s, text);
        expect([200, 400], `${JSON.stringify(text)}: ${res.text}`).toContain(res.status);
        if (res.status === 400) expect(res.json.error.param).toBe('q');
        else for (const hit of res.json.data) checkHit(hit);
      }),
      { numRuns: 150 },
    );
  }, 60_000);
});

/** A hit as the API promises it: a snippet of at most 200 characters, well-formed, with ranges inside it. */
function checkHit(hit: Hit) {
  expect(Object.keys(hit).sort()).toEqual(
    ['object', 'conversation_id', 'conversation_title', 'message_id', 'seq', 'role', 'snippet', 'highlights', 'created_at'].sort(),
  );
  expect(hit.snippet.length).toBeLessThanOrEqual(200);
  expect((hit.snippet as unknown as { isWellFormed(): boolean }).isWellFormed()).toBe(true);
  let previous = 0;
  for (const [start, end] of hit.highlights) {
    expect(start).toBeGreaterThanOrEqual(previous);
    expect(end).toBeGreaterThan(start);
    expect(end).toBeLessThanOrEqual(hit.snippet.length);
    previous = end;
  }
  expect(new Date(hit.created_at).toISOString()).toBe(hit.created_at);
  if (hit.message_id === null) expect([hit.seq, hit.role]).toEqual([null, null]);
}
