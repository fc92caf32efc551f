// `npm run import -- FILE --owner OWNER [--source chatgpt] [--dry-run]`: imports an export file
// (or ChatGPT's conversations.json) into DB_URL's database for one owner, with the same checks,
// limits, redaction and consent as POST /v1/conversations/import. Prints its result as JSON.
import { createReadStream, statSync } from 'node:fs';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { ConfigError, type Config } from '../app/env.js';
import { chatgptItems, readChatgptExport } from '../app/portability/chatgpt.js';
import { ImportFormatError, ImportInterruptedError, exportFileItems, parseLimits, runImport, type ImportItem, type ImportResult } from '../app/portability/import.js';
import { BodyTooLargeError, readLines } from '../app/portability/lines.js';
import { checkOwner, parseOwner, type OwnerSpec } from '../app/portability/owner.js';
import { notStoredMessages } from '../app/privacy/policy.js';
import { redactSystemPrompts } from '../app/privacy/redact.js';
import type { Store } from '../db/store.js';
import { UsageError, cliConfig, openStore } from './cli-config.js';
import { progress } from './progress.js';

const USAGE = `Usage: npm run -s import -- FILE --owner OWNER [--source chatgpt] [--dry-run]

  FILE               an export file (JSON lines, as npm run export or GET /v1/conversations/export
                     make them); with --source chatgpt, ChatGPT's conversations.json; - reads stdin
  --owner OWNER      who will own them: user:USER_ID, session:SESSION_ID (the id as the client
                     holds it, x-session-id) or session-hash:SHA256_HEX (as the database keeps it)
  --source chatgpt   the file is ChatGPT's conversations.json (read whole, up to IMPORT_MAX_BYTES)
  --dry-run          check everything, write nothing

The same rules as POST /v1/conversations/import: each conversation whole or not at all, the
same file twice imports nothing, an id another owner has gets a new one, the owner's limits,
REDACT_SYSTEM_PROMPTS and consent apply. An export file may be of any size here; a line is
bounded by IMPORT_MAX_LINE_BYTES. Reads DB_URL and those settings; migrates the database first.
Prints the result as JSON, progress on stderr. Exits 2 on bad usage or an unreadable file, 1
when a conversation failed or the import could not run.`;

const SETTINGS = [
  'DB_URL',
  'MAX_CONVERSATIONS_PER_SESSION',
  'MAX_MESSAGES_PER_CONVERSATION',
  'MAX_BYTES_PER_SESSION',
  'JSON_MAX_DEPTH',
  'METADATA_MAX_DEPTH',
  'METADATA_MAX_BYTES',
  'REDACT_SYSTEM_PROMPTS',
  'CONSENT_REQUIRED',
  'RETENTION_DAYS',
  'DELETED_RETENTION_DAYS',
  'IMPORT_MAX_BYTES',
  'IMPORT_MAX_LINE_BYTES',
];

interface Args {
  file: string;
  owner: OwnerSpec;
  source: 'chat-proxy' | 'chatgpt';
  dryRun: boolean;
}

function parse(argv: string[]): Args | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: { owner: { type: 'string' }, source: { type: 'string' }, 'dry-run': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message.split('. ')[0]!.replace(/\.$/, ''));
  }
  if (parsed.values.help) return 'help';
  const [file, extra] = parsed.positionals;
  if (file === undefined) throw new UsageError('name the FILE to import (- for stdin)');
  if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
  if (parsed.values.owner === undefined) throw new UsageError('--owner is required: say who will own the conversations');
  const source = parsed.values.source ?? 'chat-proxy';
  if (source !== 'chat-proxy' && source !== 'chatgpt') throw new UsageError(`--source must be chatgpt (or chat-proxy, the default); got '${source}'`);
  if (file !== '-') {
    try {
      if (!statSync(file).isFile()) throw new Error();
    } catch {
      throw new UsageError(`cannot read '${file}': no such file`);
    }
  }
  try {
    return { file, owner: parseOwner(parsed.values.owner), source, dryRun: parsed.values['dry-run'] === true };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

/** Consent as the server checks it for this owner's session. */
async function refusal(store: Store, owner: OwnerSpec, config: Config): Promise<string | null> {
  const consent = await store.getConsent(owner.principal.sessionId);
  if (consent === 'denied') return notStoredMessages.consent_denied;
  if (config.privacy.consentRequired && consent !== 'granted') return notStoredMessages.consent_required;
  return null;
}

async function main(): Promise<number> {
  let args: Args | 'help';
  let config: Config;
  try {
    args = parse(process.argv.slice(2));
    if (args === 'help') {
      console.log(USAGE);
      return 0;
    }
    config = cliConfig(process.env, SETTINGS);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      console.error(err instanceof UsageError ? `import: ${err.message} (npm run import -- --help)` : err.message);
      return 2;
    }
    throw err;
  }

  const raw = await openStore(config);
  if (!raw) return 1;
  const store = config.redactSystemPrompts ? redactSystemPrompts(raw) : raw;
  const report = progress('import');
  let result: ImportResult | null = null;
  const what = () => (result ? `${result.imported} imported, ${result.skipped} skipped, ${result.conversations.length - result.imported - result.skipped} failed` : 'starting');
  try {
    await checkOwner(store, args.owner);
    const refused = await refusal(store, args.owner, config);
    if (refused) throw new Error(`${args.owner.label} cannot store conversations: ${refused}`);
    const input = Readable.toWeb(args.file === '-' ? process.stdin : createReadStream(args.file)) as ReadableStream<Uint8Array>;
    const limits = parseLimits(config);
    let items: AsyncIterable<ImportItem> | Iterable<ImportItem>;
    if (args.source === 'chatgpt') {
      const document = await readChatgptExport(input, config.imports.maxBytes).catch((err: unknown) => {
        if (!(err instanceof BodyTooLargeError)) throw err;
        throw new ImportFormatError(`the file is larger than IMPORT_MAX_BYTES (${config.imports.maxBytes} bytes), the most a ChatGPT file is read whole; raise it to import this file`);
      });
      items = chatgptItems(document, limits);
    } else {
      items = exportFileItems(readLines(input, { maxLineBytes: config.imports.maxLineBytes, maxBytes: Number.MAX_SAFE_INTEGER }), limits);
    }
    result = await runImport(store, items, {
      owner: args.owner.principal,
      dryRun: args.dryRun,
      limits: config.limits,
      retention: config.retention,
      onProgress: (r) => {
        result = r;
        report.tick(what);
      },
    });
  } catch (err) {
    if (err instanceof ImportFormatError) {
      console.error(`import: ${err.message}`);
      return 2;
    }
    const cause = err instanceof ImportInterruptedError ? err.cause : err;
    const done = err instanceof ImportInterruptedError ? ` after ${err.result.imported} imported (importing again skips them)` : '';
    console.error(`import: failed${done}: ${cause instanceof Error ? cause.message : String(cause)}`);
    return 1;
  } finally {
    await raw.close().catch(() => {});
  }
  report.done(what);
  console.log(JSON.stringify(result, null, 2));
  for (const warning of result.warnings) console.error(`import: warning: ${warning}`);
  return result.failed.length ? 1 : 0;
}

process.exitCode = await main();
