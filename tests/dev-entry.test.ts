import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { spawnEntry, type EntryProcess } from './helpers/server-process.js';

/*
 * `npm run dev` is for people: readable log lines. `npm start` (and LOG_FORMAT=json anywhere)
 * keeps one JSON object per line for machines.
 */

const JSON_LINE = /^\{"level":\d+/m;
let running: EntryProcess | undefined;
afterEach(async () => {
  await running?.kill();
  running = undefined;
});

/** `npm run dev` on an in-memory database and a free port; resolves with its address once ready. */
async function dev(env: Record<string, string> = {}) {
  running = spawnEntry('app/dev.ts', { PORT: '0', HOST: '127.0.0.1', DB_URL: 'file::memory:', ...env });
  const [, port] = await running.waitFor(/Chat proxy ready at http:\/\/localhost:(\d+) \(persistence: sqlite\)/);
  return { process: running, url: `http://127.0.0.1:${port}` };
}

describe('log format', () => {
  it('npm run dev prints readable lines, not JSON', async () => {
    const { process, url } = await dev();
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    await process.waitFor(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: request .*"path":"\/v1\/chat\/completions".*"status":200/m);
    expect(process.output()).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: listening /m);
    expect(process.output()).not.toMatch(JSON_LINE);
  });

  it('npm run dev with LOG_FORMAT=json prints JSON lines', async () => {
    const { process, url } = await dev({ LOG_FORMAT: 'json' });
    await fetch(`${url}/healthz`);
    const [line] = await process.waitFor(/^\{.*"msg":"request".*\}$/m);
    expect(JSON.parse(line)).toMatchObject({ level: 30, path: '/healthz', status: 200 });
  });

  it('is JSON unless LOG_FORMAT says otherwise (npm start, tests, CI)', () => {
    expect(loadConfig({}).logFormat).toBe('json');
    expect(loadConfig({ LOG_FORMAT: 'pretty' }).logFormat).toBe('pretty');
    expect(() => loadConfig({ LOG_FORMAT: 'text' })).toThrow(/LOG_FORMAT/);
  });

  it('pretty lines keep the redaction of JSON ones', async () => {
    let out = '';
    let written!: () => void;
    const line = new Promise<void>((r) => (written = r));
    const sink = new Writable({
      write(chunk, _encoding, done) {
        out += String(chunk);
        written();
        done();
      },
    });
    const log = createLogger('info', sink, 'pretty');
    log.info({ headers: { authorization: 'Bearer CANARY-PRETTY-1f4e' }, apiKey: 'CANARY-PRETTY-2a9c' }, 'hello');
    await line;
    expect(out).toMatch(/INFO: hello/);
    expect(out).not.toContain('CANARY-PRETTY');
    expect(out).toContain('[redacted]');
  });
});
