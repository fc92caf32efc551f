import { explainDbFailure } from '../db/explain-failure.js';
import type { DbTarget } from '../db/url.js';

/**
 * A start-up failure explained for whoever runs the server: which variable, what failed, how to
 * fix it. The entry points print its message alone (no stack) and exit 1; the original error is
 * its `cause`.
 */
export class StartupError extends Error {
  override name = 'StartupError';
}

type Failure = { code?: unknown };

/** Explains why the database in DB_URL could not be opened or migrated. */
export function databaseStartupError(err: unknown, target: DbTarget): StartupError {
  return new StartupError(explainDbFailure(err, target), { cause: err });
}

/** Explains why the server could not listen on HOST:PORT; other errors are returned as they are. */
export function listenStartupError(err: unknown, host: string, port: number): unknown {
  const code = (err as Failure)?.code;
  if (code === 'EADDRINUSE') {
    return new StartupError(`Cannot start: port ${port} on ${host} is already in use (PORT, HOST).\nStop what listens there, or set PORT to a free port (PORT=0 picks one).`, { cause: err });
  }
  if (code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    return new StartupError(`Cannot start: listening on ${host}:${port} is not allowed here (${String(code)}; PORT, HOST).\nUse a port above 1023 and a HOST this machine has (0.0.0.0 = every interface).`, { cause: err });
  }
  return err;
}
