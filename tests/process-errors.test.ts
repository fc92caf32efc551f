import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';

const crashHook = fileURLToPath(new URL('./helpers/crash-on-signal.ts', import.meta.url));

// Both entry points install the same handlers; `npm run dev` would start its own mock and a
// SQLite file, so it runs here in memory with a placeholder upstream it never calls.
const entries = [
  ['npm start', 'app/index.ts', {}],
  ['npm run dev', 'app/dev.ts', { DB_URL: 'file::memory:', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', LOG_FORMAT: 'json' }],
] as const;

const crashes = [
  ['unhandled-rejection', 'unhandledRejection', 'unhandled promise rejection; exiting'],
  ['uncaught-exception', 'uncaughtException', 'uncaught exception; exiting'],
] as const;

describe.each(entries)('the %s process', (_, entry, env) => {
  const children: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(children.map((c) => c.kill('SIGKILL')));
  });

  it.each(crashes)('logs an unhandled error as JSON and exits 1 (%s)', async (crash, event, msg) => {
    const server = await startServerProcess({ ...env, CHAT_PROXY_TEST_CRASH: crash }, { entry, preload: [crashHook] });
    children.push(server);
    server.child.kill('SIGUSR2');
    expect(await server.exited).toBe(1);
    const lines = server
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l));
    const fatal = lines.find((l) => l.msg === msg);
    expect(fatal, server.output()).toMatchObject({
      level: 60,
      event,
      err: { type: 'PostgresError', code: '57P01', message: 'terminating connection due to administrator command' },
    });
    expect(fatal.err.stack).toContain('crash-on-signal');
  });
});
