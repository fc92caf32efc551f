// `npm run export -- [--owner OWNER] [--out FILE] [--include-deleted]`: conversations of DB_URL's
// database in the export format (app/portability/format.ts), streamed page by page as the HTTP
// export is, so memory stays flat however large the database. It reads DB_URL only.
import { once } from 'node:events';
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { ConfigError } from '../app/env.js';
import { EXPORT_PAGE, exportErrorLine, ndjsonLines, pullStream, type ExportSource } from '../app/portability/export.js';
import { checkOwner, parseOwner, type OwnerSpec } from '../app/portability/owner.js';
import type { Store } from '../db/store.js';
import { UsageError, cliConfig, openStore } from './cli-config.js';
import { progress } from './progress.js';

const USAGE = `Usage: npm run -s export -- [--owner OWNER] [--out FILE] [--include-deleted]

  --owner OWNER      whose conversations: user:USER_ID, session:SESSION_ID (the id as the client
                     holds it, x-session-id) or session-hash:SHA256_HEX (as the database keeps it).
                     Without it: every conversation in the database, whoever owns it. The format
                     names no owner; npm run db:copy moves a whole database with its owners.
  --out FILE         write there (as FILE.part, renamed once complete); default: stdout
  --include-deleted  soft-deleted conversations too

Reads DB_URL (default file:./data/dev.db) and migrates it first. Progress goes to stderr.
Exits 2 on bad usage, 1 when the export fails.`;

interface Args {
  owner: OwnerSpec | null;
  out: string | null;
  includeDeleted: boolean;
}

function parse(argv: string[]): Args | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { owner: { type: 'string' }, out: { type: 'string' }, 'include-deleted': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  if (parsed.values.help) return 'help';
  let owner: OwnerSpec | null = null;
  try {
    owner = parsed.values.owner === undefined ? null : parseOwner(parsed.values.owner);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return { owner, out: parsed.values.out ?? null, includeDeleted: parsed.values['include-deleted'] === true };
}

function sourceOf(store: Store, { owner, includeDeleted }: Args): ExportSource {
  const messages: ExportSource['messages'] = (id, afterSeq) => store.listMessages(id, { afterSeq, limit: EXPORT_PAGE.messages });
  if (!owner) return { conversations: (after) => store.listEveryConversation({ limit: EXPORT_PAGE.conversations, after, includeDeleted }), messages };
  const principal = owner.principal;
  return { conversations: (after) => store.listConversations(principal, { limit: EXPORT_PAGE.conversations, after, includeDeleted, scope: 'owned' }), messages };
}

async function main(): Promise<number> {
  let args: Args | 'help';
  let config;
  try {
    args = parse(process.argv.slice(2));
    if (args === 'help') {
      console.log(USAGE);
      return 0;
    }
    config = cliConfig(process.env, ['DB_URL']);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(err instanceof UsageError ? `export: ${err.message} (npm run export -- --help)` : err.message);
      return 2;
    }
    throw err;
  }

  const store = await openStore(config);
  if (!store) return 1;
  try {
    if (args.owner) await checkOwner(store, args.owner);
  } catch (err) {
    console.error(`export: ${(err as Error).message}`);
    await store.close();
    return 1;
  }

  const counts = { conversations: 0, messages: 0 };
  const report = progress('export');
  const what = () => `${counts.conversations} conversations, ${counts.messages} messages`;
  async function* counted(lines: AsyncGenerator<string>): AsyncGenerator<string> {
    for await (const line of lines) {
      if (line.startsWith('{"type":"message"')) counts.messages += 1;
      else if (line.startsWith('{"type":"conversation"')) counts.conversations += 1;
      report.tick(what);
      yield line;
    }
  }
  let failure: unknown = null;
  const body = Readable.fromWeb(
    pullStream(counted(ndjsonLines(sourceOf(store, args), new Date())), (err) => {
      failure = err;
      return exportErrorLine();
    }) as never,
  );
  const partial = args.out && `${args.out}.part`;
  const out = partial ? createWriteStream(partial) : process.stdout;
  try {
    for await (const chunk of body) if (!out.write(chunk)) await once(out, 'drain');
    if (partial) {
      (out as ReturnType<typeof createWriteStream>).end();
      await once(out, 'close');
    }
  } catch (err) {
    failure ??= err;
  } finally {
    await store.close().catch(() => {});
  }
  if (failure) {
    if (partial) rmSync(partial, { force: true });
    const detail = failure instanceof Error ? failure.message : String(failure);
    console.error(`export: failed after ${what()}: ${detail}`);
    return 1;
  }
  if (partial) renameSync(partial, args.out!);
  report.done(what);
  console.error(`export: ${what()}${args.out ? ` written to ${args.out}` : ''}.`);
  return 0;
}

process.exitCode = await main();
