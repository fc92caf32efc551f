import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashSessionId } from '../app/session-ids.js';
import { call, newSession, testApp } from './helpers/app.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { chatgptExport, conversationLines, exportFile, header, seedVaried, sessionPrincipal, withoutExportedAt } from './helpers/portability.js';
import { dbUrlOf, runScript } from './helpers/scripts.js';
import { signedInUser } from './helpers/users.js';

/*
 * npm run export and npm run import, run as the operator would, against DB_URL's database.
 * Each run is a child process (a second or two of TypeScript loading), so what depends on the
 * dialect (reading and writing an owner's conversations) runs on both, and what is the same
 * code whatever the database (stdin, ChatGPT files, limits, consent, usage) on SQLite only: the
 * HTTP tests run those paths on both dialects.
 */

describe.each(dialects)('npm run export and import on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let dir: string;
  let env: Record<string, string>;
  const run = (script: 'export' | 'import', args: string[], extra: Record<string, string> = {}, input?: string) => runScript(script, args, { ...env, ...extra }, input);

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    dir = mkdtempSync(join(tmpdir(), 'portability-cli-'));
    env = { DB_URL: dbUrlOf(db.target) };
  });
  afterAll(async () => {
    await db?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("exports an owner's conversations to a file, byte for byte what the API exports", async () => {
    const session = newSession();
    await seedVaried(db.store, sessionPrincipal(session));
    const out = join(dir, 'session.jsonl');
    const res = await run('export', ['--owner', `session:${session}`, '--out', out, '--include-deleted']);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toBe('');
    expect(res.stderr).toMatch(/^export: 4 conversations, 8 messages written to .*session\.jsonl\.$/m);
    expect(existsSync(`${out}.part`)).toBe(false);
    const api = await call(testApp(db.store), 'GET', '/v1/conversations/export?include_deleted=1', { session });
    expect(withoutExportedAt(readFileSync(out, 'utf8'))).toBe(withoutExportedAt(api.text));

    // The stored hash names the same owner; without --include-deleted the deleted one stays out.
    const byHash = await run('export', ['--owner', `session-hash:${hashSessionId(session)}`]);
    expect(byHash.code).toBe(0);
    expect(byHash.stdout.trimEnd().split('\n').filter((l) => l.includes('"type":"conversation"'))).toHaveLength(3);
  });

  it('exports every conversation of the database without --owner, and imports a file for a user, once', async () => {
    const ada = await signedInUser(db.store, 'Ada');
    const file = join(dir, 'all.jsonl');
    expect((await run('export', ['--out', file])).code).toBe(0);
    const everything = readFileSync(file, 'utf8');
    const [{ n }] = (await db.sql('select count(*) as n from conversations where deleted_at is null')) as [{ n: unknown }];
    expect(everything.split('\n').filter((l) => l.includes('"type":"conversation"'))).toHaveLength(Number(n));

    const first = await run('import', [file, '--owner', `user:${ada.user.id}`]);
    expect(first.code, first.stderr).toBe(0);
    const result = JSON.parse(first.stdout);
    // Every id here is taken (by their first owners): each comes in under a new one.
    expect(result).toMatchObject({ object: 'import.result', imported: Number(n), skipped: 0, failed: [] });
    expect(result.conversations.every((c: any) => c.id !== c.source_id)).toBe(true);
    const listed = await call(testApp(db.store), 'GET', '/v1/conversations?limit=100', { headers: ada.auth });
    expect(listed.json.items).toHaveLength(Number(n));
    const again = await run('import', [file, '--owner', `user:${ada.user.id}`]);
    expect(JSON.parse(again.stdout)).toMatchObject({ imported: 0, skipped: Number(n) });
  });

  it.runIf(dialect === 'sqlite')('imports from stdin, a ChatGPT export, and a dry run; exits 1 when a conversation failed', async () => {
    const session = newSession();
    const owner = ['--owner', `session:${session}`];
    const id = crypto.randomUUID();
    const piped = await run('import', ['-', ...owner], {}, exportFile(header(), ...conversationLines(id, 2), '{"type":"conversation"}'));
    expect(piped.code).toBe(1);
    expect(JSON.parse(piped.stdout)).toMatchObject({ imported: 1, failed: [{ line: 5, error: expect.stringMatching(/^line 5: field 'id'/) }] });

    const chatgpt = join(dir, 'conversations.json');
    writeFileSync(chatgpt, JSON.stringify(chatgptExport()));
    const dry = await run('import', [chatgpt, ...owner, '--source', 'chatgpt', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ dry_run: true, imported: 2 });
    const real = await run('import', [chatgpt, ...owner, '--source', 'chatgpt']);
    expect(JSON.parse(real.stdout)).toMatchObject({ dry_run: false, imported: 2 });
    const mine = await call(testApp(db.store), 'GET', '/v1/conversations', { session });
    expect(mine.json.items.map((c: any) => c.title).sort()).toEqual(['Cats and branches', 'Plain', `chat ${id.slice(0, 8)}`]);
  });

  it.runIf(dialect === 'sqlite')('applies the limits, redaction and consent the server applies', async () => {
    const session = newSession();
    const [redacted, tooLong] = [crypto.randomUUID(), crypto.randomUUID()];
    const [conversation, m1, m2] = conversationLines(redacted, 2) as any[];
    const file = join(dir, 'system.jsonl');
    writeFileSync(file, exportFile(header(), conversation, { ...m1, role: 'system', content: 'house rules' }, m2, ...conversationLines(tooLong, 2)));
    const res = await run('import', [file, '--owner', `session:${session}`], { REDACT_SYSTEM_PROMPTS: 'true', MAX_MESSAGES_PER_CONVERSATION: '1' });
    expect(res.code).toBe(1);
    // Once its system prompt is left out, the first fits in one message; the second does not.
    expect(JSON.parse(res.stdout)).toMatchObject({ imported: 1, failed: [{ source_id: tooLong, error: expect.stringMatching(/maximum of 1 messages/) }] });
    expect((await db.sql(`select role from messages where conversation_id = '${redacted}'`)).map((r) => r.role)).toEqual(['assistant']);

    const refuser = newSession();
    await db.store.setConsent(hashSessionId(refuser), 'denied');
    const refused = await run('import', [file, '--owner', `session:${refuser}`]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cannot store conversations: This session opted out of history/);
  });

  it.runIf(dialect === 'sqlite')('refuses a file that is not an export, writing nothing (exit 2)', async () => {
    const before = (await db.sql('select count(*) as n from conversations'))[0]!.n;
    const res = await run('import', ['-', '--owner', `session:${newSession()}`], {}, exportFile(header({ version: 9 })));
    expect(res.code).toBe(2);
    expect(res.stderr).toMatch(/version 9 is not one this server reads/);
    expect((await db.sql('select count(*) as n from conversations'))[0]!.n).toBe(before);
  });
});

describe('npm run export and import: usage', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'portability-usage-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('says what is wrong in one line, exit 2 for usage and 1 for an unknown user', async () => {
    const cases = [
      ['export', ['--owner', 'nobody'], 2, /--owner must be user:USER_ID, session:SESSION_ID/],
      ['export', ['--owner', `user:${crypto.randomUUID()}`], 1, /no user has id/],
      ['import', ['missing.jsonl', '--owner', 'session:x'], 2, /cannot read 'missing.jsonl': no such file/],
      ['import', ['-'], 2, /--owner is required/],
      ['import', ['-', '--owner', 'session:x', '--source', 'claude'], 2, /--source must be chatgpt/],
    ] as const;
    const runs = await Promise.all(cases.map(([script, args]) => runScript(script, [...args], { DB_URL: `file:${join(dir, 'usage.db')}` })));
    runs.forEach((res, i) => {
      const [, , code, message] = cases[i]!;
      expect(res.code, res.stderr).toBe(code);
      expect(res.stderr.trim()).toMatch(message);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
    });
  });
});
