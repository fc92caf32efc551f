import { createApp } from '../../app/app.js';
import { loadConfig, type Config } from '../../app/env.js';
import { createLogger, type Logger } from '../../app/logger.js';
import { signSessionId } from '../../app/session-ids.js';
import { InFlight } from '../../app/streaming/in-flight.js';
import type { Store } from '../../db/store.js';

/** The session-signing secret every test server uses, so tests can mint ids as the server would. */
export const TEST_SESSION_SECRET = 'test-session-secret-0123456789abcdef';

/** Config as the server would parse it from these variables (persistence on, rate limiting off by default). */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ PERSIST_TRANSCRIPTS: 'true', DB_URL: 'file::memory:', LOG_LEVEL: 'silent', RATE_LIMIT_MAX: '0', SESSION_SECRET: TEST_SESSION_SECRET, ...env });
}

export function testApp(store: Store | null, env: Record<string, string> = {}, logger: Logger = createLogger('silent')) {
  const config = testConfig(env);
  const active = config.persist ? store : null;
  const inFlight = new InFlight(active, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: logger });
  return createApp({ config, store: active, logger, inFlight });
}

export type TestApp = ReturnType<typeof testApp>;

export interface Call {
  session?: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** The client's address as its socket would give it (app.request() has no socket). */
  address?: string;
}

/** The Node bindings of a request from `address`, as @hono/node-server passes them: `app.request(path, init, fromAddress(a))`. */
export const fromAddress = (address: string) => ({ incoming: { socket: { remoteAddress: address } } });

/** One request through the app, as a client would send it. */
export async function call(app: Pick<TestApp, 'request'>, method: string, path: string, { session, body, headers = {}, address }: Call = {}) {
  const init: RequestInit = { method, headers: { ...headers } };
  if (session) (init.headers as Record<string, string>)['x-session-id'] = session;
  if (body !== undefined) {
    (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const res = await app.request(path, init, address === undefined ? undefined : fromAddress(address));
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, json, text };
}

/** A session id as the test server would mint it. */
export const newSession = () => signSessionId(TEST_SESSION_SECRET);

/** A logger whose JSON lines are kept for the test to read. */
export function capturingLogger() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  return { logger, lines, text: () => lines.join('') };
}
