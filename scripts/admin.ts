// `npm run admin -- <command>`: users and API keys from the shell, against DB_URL's database, so
// the first admin key can be made before any server runs. The same rules, operations and JSON as
// the admin API (app/admin/). It reads DB_URL, RETENTION_BATCH_SIZE and the JWT settings only.
import { parseArgs } from 'node:util';
import type { z } from 'zod';
import { adminService, type AdminService } from '../app/admin/service.js';
import { createApiKeySchema, createUserSchema, listUsersQuerySchema } from '../app/admin/schemas.js';
import { ConfigError, loadConfig, type Config } from '../app/env.js';
import { ApiError } from '../app/errors.js';
import { explainDbFailure } from '../db/explain-failure.js';
import { DuplicateError, UserNotFoundError, dbErrorCode } from '../db/store.js';
import { openStore } from './cli-config.js';

const USAGE = `Usage: npm run admin -- <command> [options]

  create-user --name NAME [--admin] [--external-id SUBJECT [--issuer ISSUER]]
      a user; --external-id ties it to the identity provider's subject (issuer: --issuer, else
      the configured JWT issuer, AUTH_JWT_ISSUER, else '')
  create-key --user USER_ID [--name NAME] [--expires ISO-8601 | UNIX_SECONDS]
      an API key for the user; the key is printed this once and never again
  revoke-key KEY_ID
      refused at once by new servers, by running ones within 5 seconds
  list-users
      every user, oldest first
  delete-user USER_ID
      erases the user: their conversations, messages, shares, keys and sessions
  help

Reads DB_URL (default file:./data/dev.db) and migrates it first. Prints JSON; exits 2 on bad usage,
1 when the command fails.`;

/** Bad usage: said in one line, exit code 2. */
class UsageError extends Error {}

type Values = Record<string, string | boolean | undefined>;

interface Command {
  options?: Record<string, { type: 'string' | 'boolean' }>;
  /** Names of the positional arguments it needs, in order. */
  positionals?: string[];
  /** Checks the arguments (before the database is opened) and returns what to run. */
  prepare(values: Values, positionals: string[]): (admin: AdminService) => Promise<unknown>;
}

const commands: Record<string, Command> = {
  'create-user': {
    options: { name: { type: 'string' }, admin: { type: 'boolean' }, 'external-id': { type: 'string' }, issuer: { type: 'string' } },
    prepare(v) {
      const subject = v['external-id'] as string | undefined;
      if (v.issuer !== undefined && subject === undefined) throw new UsageError('--issuer needs --external-id');
      const input = checked(createUserSchema, {
        name: required(v, 'name'),
        ...(subject !== undefined && { external_id: v.issuer === undefined ? subject : { issuer: v.issuer, subject } }),
        is_admin: v.admin === true,
      });
      return (admin) => admin.createUser(input);
    },
  },
  'create-key': {
    options: { user: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string' } },
    prepare(v) {
      const user = required(v, 'user');
      const expires = v.expires as string | undefined;
      const input = checked(createApiKeySchema, { name: v.name, expires_at: expires !== undefined && /^\d+$/.test(expires) ? Number(expires) : expires });
      return async (admin) => {
        const made = await admin.createApiKey(user, input);
        console.error('This is the only time the key is shown: store it now.');
        return made;
      };
    },
  },
  'revoke-key': {
    positionals: ['KEY_ID'],
    prepare: (_, [id]) => async (admin) => {
      await admin.revokeApiKey(id!);
      return { id, object: 'api_key', revoked: true };
    },
  },
  'list-users': {
    prepare: () => async (admin) => {
      // Page by page, so a large user table is never held whole.
      process.stdout.write('[');
      let cursor: string | undefined;
      let first = true;
      do {
        const page = await admin.listUsers(checked(listUsersQuerySchema, { limit: '100', ...(cursor && { cursor }) }));
        for (const user of page.items) {
          process.stdout.write(`${first ? '' : ','}\n${indent(JSON.stringify(user, null, 2))}`);
          first = false;
        }
        cursor = page.next_cursor ?? undefined;
      } while (cursor);
      process.stdout.write(first ? ']\n' : '\n]\n');
      return undefined;
    },
  },
  'delete-user': {
    positionals: ['USER_ID'],
    prepare: (_, [id]) => (admin) => admin.eraseUser(id!),
  },
};

const indent = (text: string) => text.replace(/^/gm, '  ');

function required(values: Values, option: string): string {
  const value = values[option];
  if (typeof value !== 'string') throw new UsageError(`--${option} is required`);
  return value;
}

/** The admin API's schema, its complaint named by the option that carried the field. */
function checked<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const field = issue.path.map(String).join('.');
  const option = { name: '--name', external_id: '--external-id', 'external_id.subject': '--external-id', 'external_id.issuer': '--issuer', expires_at: '--expires' }[field];
  throw new UsageError(`${option ?? (field || 'input')}: ${issue.message}`);
}

function parse(argv: string[]): ((admin: AdminService) => Promise<unknown>) | 'help' {
  const [name, ...rest] = argv;
  if (name === undefined) throw new UsageError('no command given');
  if (name === 'help' || name === '--help' || name === '-h') return 'help';
  const command = Object.hasOwn(commands, name) ? commands[name]! : undefined;
  if (!command) throw new UsageError(`unknown command '${name}'`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options ?? {}, allowPositionals: true, strict: true });
  } catch (err) {
    // node:util's messages are one line and name the option; its advice about '--' is not ours.
    throw new UsageError(`${name}: ${(err as Error).message.split('. ')[0]!.replace(/\.$/, '')}`);
  }
  const wanted = command.positionals ?? [];
  if (parsed.positionals.length < wanted.length) throw new UsageError(`${name} needs ${wanted.join(' ')}`);
  if (parsed.positionals.length > wanted.length) throw new UsageError(`${name}: unexpected argument '${parsed.positionals[wanted.length]}'`);
  return command.prepare(parsed.values, parsed.positionals);
}

/** Only the variables this needs: a bad setting of the server's elsewhere does not stop it. */
function adminConfig(env: NodeJS.ProcessEnv): Config {
  const wanted = Object.entries(env).filter(([k]) => k === 'DB_URL' || k === 'RETENTION_BATCH_SIZE' || k.startsWith('AUTH_JWT') || k.startsWith('AUTH_JWKS'));
  return loadConfig(Object.fromEntries(wanted));
}

async function main(): Promise<number> {
  let run;
  let config: Config;
  try {
    run = parse(process.argv.slice(2));
    if (run === 'help') {
      console.log(USAGE);
      return 0;
    }
    config = adminConfig(process.env);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`admin: ${err.message} (npm run admin -- help lists the commands)`);
      return 2;
    }
    if (err instanceof ConfigError) {
      console.error(err.message);
      return 2;
    }
    throw err;
  }

  const store = await openStore(config);
  if (!store) return 1;
  try {
    const out = await run(adminService(store, config));
    if (out !== undefined) console.log(JSON.stringify(out, null, 2));
    return 0;
  } catch (err) {
    if (err instanceof ApiError || err instanceof DuplicateError || err instanceof UserNotFoundError) {
      console.error(`admin: ${err.message}`);
      return 1;
    }
    if (dbErrorCode(err) !== undefined) {
      console.error(explainDbFailure(err, config.db, `Cannot ${process.argv[2]}`));
      return 1;
    }
    throw err;
  } finally {
    await store.close().catch(() => {});
  }
}

process.exitCode = await main();
