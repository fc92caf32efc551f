import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { startServer } from '../app/server.js';
import { capturingLogger, testConfig } from './helpers/app.js';
import { postgresAvailable, TEST_DATABASE_URL } from './helpers/dialects.js';
import { spawnEntry } from './helpers/server-process.js';

/*
 * What someone starting the server for the first time sees when something is wrong: one message
 * naming the variable, what failed and how to fix it, exit code 1, no stack trace, no password.
 */

const PASSWORD = 'Pw-CANARY-4e1b9';
const STACK_LINE = /^\s+at /m;

/** `npm start` with persistence on DB_URL, run until it exits. */
async function startWith(dbUrl: string, env: Record<string, string> = {}) {
  const p = spawnEntry('app/index.ts', { PERSIST_TRANSCRIPTS: 'true', DB_URL: dbUrl, HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'info', ...env });
  const code = await p.exited;
  return { code, output: p.output() };
}

function withPassword(url: string, database?: string): string {
  const u = new URL(url);
  u.password = PASSWORD;
  if (database) u.pathname = `/${database}`;
  return u.toString();
}

/** A port that was just free: nothing listens there, so connecting is refused. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

function expectExplained(result: { code: number | string; output: string }, message: RegExp) {
  expect(result.code, result.output).toBe(1);
  expect(result.output).toMatch(message);
  expect(result.output).toContain('DB_URL');
  expect(result.output).not.toMatch(STACK_LINE);
  expect(result.output).not.toContain(PASSWORD);
}

describe('start-up with a database it cannot use', () => {
  it('a Postgres port where nothing listens: says so, names DB_URL, exits 1', async () => {
    const port = await freePort();
    const result = await startWith(`postgres://postgres:${PASSWORD}@127.0.0.1:${port}/chat`);
    expectExplained(result, new RegExp(`nothing accepts connections at 127\\.0\\.0\\.1:${port}`));
    expect(result.output).toContain(`postgres://postgres:***@127.0.0.1:${port}/chat`);
    expect(result.output).toMatch(/Start Postgres there, or fix the host and port in DB_URL/);
  });

  it('an unknown host: says which host cannot be resolved', async () => {
    const result = await startWith(`postgres://postgres:${PASSWORD}@no-such-db-host.invalid:5432/chat`);
    expectExplained(result, /the host "no-such-db-host\.invalid" in DB_URL .* cannot be resolved/);
    expect(result.output).toMatch(/ENOTFOUND/);
  });

  it.skipIf(!postgresAvailable)('a database that does not exist: gives the createdb command for it', async () => {
    const name = `missing_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const url = new URL(TEST_DATABASE_URL);
    const result = await startWith(withPassword(TEST_DATABASE_URL, name));
    expectExplained(result, new RegExp(`the database "${name}" in DB_URL .* does not exist`));
    const port = url.port && url.port !== '5432' ? ` -p ${url.port}` : '';
    expect(result.output).toContain(`createdb -h ${url.hostname}${port} -U ${url.username} ${name}`);
  });

  it.skipIf(!postgresAvailable)('a login Postgres refuses: says to check the user and password', async () => {
    const u = new URL(withPassword(TEST_DATABASE_URL));
    u.username = 'no_such_role_4e1b9';
    const result = await startWith(u.toString());
    expectExplained(result, /refused the login in DB_URL .*SQLSTATE 28(000|P01)/);
    expect(result.output).toMatch(/Check the user name and password in DB_URL/);
  });

  it('npm run db:migrate explains the same way', async () => {
    const port = await freePort();
    const p = spawnEntry('db/migrate-cli.ts', { DB_URL: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/chat` });
    expectExplained({ code: await p.exited, output: p.output() }, new RegExp(`^Cannot migrate: nothing accepts connections at 127\\.0\\.0\\.1:${port}`, 'm'));
  });

  it('a SQLite file that cannot be created: says which path', async () => {
    const result = await startWith('file:/dev/null/chat.db');
    expectExplained(result, /the SQLite database in DB_URL \(sqlite:\/dev\/null\/chat\.db\) could not be opened/);
  });
});

describe('start-up on a port that is taken', () => {
  let taken: Server;
  beforeAll(async () => {
    taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  });
  afterAll(() => new Promise<void>((r) => taken.close(() => r())));

  it('says PORT is in use and exits 1', async () => {
    const { port } = taken.address() as AddressInfo;
    const p = spawnEntry('app/index.ts', { HOST: '127.0.0.1', PORT: String(port), OPENAI_BASE_URL: 'http://127.0.0.1:9/v1' });
    expect(await p.exited, p.output()).toBe(1);
    expect(p.output()).toMatch(new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use \\(PORT, HOST\\)`));
    expect(p.output()).not.toMatch(STACK_LINE);
  });
});

describe('OPENAI_BASE_URL at start-up', () => {
  const start = async (env: Record<string, string>) => {
    const log = capturingLogger();
    const server = await startServer(testConfig({ PERSIST_TRANSCRIPTS: 'false', PORT: '0', HOST: '127.0.0.1', ...env }), { logger: log.logger });
    await server.close();
    return log.lines.map((l) => JSON.parse(l));
  };
  const warnings = (lines: any[]) => lines.filter((l) => l.level === 40).map((l) => l.msg as string);

  it.each(['http://127.0.0.1:9', 'https://api.openai.com/', 'http://localhost:11434/api'])('warns when %s has no version segment', async (url) => {
    const lines = await start({ OPENAI_BASE_URL: url });
    expect(warnings(lines)).toEqual([expect.stringMatching(/OPENAI_BASE_URL has no version segment such as \/v1/)]);
  });

  it.each(['https://api.openai.com/v1', 'https://openrouter.ai/api/v1', 'https://api.groq.com/openai/v1', 'https://generativelanguage.googleapis.com/v1beta/openai'])(
    'does not warn for %s',
    async (url) => {
      expect(warnings(await start({ OPENAI_BASE_URL: url }))).toEqual([]);
    },
  );

  it('warns that chats will answer 503 when it is not set', async () => {
    expect(warnings(await start({}))).toEqual([expect.stringMatching(/OPENAI_BASE_URL is not set: chat completions answer 503/)]);
  });

  it('never logs a key carried in its query string', async () => {
    const lines = await start({ OPENAI_BASE_URL: 'https://gateway.example/v1?api-version=2024-10-21&key=QUERY-CANARY-77c1&token=TOKEN-CANARY-91d0' });
    const text = JSON.stringify(lines);
    expect(text).not.toContain('QUERY-CANARY-77c1');
    expect(text).not.toContain('TOKEN-CANARY-91d0');
    expect(lines.find((l) => l.msg === 'listening').upstream).toBe('https://gateway.example/v1?api-version=2024-10-21&key=***&token=***');
  });

  it('is refused with user:password@, which fetch cannot send, and the password is not echoed', () => {
    const attempt = () => loadConfig({ OPENAI_BASE_URL: `https://user:${PASSWORD}@gateway.example/v1` });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/OPENAI_BASE_URL .*must not contain user:password@/);
    try {
      attempt();
    } catch (err) {
      expect((err as Error).message).not.toContain(PASSWORD);
    }
  });
});
