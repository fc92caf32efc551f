import { userInfo } from 'node:os';
import { describeDbTarget, type DbTarget } from './url.js';

type Failure = { code?: unknown; message?: unknown; address?: unknown; port?: unknown };

const UNREACHABLE = new Set(['ETIMEDOUT', 'CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ECONNRESET']);

/**
 * Why the database in DB_URL could not be opened or migrated, for whoever runs the server or
 * `npm run db:migrate`: which variable, what failed, how to fix it (for a missing database,
 * the createdb command), never the password.
 */
export function explainDbFailure(err: unknown, target: DbTarget, failed = 'Cannot start'): string {
  const failure = (err ?? {}) as Failure;
  const code = typeof failure.code === 'string' ? failure.code : undefined;
  const where = describeDbTarget(target);
  const raw = typeof failure.message === 'string' ? failure.message : String(err);
  const detail = target.dialect === 'postgres' ? withoutPassword(raw, target.url) : raw;
  let message: string;
  if (target.dialect === 'sqlite') {
    message =
      `${failed}: the SQLite database in DB_URL (${where}) could not be opened or migrated: ${detail}${code ? ` (${code})` : ''}.\n` +
      `Check that its directory can be created and written to, or set DB_URL to another file:PATH (file::memory: keeps nothing).`;
  } else {
    const pg = postgresParts(target.url);
    const at = `${pg.host}:${pg.port}`;
    const noPostgres = 'Without Postgres: DB_URL=file:./data/dev.db (SQLite), or PERSIST_TRANSCRIPTS=false (no history).';
    if (code === 'ENOTFOUND') {
      message = `${failed}: the host "${pg.host}" in DB_URL (${where}) cannot be resolved (${detail}).\nCheck the host name in DB_URL. ${noPostgres}`;
    } else if (code === 'ECONNREFUSED') {
      message = `${failed}: nothing accepts connections at ${at}, the Postgres in DB_URL (${where}): ${detail}.\nStart Postgres there, or fix the host and port in DB_URL. ${noPostgres}`;
    } else if (code && UNREACHABLE.has(code)) {
      message = `${failed}: no answer from ${at}, the Postgres in DB_URL (${where}): ${detail} (${code}).\nCheck the host, the port and any firewall between them. ${noPostgres}`;
    } else if (code === '3D000') {
      message =
        `${failed}: the database "${pg.database}" in DB_URL (${where}) does not exist on ${at}.\n` +
        `Create it:  ${createdbCommand(pg)}\nor point DB_URL at an existing database.`;
    } else if (code === '28P01' || code === '28000') {
      message =
        `${failed}: Postgres at ${at} refused the login in DB_URL (${where}): ${detail} (SQLSTATE ${code}).\n` +
        `Check the user name and password in DB_URL (postgres://USER:PASSWORD@HOST:PORT/DATABASE).`;
    } else {
      message = `${failed}: opening or migrating the Postgres database in DB_URL (${where}) failed: ${detail}${code ? ` (${code})` : ''}.`;
    }
  }
  return message;
}

interface PostgresParts {
  host: string;
  port: string;
  user: string | undefined;
  database: string;
}

/** Host, port, user and database as postgres.js resolves them from the URL and its defaults. */
function postgresParts(url: string): PostgresParts {
  const u = new URL(url);
  const user = decodeURIComponent(u.username) || process.env.PGUSER || safeUserName();
  return {
    host: u.hostname || u.searchParams.get('host') || 'localhost',
    port: u.port || '5432',
    user,
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || user || 'postgres',
  };
}

function safeUserName(): string | undefined {
  try {
    return userInfo().username;
  } catch {
    return undefined;
  }
}

/** `createdb -h HOST [-p PORT] [-U USER] NAME`, quoted for a POSIX shell where needed. */
function createdbCommand({ host, port, user, database }: PostgresParts): string {
  const quote = (s: string) => (/^[A-Za-z0-9_./:@%+=-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
  const args = ['createdb', '-h', quote(host.replace(/^\[|\]$/g, ''))];
  if (port !== '5432') args.push('-p', port);
  if (user) args.push('-U', quote(user));
  args.push(quote(database));
  return args.join(' ');
}

/** A driver message never shows the password, but make sure. */
function withoutPassword(message: string, url: string): string {
  const password = URL.canParse(url) ? decodeURIComponent(new URL(url).password) : '';
  return password.length >= 3 ? message.split(password).join('***') : message;
}
