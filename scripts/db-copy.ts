// `npm run db:copy -- --from DB_URL --to DB_URL`: copies a whole database, every owner with its
// sessions, users, keys and shares, between SQLite and Postgres in either direction (db/copy.ts).
// Run it again after an interruption: it resumes. It ends by counting and checksumming every
// table on both sides, and exits 1 if they differ.
import { parseArgs } from 'node:util';
import { COPY_TABLES, CopySideError, copyDatabase, type CopyResult } from '../db/copy.js';
import { explainDbFailure } from '../db/explain-failure.js';
import { describeDbTarget, parseDbUrl, type DbTarget } from '../db/url.js';
import { UsageError } from './cli-config.js';
import { progress } from './progress.js';

const USAGE = `Usage: npm run -s db:copy -- --from DB_URL --to DB_URL [--batch-size N]

  --from DB_URL     the database to copy: file:PATH (SQLite) or postgres://… (Postgres)
  --to DB_URL       where to: created tables and all (migrated first); it should hold nothing
                    else. A row already there under the same key is kept, not overwritten
  --batch-size N    rows per read and insert (default 1000)
  --max-batches N   stop after N batches that wrote rows (exit 3), to try resuming

Copies every table (users, api_keys, sessions, conversations, messages, conversation_shares,
share_links, server_settings) in batches by primary key, inserting rows that are missing: run
the same command again after an interruption and it resumes. Then counts and checksums every
table on both sides and prints the comparison as JSON. Copy from a database no server is
writing to, or the check may find the rows written meanwhile. Progress goes to stderr.
Exits 0 when both sides match, 1 when they differ or the copy fails, 2 on bad usage,
3 when stopped by --max-batches.`;

interface Args {
  from: DbTarget;
  to: DbTarget;
  batchSize: number;
  maxBatches: number | undefined;
}

function parse(argv: string[]): Args | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { from: { type: 'string' }, to: { type: 'string' }, 'batch-size': { type: 'string' }, 'max-batches': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  const v = parsed.values;
  if (v.help) return 'help';
  const target = (option: 'from' | 'to') => {
    const raw = v[option];
    if (raw === undefined) throw new UsageError(`--${option} DB_URL is required`);
    let parsedUrl: DbTarget;
    try {
      parsedUrl = parseDbUrl(raw);
    } catch (err) {
      throw new UsageError(`--${option} ${(err as Error).message}`);
    }
    if (parsedUrl.dialect === 'sqlite' && parsedUrl.path === ':memory:') throw new UsageError(`--${option} file::memory: is a database of this process only; name a file`);
    return parsedUrl;
  };
  const whole = (option: 'batch-size' | 'max-batches', fallback: number | undefined, max: number) => {
    const raw = v[option];
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw) || Number(raw) < 1 || Number(raw) > max) throw new UsageError(`--${option} must be a whole number from 1 to ${max}`);
    return Number(raw);
  };
  const args = { from: target('from'), to: target('to'), batchSize: whole('batch-size', 1000, 10_000)!, maxBatches: whole('max-batches', undefined, Number.MAX_SAFE_INTEGER) };
  if (JSON.stringify(args.from) === JSON.stringify(args.to)) throw new UsageError('--from and --to are the same database');
  return args;
}

async function main(): Promise<number> {
  let args: Args | 'help';
  try {
    args = parse(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`db:copy: ${err.message} (npm run db:copy -- --help)`);
    return 2;
  }
  if (args === 'help') {
    console.log(USAGE);
    return 0;
  }
  const report = progress('db:copy');
  let last = '';
  let result: CopyResult;
  try {
    result = await copyDatabase(args.from, args.to, {
      batchSize: args.batchSize,
      maxBatches: args.maxBatches,
      onProgress: ({ phase, table, read, copied, total }) => {
        last = phase === 'copy' ? `${table}: ${read}/${total} read, ${copied} copied` : `checking ${table}: ${read}/${total}`;
        report.tick(() => last);
      },
    });
  } catch (err) {
    if (!(err instanceof CopySideError)) throw err;
    const failed = err.side === 'from' ? `Cannot copy from ${describeDbTarget(err.target)}` : `Cannot copy to ${describeDbTarget(err.target)}`;
    console.error(explainDbFailure(err.cause, err.target, failed).replaceAll('DB_URL', err.side === 'from' ? '--from' : '--to'));
    return 1;
  }
  report.done(() => last);
  const out = { object: 'db_copy.result', from: describeDbTarget(args.from), to: describeDbTarget(args.to), ...result };
  console.log(JSON.stringify(out, null, 2));
  if (result.status === 'stopped') {
    console.error(`db:copy: stopped after ${result.batches} batches (--max-batches); run the same command again to resume.`);
    return 3;
  }
  if (result.status === 'mismatch') {
    const differ = COPY_TABLES.map((t) => t.name).filter((t) => !result.tables[t].match);
    console.error(`db:copy: the target differs from the source in ${differ.join(', ')}: see the counts and checksums above.`);
    return 1;
  }
  console.error('db:copy: every table has the same rows on both sides (counts and checksums match).');
  return 0;
}

process.exitCode = await main();
