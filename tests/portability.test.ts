import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import {
  chatgptExport,
  conversationLines,
  exportFile,
  header,
  importFile,
  seedVaried,
  sessionPrincipal,
  withoutExportedAt,
} from './helpers/portability.js';
import { signedInUser } from './helpers/users.js';
import type { Store } from '../db/store.js';

const lines = (text: string) => text.trimEnd().split('\n').map((l) => JSON.parse(l));

describe.each(dialects)('export and import on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let app: TestApp;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    app = testApp(db.store);
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const rows = async (table: string) => Number((await db.sql(`select count(*) as n from ${table}`))[0]!.n);
  const exportOf = async (session: string, query = '') => {
    const res = await call(app, 'GET', `/v1/conversations/export${query}`, { session });
    expect(res.status, res.text).toBe(200);
    return res;
  };

  describe('GET /v1/conversations/export', () => {
    it("streams the caller's conversations, each followed by its messages in seq order, with every stored field", async () => {
      const session = newSession();
      const [first, second, deleted, empty] = await seedVaried(db.store, sessionPrincipal(session));
      // Someone else's conversation is not the caller's to export.
      await call(app, 'POST', '/v1/conversations', { session: newSession(), body: { title: 'not mine' } });

      const res = await exportOf(session);
      expect(res.headers.get('content-type')).toBe('application/x-ndjson');
      expect(res.headers.get('content-disposition')).toMatch(/^attachment; filename="conversations-\d{4}-\d{2}-\d{2}\.jsonl"$/);
      const out = lines(res.text);
      expect(out[0]).toEqual({ type: 'export', format: 'chat-proxy', version: 1, exported_at: expect.stringMatching(/^\d{4}-.*Z$/) });
      // Newest first, each conversation then its messages; the deleted one only when asked for.
      expect(out.slice(1).map((l) => (l.type === 'conversation' ? l.id : l.seq))).toEqual([empty, second, 1, 2, first, 1, 2, 3, 4, 5]);
      expect(out.map((l) => l.type).filter((t) => t === 'conversation')).toHaveLength(3);
      expect(res.text).not.toContain('not mine');

      const conversation = out.find((l) => l.id === first);
      expect(Object.keys(conversation)).toEqual(['type', 'id', 'title', 'model', 'metadata', 'created_at', 'updated_at', 'deleted_at', 'import_source_id', 'active_message_id']);
      expect(conversation).toMatchObject({ title: 'Ünïcödé ✓ "quotes" \'; drop table x; --', model: 'gpt-4.1', deleted_at: null, import_source_id: null });
      // JSON keys leave sorted, whatever order the database keeps them in.
      expect(JSON.stringify(conversation.metadata)).toBe('{"alpha":{"nested":[1,"two",{"a":null,"b":true}]},"pinned":true,"zeta":1}');
      const messages = out.filter((l) => l.conversation_id === first);
      expect(Object.keys(messages[0])).toEqual([
        'type', 'id', 'conversation_id', 'seq', 'role', 'status', 'content', 'content_json', 'parent_message_id',
        'tokens_in', 'tokens_out', 'tokens_source', 'finish_reason', 'tool_calls', 'function_call', 'created_at', 'updated_at', 'client_id',
      ]);
      expect(messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'tool', 'assistant']);
      expect(messages[1].content_json[1]).toEqual({ image_url: { detail: 'low', url: 'https://example.test/cat.png' }, type: 'image_url' });
      expect(messages[2]).toMatchObject({ tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"cat"}' } }], tokens_in: 42, tokens_out: 7, tokens_source: 'provider', finish_reason: 'tool_calls' });
      expect(messages[4].content).toBe('It is a cat.\n\nWith a second paragraph, and \uFFFD a NUL.');
      // Nothing about who owns it, or about the process that wrote it.
      for (const word of ['session', 'user_id', 'lease', 'ip_hash', 'user_agent', 'stored_bytes', 'last_seq']) expect(res.text).not.toContain(word);

      const all = lines((await exportOf(session, '?include_deleted=1')).text);
      expect(all.find((l) => l.id === deleted)).toMatchObject({ type: 'conversation', deleted_at: expect.stringMatching(/Z$/) });
    });

    it('exports only what a signed-in user owns, not what is shared with them', async () => {
      const [owner, reader] = [await signedInUser(db.store, 'owner'), await signedInUser(db.store, 'reader')];
      const mine = await call(app, 'POST', '/v1/conversations', { headers: reader.auth, body: { title: 'mine' } });
      const theirs = await call(app, 'POST', '/v1/conversations', { headers: owner.auth, body: { title: 'shared with me' } });
      await call(app, 'PUT', `/v1/conversations/${theirs.json.id}/shares/${reader.user.id}`, { headers: owner.auth, body: { role: 'viewer' } });
      const res = await call(app, 'GET', '/v1/conversations/export', { headers: reader.auth });
      expect(lines(res.text).filter((l) => l.type === 'conversation').map((l) => l.id)).toEqual([mine.json.id]);
    });

    it('ends with an error line when the database fails midway, which an import refuses', async () => {
      const session = newSession();
      await seedVaried(db.store, sessionPrincipal(session));
      let calls = 0;
      const failing = Object.assign(Object.create(db.store) as Store, {
        listMessages: (async (id, options) => {
          if (++calls === 2) throw Object.assign(new Error('connection lost'), { code: 'ECONNRESET' });
          return db.store.listMessages(id, options);
        }) satisfies Store['listMessages'],
      });
      const res = await call(testApp(failing), 'GET', '/v1/conversations/export', { session });
      expect(res.status).toBe(200);
      const out = lines(res.text);
      expect(out.at(-1)).toEqual({ type: 'error', error: { type: 'server_error', message: expect.stringMatching(/^The export stopped early/) } });
      expect(res.text).not.toContain('connection lost');
      const imported = await importFile(app, res.text, { session: newSession() });
      expect(imported.json.failed).toEqual([{ line: expect.any(Number), source_id: out.at(-2).id, error: expect.stringMatching(/the export was cut short here: The export stopped early/) }]);
    });

    it('gives an empty export (the header alone) to a caller with nothing', async () => {
      expect(lines((await exportOf(newSession())).text)).toEqual([expect.objectContaining({ type: 'export' })]);
    });

    it('pages through more conversations and messages than one read returns', async () => {
      const session = newSession();
      const owner = sessionPrincipal(session);
      for (let i = 0; i < 103; i++) await db.store.createConversation(owner, { title: `c${i}` }, { maxPerSession: 1_000 });
      const long = await db.store.createConversation(owner, { title: 'long' }, { maxPerSession: 1_000 });
      await db.store.appendMessages(owner, long.id, Array.from({ length: 1_201 }, (_, i) => ({ role: 'user' as const, content: `m${i + 1}` })), { maxMessages: 2_000 });
      const out = lines((await exportOf(session)).text);
      expect(out.filter((l) => l.type === 'conversation')).toHaveLength(104);
      expect(out.filter((l) => l.type === 'message').map((l) => l.seq)).toEqual(Array.from({ length: 1_201 }, (_, i) => i + 1));
      expect(new Set(out.filter((l) => l.type === 'conversation').map((l) => l.id)).size).toBe(104);
    });
  });

  describe('GET /v1/conversations/:id/export', () => {
    it('exports one conversation to whoever may read it, viewers included, and to nobody else', async () => {
      const [owner, viewer, stranger] = [await signedInUser(db.store), await signedInUser(db.store), await signedInUser(db.store)];
      const [id] = await seedVaried(db.store, { sessionId: 'x', userId: owner.user.id });
      await call(app, 'PUT', `/v1/conversations/${id}/shares/${viewer.user.id}`, { headers: owner.auth, body: { role: 'viewer' } });

      const own = await call(app, 'GET', `/v1/conversations/${id}/export`, { headers: owner.auth });
      expect(own.status).toBe(200);
      expect(own.headers.get('content-disposition')).toBe(`attachment; filename="conversation-${id}.jsonl"`);
      const out = lines(own.text);
      expect(out.map((l) => l.type)).toEqual(['export', 'conversation', 'message', 'message', 'message', 'message', 'message']);
      const seen = await call(app, 'GET', `/v1/conversations/${id}/export`, { headers: viewer.auth });
      expect(seen.status).toBe(200);
      expect(withoutExportedAt(seen.text)).toBe(withoutExportedAt(own.text));

      for (const res of [
        await call(app, 'GET', `/v1/conversations/${id}/export`, { headers: stranger.auth }),
        await call(app, 'GET', `/v1/conversations/${id}/export`, { session: newSession() }),
        await call(app, 'GET', `/v1/conversations/${crypto.randomUUID()}/export`, { headers: owner.auth }),
      ]) {
        expect(res.status).toBe(404);
        expect(res.json.error.code).toBe('not_found');
      }
    });

    it('gives a readable Markdown transcript with ?format=markdown', async () => {
      const session = newSession();
      const [id] = await seedVaried(db.store, sessionPrincipal(session));
      const res = await call(app, 'GET', `/v1/conversations/${id}/export?format=markdown`, { session });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/markdown; charset=utf-8');
      expect(res.headers.get('content-disposition')).toBe(`attachment; filename="conversation-${id}.md"`);
      const md = res.text;
      expect(md.startsWith('# Ünïcödé ✓ "quotes" \'; drop table x; --\n\n')).toBe(true);
      expect(md).toContain('- Model: gpt-4.1');
      for (const role of ['System', 'User', 'Assistant', 'Tool']) expect(md).toMatch(new RegExp(`^## ${role} · \\d{4}-\\d{2}-\\d{2}T[\\d:.]+Z$`, 'm'));
      expect(md).toContain('\nLook 👀 at this\n\n*Attached: image_url*\n');
      expect(md).toContain('"name": "lookup"');
      expect(md).toContain('It is a cat.\n\nWith a second paragraph');
      // The sections come in seq order.
      expect(md.indexOf('Be brief.')).toBeLessThan(md.indexOf('Look 👀'));
      expect(md.indexOf('Look 👀')).toBeLessThan(md.indexOf('It is a cat.'));

      const bad = await call(app, 'GET', `/v1/conversations/${id}/export?format=pdf`, { session });
      expect(bad.status).toBe(400);
      expect(bad.json.error.param).toBe('format');
    });
  });

  describe('POST /v1/conversations/import', () => {
    it('imports an export into another server as it was: ids, times, statuses, every field', async () => {
      const from = newSession();
      await seedVaried(db.store, sessionPrincipal(from));
      const exported = (await exportOf(from, '?include_deleted=1')).text;

      const other = await sharedTestStore(dialect);
      try {
        const target = testApp(other.store);
        const to = newSession();
        const res = await importFile(target, exported, { session: to });
        expect(res.status, res.text).toBe(200);
        expect(res.json).toMatchObject({ object: 'import.result', dry_run: false, imported: 4, skipped: 0, failed: [], warnings: [] });
        const source = lines(exported).filter((l) => l.type === 'conversation');
        expect(res.json.conversations).toEqual(source.map((c) => ({ id: c.id, source_id: c.id, status: 'imported' })));
        const again = await call(target, 'GET', '/v1/conversations/export?include_deleted=1', { session: to });
        expect(withoutExportedAt(again.text)).toBe(withoutExportedAt(exported));
        // What the API shows of it is whole: counts, usage, and the messages readable through it.
        const read = await call(target, 'GET', `/v1/conversations/${source.at(-1).id}`, { session: to });
        expect(read.json).toMatchObject({ message_count: 5, usage: { tokens_in: 102, tokens_out: 16 } });
        // Bytes are counted as for any write, so the owner's allowance sees them.
        const [stored] = await other.sql(`select sum(stored_bytes) as n from conversations where deleted_at is null`);
        expect(Number(stored!.n)).toBeGreaterThan(3000);
      } finally {
        await other.cleanup();
      }
    });

    it('is idempotent: the same file again imports nothing and writes no row', async () => {
      const session = newSession();
      const file = exportFile(header(), ...conversationLines(crypto.randomUUID(), 3), ...conversationLines(crypto.randomUUID(), 2));
      const first = await importFile(app, file, { session });
      expect(first.json).toMatchObject({ imported: 2, skipped: 0 });
      const before = [await rows('conversations'), await rows('messages'), await rows('sessions')];
      const second = await importFile(app, file, { session });
      expect(second.json).toMatchObject({ imported: 0, skipped: 2, failed: [] });
      expect(second.json.conversations.map((c: any) => [c.id, c.status])).toEqual(first.json.conversations.map((c: any) => [c.id, 'skipped']));
      expect([await rows('conversations'), await rows('messages'), await rows('sessions')]).toEqual(before);
    });

    it("never touches another owner's conversation: a taken id gets a new one, and re-importing still skips it", async () => {
      const alice = newSession();
      const bob = newSession();
      const id = crypto.randomUUID();
      const file = exportFile(header(), ...conversationLines(id, 2, { title: 'shared file' }));
      expect((await importFile(app, file, { session: alice })).json.conversations).toEqual([{ id, source_id: id, status: 'imported' }]);

      const res = await importFile(app, file, { session: bob });
      expect(res.json).toMatchObject({ imported: 1, skipped: 0 });
      const [renamed] = res.json.conversations;
      expect(renamed).toEqual({ id: expect.any(String), source_id: id, status: 'imported' });
      expect(renamed.id).not.toBe(id);
      // Alice's is as it was; Bob's copy is whole under its new id, its messages too (their ids were taken).
      const alices = await call(app, 'GET', `/v1/conversations/${id}`, { session: alice });
      expect(alices.json.messages.map((m: any) => m.id)).toEqual([`${id}-m1`, `${id}-m2`]);
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { session: bob })).status).toBe(404);
      const bobs = await call(app, 'GET', `/v1/conversations/${renamed.id}`, { session: bob });
      expect(bobs.json.messages.map((m: any) => m.content)).toEqual(alices.json.messages.map((m: any) => m.content));
      expect(bobs.json.messages.map((m: any) => m.id)).not.toContain(`${id}-m1`);
      expect(bobs.json.messages[1].parent_message_id).toBe(bobs.json.messages[0].id);

      const again = await importFile(app, file, { session: bob });
      expect(again.json).toMatchObject({ imported: 0, skipped: 1, conversations: [{ id: renamed.id, source_id: id, status: 'skipped' }] });
      // Bob's export records where it came from, so importing that elsewhere is recognised too.
      const bobsExport = lines((await exportOf(bob)).text);
      expect(bobsExport[1]).toMatchObject({ id: renamed.id, import_source_id: id });
      expect((await importFile(app, exportFile(...bobsExport), { session: alice })).json).toMatchObject({ imported: 0, skipped: 1, conversations: [{ id, status: 'skipped' }] });
    });

    it('imports each conversation whole or not at all: a bad line fails its conversation, named by line, and the others import', async () => {
      const session = newSession();
      const [a, b, c, d] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      const broken = conversationLines(b, 3);
      const file = exportFile(
        header(),
        ...conversationLines(a, 2),
        broken[0]!,
        broken[1]!,
        '{"type":"message", "id": oops',
        broken[3]!,
        ...conversationLines(c, 1),
        { ...conversationLines(d, 0)[0], created_at: 'yesterday' },
      );
      const res = await importFile(app, file, { session });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ imported: 2, skipped: 0 });
      expect(res.json.failed).toEqual([
        { line: 5, source_id: b, error: 'line 7: the line is not JSON' },
        { line: 11, source_id: d, error: expect.stringMatching(/^line 11: field 'created_at' must be an ISO-8601 date-time/) },
      ]);
      expect(res.json.conversations.map((x: any) => [x.source_id, x.status])).toEqual([
        [a, 'imported'],
        [b, 'failed'],
        [c, 'imported'],
        [d, 'failed'],
      ]);
      expect((await call(app, 'GET', `/v1/conversations/${b}`, { session })).status).toBe(404);
      expect((await call(app, 'GET', `/v1/conversations/${a}`, { session })).json.message_count).toBe(2);
    });

    it.each([
      ['a message with no role', (m: any) => ({ ...m, role: undefined }), /field 'role'/],
      ['a message with no content', (m: any) => ({ ...m, content: undefined }), /field 'content'/],
      ['an unknown status', (m: any) => ({ ...m, status: 'done' }), /field 'status'/],
      ['seqs out of order', (m: any) => ({ ...m, seq: 1 }), /seq 1 after seq 1/],
      ['a message of another conversation', (m: any) => ({ ...m, conversation_id: 'elsewhere' }), /a message of conversation 'elsewhere'/],
      ['an id no route could name', (m: any) => ({ ...m, id: 'a/b' }), /field 'id'/],
      ['an id the API uses as a word', (m: any) => ({ ...m, id: 'export' }), /field 'id' is a word the API uses in its paths/],
      ['negative tokens', (m: any) => ({ ...m, tokens_in: -1 }), /field 'tokens_in'/],
      ['a line of no known type', (m: any) => ({ ...m, type: 'note' }), /unknown line type 'note'/],
    ])('fails the conversation for %s', async (_, spoil, error) => {
      const id = crypto.randomUUID();
      const [conversation, m1, m2] = conversationLines(id, 2);
      const res = await importFile(app, exportFile(header(), conversation!, m1!, spoil(m2)), { session: newSession() });
      expect(res.json).toMatchObject({ imported: 0, failed: [{ line: 2, source_id: id, error: expect.stringMatching(/^line 4: /) }] });
      expect(res.json.failed[0].error).toMatch(error);
    });

    it('fails a conversation line without an id or a creation time', async () => {
      const [conversation] = conversationLines(crypto.randomUUID(), 0) as any[];
      const res = await importFile(app, exportFile(header(), { ...conversation, id: undefined }, { ...conversation, id: crypto.randomUUID(), created_at: undefined }), { session: newSession() });
      expect(res.json.failed.map((f: any) => f.error)).toEqual([expect.stringMatching(/^line 2: field 'id'/), expect.stringMatching(/^line 3: field 'created_at'/)]);
    });

    it.each([
      ['not JSON at all', 'hello, world\n', /Line 1 is not the header of a chat-proxy export \(the line is not JSON\)/],
      ['JSON without the header', exportFile(...conversationLines(crypto.randomUUID(), 1)), /Line 1 is not the header/],
      ['another version', exportFile(header({ version: 2 })), /export format version 2 is not one this server reads \(it reads version 1\)/],
      ['another format', exportFile(header({ format: 'other-app' })), /this is a 'other-app' export/],
      ['a JSON array (a ChatGPT file sent as an export)', JSON.stringify(chatgptExport()), /\?source=chatgpt/],
      ['nothing', '', /The body is empty/],
    ])('refuses a file that is %s with 400, writing nothing', async (_, body, message) => {
      const before = await rows('conversations');
      const res = await importFile(app, body, { session: newSession() });
      expect(res.status).toBe(400);
      expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_import_file' });
      expect(res.json.error.message).toMatch(message);
      expect(await rows('conversations')).toBe(before);
    });

    it('fails a line too long to hold without reading it whole, and imports the rest', async () => {
      const small = testApp(db.store, { IMPORT_MAX_LINE_BYTES: '4096' });
      const [a, b, c] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      const [conversationB, m1] = conversationLines(b, 1) as any[];
      const file = exportFile(
        header(),
        ...conversationLines(a, 1),
        conversationB,
        { ...m1, content: 'y'.repeat(100_000) },
        ...conversationLines(c, 1),
        { ...conversationLines(crypto.randomUUID(), 0)[0], title: 'z'.repeat(50_000) },
      );
      const res = await importFile(small, file, { session: newSession() });
      expect(res.status).toBe(200);
      expect(res.json).toMatchObject({ imported: 2 });
      expect(res.json.failed).toEqual([
        { line: 4, source_id: b, error: expect.stringMatching(/^line 5: the line is 100\d{3} bytes, longer than this server reads \(IMPORT_MAX_LINE_BYTES\)$/) },
        // An overlong conversation line is still known for one: it fails alone.
        { line: 8, source_id: null, error: expect.stringMatching(/^line 8: the line is \d+ bytes/) },
      ]);
    });

    it('checks and reports everything with ?dry_run=1, and writes nothing', async () => {
      const session = newSession();
      const existing = crypto.randomUUID();
      await importFile(app, exportFile(header(), ...conversationLines(existing, 1)), { session });
      const before = [await rows('conversations'), await rows('messages')];
      const fresh = crypto.randomUUID();
      const bad = { ...conversationLines(crypto.randomUUID(), 0)[0], deleted_at: 'never' };
      const res = await importFile(app, exportFile(header(), ...conversationLines(existing, 1), ...conversationLines(fresh, 2), bad), { session, query: '?dry_run=1' });
      expect(res.json).toMatchObject({ dry_run: true, imported: 1, skipped: 1, failed: [{ line: 7, error: expect.stringMatching(/^line 7: field 'deleted_at'/) }] });
      expect([await rows('conversations'), await rows('messages')]).toEqual(before);
      expect((await call(app, 'GET', `/v1/conversations/${fresh}`, { session })).status).toBe(404);
    });

    it('brings a message that was still streaming in as an error, interrupted, its text kept', async () => {
      const session = newSession();
      const id = crypto.randomUUID();
      const [conversation, m1, m2] = conversationLines(id, 2) as any[];
      await importFile(app, exportFile(header(), conversation, m1, { ...m2, status: 'streaming', finish_reason: null, content: 'half' }), { session });
      const read = await call(app, 'GET', `/v1/conversations/${id}`, { session });
      expect(read.json.messages[1]).toMatchObject({ status: 'error', finish_reason: 'interrupted', content: 'half' });
      const [lease] = await db.sql(`select lease_owner, lease_expires_at from messages where id = '${id}-m2'`);
      expect(lease).toEqual({ lease_owner: null, lease_expires_at: null });
    });

    it('fails the last conversation when the file ends in a broken line (an export cut short)', async () => {
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const whole = exportFile(header(), ...conversationLines(a, 1), ...conversationLines(b, 2));
      const res = await importFile(app, whole.slice(0, -40), { session: newSession() });
      expect(res.json).toMatchObject({ imported: 1, failed: [{ line: 4, source_id: b, error: 'line 6: the line is not JSON' }] });
    });

    it('fails a conversation whose line is not UTF-8', async () => {
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const [conversationB, m1] = conversationLines(b, 1) as any[];
      const text = exportFile(header(), ...conversationLines(a, 1), conversationB, { ...m1, content: '@@' });
      const bytes = Buffer.from(text);
      // 0xC3 0x28: a lead byte without its continuation.
      bytes.set([0xc3, 0x28], bytes.indexOf('@@'));
      const res = await app.request('/v1/conversations/import', { method: 'POST', body: bytes, headers: { 'content-type': 'application/x-ndjson', 'x-session-id': newSession() } });
      expect(await res.json()).toMatchObject({ imported: 1, failed: [{ line: 4, source_id: b, error: 'line 5: the line is not UTF-8 text' }] });
    });

    it('reads files joined with cat, blank lines and CRLF line ends', async () => {
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const joined = exportFile(header(), ...conversationLines(a, 1)) + '\n' + exportFile(header(), ...conversationLines(b, 2)).replaceAll('\n', '\r\n');
      const res = await importFile(app, joined, { session: newSession() });
      expect(res.json).toMatchObject({ imported: 2, failed: [] });
    });

    it('reads the body as a stream, beyond BODY_LIMIT_BYTES, with lines split anywhere across chunks', async () => {
      const session = newSession();
      const ids = Array.from({ length: 20 }, () => crypto.randomUUID());
      const text = exportFile(header(), ...ids.flatMap((id) => conversationLines(id, 5, { title: `émoji 🐱 ${'p'.repeat(400)}` })));
      const bytes = new TextEncoder().encode(text);
      const small = testApp(db.store, { BODY_LIMIT_BYTES: '10000' });
      // 7-byte chunks split lines and multi-byte characters alike.
      let offset = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (offset >= bytes.length) return controller.close();
          controller.enqueue(bytes.subarray(offset, (offset += 7)));
        },
      });
      const res = await small.request('/v1/conversations/import', { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson', 'x-session-id': session }, duplex: 'half' } as RequestInit);
      const json = (await res.json()) as any;
      expect(res.status, JSON.stringify(json)).toBe(200);
      expect(json).toMatchObject({ imported: 20, failed: [] });
      expect((await call(small, 'GET', `/v1/conversations/${ids[3]}`, { session })).json.title).toBe(`émoji 🐱 ${'p'.repeat(400)}`);
    });

    it('refuses a body over IMPORT_MAX_BYTES with 413: up front when its length is declared, else where it passes the limit', async () => {
      const limited = testApp(db.store, { IMPORT_MAX_BYTES: '3000' });
      const [a, b] = [crypto.randomUUID(), crypto.randomUUID()];
      const text = exportFile(header(), ...conversationLines(a, 1), ...conversationLines(b, 5));
      const before = await rows('conversations');
      const declared = await importFile(limited, text, { session: newSession() });
      expect(declared.status).toBe(413);
      expect(declared.json.error).toMatchObject({ code: 'request_too_large' });
      expect(declared.json.error.message).toContain('IMPORT_MAX_BYTES');
      expect(await rows('conversations')).toBe(before);

      // Sent in chunks, without a length: what came before the limit is imported, and said so.
      const session = newSession();
      const bytes = new TextEncoder().encode(text);
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < bytes.length; i += 500) controller.enqueue(bytes.subarray(i, i + 500));
          controller.close();
        },
      });
      const chunked = await limited.request('/v1/conversations/import', { method: 'POST', body, headers: { 'content-type': 'application/x-ndjson', 'x-session-id': session }, duplex: 'half' } as RequestInit);
      const json = (await chunked.json()) as any;
      expect(chunked.status).toBe(413);
      expect(json.error.message).toMatch(/1 conversation was imported before that point and stays: importing the rest, or the same file again, skips it/);
      expect((await call(limited, 'GET', `/v1/conversations/${a}`, { session })).status).toBe(200);
      expect((await call(limited, 'GET', `/v1/conversations/${b}`, { session })).status).toBe(404);
    });

    it.each([
      ['text/plain', 'application/x-ndjson'],
      ['application/x-www-form-urlencoded', 'application/x-ndjson'],
      ['multipart/form-data; boundary=x', 'application/x-ndjson'],
      ['application/json', 'application/x-ndjson'],
    ])('refuses Content-Type %s with 415 (it takes %s)', async (contentType) => {
      const res = await importFile(app, exportFile(header(), ...conversationLines(crypto.randomUUID(), 1)), { session: newSession(), contentType });
      expect(res.status).toBe(415);
      expect(res.json.error.code).toBe('unsupported_media_type');
    });

    it('applies the owner\'s limits to each conversation: one over them fails, the others import', async () => {
      const limited = testApp(db.store, { MAX_CONVERSATIONS_PER_SESSION: '2', MAX_MESSAGES_PER_CONVERSATION: '3' });
      const session = newSession();
      const ids = Array.from({ length: 4 }, () => crypto.randomUUID());
      const res = await importFile(limited, exportFile(header(), ...conversationLines(ids[0]!, 4), ...conversationLines(ids[1]!, 1), ...conversationLines(ids[2]!, 1), ...conversationLines(ids[3]!, 1)), { session });
      expect(res.json).toMatchObject({ imported: 2 });
      expect(res.json.failed).toEqual([
        { line: 2, source_id: ids[0], error: expect.stringMatching(/^line 6: This conversation already has the maximum of 3 messages/) },
        { line: 11, source_id: ids[3], error: expect.stringMatching(/^line 11: This session already has the maximum of 2 conversations/) },
      ]);
    });

    it('refuses a conversation larger than MAX_BYTES_PER_SESSION before holding it whole', async () => {
      const limited = testApp(db.store, { MAX_BYTES_PER_SESSION: '1000' });
      const id = crypto.randomUUID();
      const [conversation, ...messages] = conversationLines(id, 4) as any[];
      const res = await importFile(limited, exportFile(header(), conversation, ...messages.map((m) => ({ ...m, content: 'b'.repeat(400) }))), { session: newSession() });
      expect(res.json.failed).toEqual([{ line: 2, source_id: id, error: expect.stringMatching(/^line 5: .*MAX_BYTES_PER_SESSION/) }]);
    });

    it('keeps system messages out with REDACT_SYSTEM_PROMPTS, as every other write does', async () => {
      const redacting = testApp(db.store, { REDACT_SYSTEM_PROMPTS: 'true' });
      const session = newSession();
      const id = crypto.randomUUID();
      const [conversation, m1, m2] = conversationLines(id, 2) as any[];
      const res = await importFile(redacting, exportFile(header(), conversation, { ...m1, role: 'system', content: 'secret prompt' }, m2), { session });
      expect(res.json.imported).toBe(1);
      const read = await call(redacting, 'GET', `/v1/conversations/${id}`, { session });
      expect(read.json.messages.map((m: any) => [m.seq, m.role])).toEqual([[1, 'assistant']]);
      expect(JSON.stringify(await db.sql(`select content from messages where conversation_id = '${id}'`))).not.toContain('secret prompt');
    });

    it('needs consent where the server asks for it, and none may import into a session that refused', async () => {
      const file = exportFile(header(), ...conversationLines(crypto.randomUUID(), 1));
      const asking = testApp(db.store, { CONSENT_REQUIRED: 'true' });
      const res = await importFile(asking, file, { session: newSession() });
      expect(res.status).toBe(403);
      expect(res.json.error.code).toBe('consent_required');
      const refuser = newSession();
      await call(app, 'POST', '/v1/privacy/consent', { session: refuser, body: { consent: 'denied' } });
      expect((await importFile(app, file, { session: refuser })).json.error.code).toBe('consent_denied');
      expect((await importFile(app, file, { session: newSession(), headers: { 'x-persist': 'off' } })).json.error.code).toBe('request_opted_out');
    });

    it('imports into a signed-in user, who then owns it from any session', async () => {
      const u = await signedInUser(db.store);
      const id = crypto.randomUUID();
      const res = await importFile(app, exportFile(header(), ...conversationLines(id, 2)), { headers: u.auth });
      expect(res.json.imported).toBe(1);
      const [row] = await db.sql(`select user_id from conversations where id = '${id}'`);
      expect(row!.user_id).toBe(u.user.id);
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { headers: u.auth, session: newSession() })).status).toBe(200);
    });

    it('warns when retention would delete what was just imported', async () => {
      const res = await importFile(app, exportFile(header(), ...conversationLines(crypto.randomUUID(), 1, { metadata: {} })), { session: newSession() });
      expect(res.json.warnings).toEqual([expect.stringMatching(/^1 imported conversation has been idle longer than this server keeps conversations \(RETENTION_DAYS=30\)/)]);
      const pinned = await importFile(app, exportFile(header(), ...conversationLines(crypto.randomUUID(), 1)), { session: newSession() });
      expect(pinned.json.warnings).toEqual([]);
    });

    it('answers 501 with persistence off', async () => {
      const off = testApp(db.store, { PERSIST_TRANSCRIPTS: 'false' });
      expect((await importFile(off, exportFile(header()), { session: newSession() })).status).toBe(501);
      expect((await call(off, 'GET', '/v1/conversations/export', { session: newSession() })).status).toBe(501);
    });
  });

  describe('POST /v1/conversations/import?source=chatgpt', () => {
    const chatgpt = (session: string, document: unknown = chatgptExport(), query = '') =>
      importFile(app, JSON.stringify(document), { session, query: `?source=chatgpt${query}`, contentType: 'application/json' });

    it("imports each conversation's current branch, with its times and roles", async () => {
      const session = newSession();
      const res = await chatgpt(session);
      expect(res.status, res.text).toBe(200);
      const [branched, plain] = chatgptExport();
      expect(res.json).toMatchObject({
        imported: 2,
        failed: [],
        conversations: [
          { id: branched!.id, source_id: branched!.id, status: 'imported' },
          { id: plain!.id, source_id: plain!.id, status: 'imported' },
        ],
      });
      const read = await call(app, 'GET', `/v1/conversations/${branched!.id}`, { session });
      expect(read.json).toMatchObject({
        title: 'Cats and branches',
        model: 'gpt-4o',
        metadata: { imported_from: 'chatgpt' },
        created_at: '2023-11-14T22:13:20.000Z',
        updated_at: '2023-11-14T22:23:20.000Z',
      });
      // The regenerated-away answer, the hidden system message and custom instructions are not on the branch shown.
      expect(read.json.messages.map((m: any) => [m.seq, m.role, m.content, m.created_at])).toEqual([
        [1, 'user', 'What is in this picture?', '2023-11-14T22:13:30.000Z'],
        [2, 'assistant', 'search("cat breeds")', '2023-11-14T22:13:50.000Z'],
        [3, 'tool', 'Maine Coon, Siamese', '2023-11-14T22:14:00.000Z'],
        [4, 'assistant', 'A cat — probably a Maine Coon. 🐱', '2023-11-14T22:14:10.000Z'],
        [5, 'user', 'Thanks!', '2023-11-14T22:14:20.000Z'],
        [6, 'assistant', 'You are welcome.', '2023-11-14T22:14:30.000Z'],
      ]);
      const [image, , , answer, , last] = read.json.messages;
      expect(image.content_json).toEqual([
        { type: 'image_asset_pointer', content_type: 'image_asset_pointer', asset_pointer: 'file-service://file-abc', size_bytes: 12345, width: 512, height: 512 },
        { type: 'text', text: 'What is in this picture?' },
      ]);
      expect(image.id).toBe('u1');
      expect(answer).toMatchObject({ status: 'final', finish_reason: 'stop', parent_message_id: 'tool1' });
      expect(last.finish_reason).toBe('length');
      const other = await call(app, 'GET', `/v1/conversations/${plain!.id}`, { session });
      expect(other.json.messages.map((m: any) => m.created_at)).toEqual(['2023-11-14T22:30:01.123Z', '2023-11-14T22:30:02.456Z']);
      expect(other.json.model).toBeNull();
    });

    it('skips what it already imported, and renames what another owner has', async () => {
      const session = newSession();
      await chatgpt(session);
      const again = await chatgpt(session);
      expect(again.json).toMatchObject({ imported: 0, skipped: 2 });
      const someoneElse = await chatgpt(newSession());
      expect(someoneElse.json.imported).toBe(2);
      expect(someoneElse.json.conversations.map((c: any) => c.id)).not.toContain(chatgptExport()[0]!.id);
    });

    it('fails a conversation it cannot read, alone, and refuses a body that is not an array of them', async () => {
      const [good] = chatgptExport();
      const res = await chatgpt(newSession(), [{ ...good, id: crypto.randomUUID(), conversation_id: undefined }, { title: 'no mapping', id: crypto.randomUUID() }, { ...good, id: crypto.randomUUID(), current_node: 'nowhere' }]);
      expect(res.json.imported).toBe(1);
      expect(res.json.failed).toEqual([
        { line: 2, source_id: expect.any(String), error: expect.stringMatching(/^conversation 2: field 'mapping'/) },
        { line: 3, source_id: expect.any(String), error: expect.stringMatching(/^conversation 3: .*'nowhere', which is not in its mapping/) },
      ]);
      for (const body of [{ conversations: [] }, 'not json at all']) {
        const bad = await importFile(app, typeof body === 'string' ? body : JSON.stringify(body), { session: newSession(), query: '?source=chatgpt', contentType: 'application/json' });
        expect(bad.status).toBe(400);
        expect(bad.json.error.code).toBe('invalid_import_file');
      }
      expect((await importFile(app, JSON.stringify(chatgptExport()), { session: newSession(), query: '?source=chatgpt' })).status).toBe(415);
    });

    it('reads the file whole only up to IMPORT_MAX_BYTES', async () => {
      const limited = testApp(db.store, { IMPORT_MAX_BYTES: '2000' });
      const res = await importFile(limited, JSON.stringify(chatgptExport()), { session: newSession(), query: '?source=chatgpt', contentType: 'application/json' });
      expect(res.status).toBe(413);
    });
  });
});
