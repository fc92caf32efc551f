import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type { PrettyOptions } from 'pino-pretty';

export type { Logger } from 'pino';

/**
 * Structured JSON logs. Request and header objects are never logged whole; the redact list is a
 * second line of defence for anything that slips into a log call by mistake. Errors are logged
 * under `err` and go through `serializeError`.
 */
export function createLogger(level: string = 'info', destination?: pino.DestinationStream, format: 'json' | 'pretty' = 'json'): Logger {
  return pino(
    {
      level,
      base: undefined,
      serializers: { err: serializeError },
      redact: {
        paths: ['authorization', 'cookie', 'apiKey', 'api_key', '*.authorization', '*.cookie', '*.apiKey', 'headers', '*.headers'],
        censor: '[redacted]',
      },
    },
    format === 'pretty' ? prettyStream(destination) : destination,
  );
}

/**
 * Human-readable lines for `npm run dev` (LOG_FORMAT=pretty): one line per record, local time.
 * pino-pretty is loaded only when asked for, so JSON logging (production, tests) never loads it;
 * it formats in this thread, synchronously, so lines are not lost when the process exits.
 */
function prettyStream(destination?: pino.DestinationStream): pino.DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: PrettyOptions) => pino.DestinationStream;
  return pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true, sync: true, ...(destination && { destination }) });
}

/** What a log line keeps of an error. */
export interface LoggedError {
  type: string;
  code?: string | number;
  message: string;
  stack?: string;
  cause?: LoggedError;
}

const MAX_CAUSES = 4;
const MAX_FRAMES = 8;
const MAX_MESSAGE_CHARS = 300;

/**
 * An error as it may be logged: its type, code, a message without data and the first frames of
 * its stack, then the same for its causes. Nothing else: database errors carry the statement's
 * parameters (Drizzle's `params`, postgres.js's `parameters` and `args`, the SQL in `query`),
 * which are a conversation's text, and Drizzle even puts them in its message.
 */
export function serializeError(err: unknown): LoggedError {
  return describe(err, 0, new Set());
}

function describe(err: unknown, depth: number, seen: Set<unknown>): LoggedError {
  if (err === null || typeof err !== 'object') return { type: typeof err, message: clean(String(err)) };
  seen.add(err);
  const e = err as { name?: unknown; code?: unknown; message?: unknown; stack?: unknown; cause?: unknown; query?: unknown; params?: unknown };
  const ctor = (err as object).constructor;
  const type = typeof ctor === 'function' && ctor.name && ctor.name !== 'Object' ? ctor.name : typeof e.name === 'string' ? e.name : 'Error';
  const cause = e.cause !== undefined && !seen.has(e.cause) && depth < MAX_CAUSES ? describe(e.cause, depth + 1, seen) : undefined;
  // A failed query's own message is its SQL and parameters; what went wrong is its cause's.
  const failedQuery = typeof e.query === 'string' && 'params' in e;
  const message = failedQuery ? (cause?.message ?? 'query failed') : clean(typeof e.message === 'string' ? e.message : '');
  const logged: LoggedError = { type, message };
  if (typeof e.code === 'string' || typeof e.code === 'number') logged.code = e.code;
  else if (failedQuery && cause?.code !== undefined) logged.code = cause.code;
  if (typeof e.stack === 'string') {
    // Only the frames: the stack's first lines repeat the message.
    const frames = e.stack.split('\n').filter((line) => /^\s+at /.test(line));
    if (frames.length) logged.stack = frames.slice(0, MAX_FRAMES).join('\n');
  }
  if (cause) logged.cause = cause;
  return logged;
}

/**
 * The first line of a message, with quoted values replaced, shortened: database and JSON errors
 * quote the offending value (`invalid input syntax for type uuid: "…"`), and only quoted
 * identifiers (a constraint's or a column's name) are worth keeping. A double quote left open
 * by the end of the line hides the rest.
 */
function clean(message: string): string {
  const line = message.split('\n', 1)[0]!;
  const quotedValues = /"([^"]*)("|$)|'([^'\s]*)'/g;
  return line
    .replace(quotedValues, (quoted, double?: string, close?: string, single?: string) => {
      if (double !== undefined && close === '"' && IDENTIFIER.test(double)) return quoted;
      if (single !== undefined && IDENTIFIER.test(single)) return quoted;
      return double !== undefined ? '"…"' : "'…'";
    })
    .slice(0, MAX_MESSAGE_CHARS);
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$.]{0,62}$/;
