// `npm run bench:export`: the memory and speed of exporting and importing large histories.
// For each dialect (SQLite in a temporary file; Postgres at BENCH_DATABASE_URL, else
// TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/test, in a scratch database) and
// each size (BENCH_EXPORT_MESSAGES, default 10000,100000): seed that many messages with bulk
// SQL, export them through the HTTP app to a file, import the file into a fresh database the
// same way, and report time, throughput and the heap after a forced GC at its highest during
// each (run under --expose-gc, which the npm script passes).
import { once } from 'node:events';
import { createReadStream, createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import postgres from 'postgres';
import { createApp } from '../app/app.js';
import { loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { hashSessionId, signSessionId } from '../app/session-ids.js';
import { InFlight } from '../app/streaming/in-flight.js';
import { createStore } from '../db/index.js';
import type { DbTarget } from '../db/url.js';
import { bulkSeedSql } from './seed-messages.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  console.error('bench:export needs --expose-gc (npm run bench:export passes it)');
  process.exit(2);
}
const SECRET = 'bench-export-secret-0123456789abcdef';
const sizes = (process.env.BENCH_EXPORT_MESSAGES ?? '10000,100000').split(',').map(Number);
const PER_CONVERSATION = 1_000;
const pgUrl = process.env.BENCH_DATABASE_URL ?? process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const MB = 1024 * 1024;

interface Scratch {
  target: DbTarget;
  sql(query: string): Promise<void>;
  drop(): Promise<void>;
}

async function scratch(dialect: 'sqlite' | 'postgres', dir: string): Promise<Scratch> {
  if (dialect === 'sqlite') {
    const file = path.join(dir, `${crypto.randomUUID()}.db`);
    const { default: Database } = await import('better-sqlite3');
    return {
      target: { dialect, path: file },
      async sql(query) {
        const db = new Database(file);
        db.exec(query);
        db.close();
      },
      drop: async () => rmSync(file, { force: true }),
    };
  }
  const name = `bench_export_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = postgres(pgUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();
  const url = new URL(pgUrl);
  url.pathname = `/${name}`;
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  return {
    target: { dialect, url: url.toString() },
    async sql(query) {
      await sql.unsafe(query);
    },
    async drop() {
      await sql.end();
      const a = postgres(pgUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists "${name}" with (force)`);
      await a.end();
    },
  };
}

function appOn(target: DbTarget) {
  const store = createStore(target);
  const config = loadConfig({
    PERSIST_TRANSCRIPTS: 'true',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_MAX: '0',
    SESSION_SECRET: SECRET,
    RETENTION_DAYS: '0',
    MAX_CONVERSATIONS_PER_SESSION: '1000000',
    MAX_MESSAGES_PER_CONVERSATION: '1000000',
    MAX_BYTES_PER_SESSION: String(1e12),
    IMPORT_MAX_BYTES: String(1e12),
  });
  const logger = createLogger('silent');
  const app = createApp({ config, store, logger, inFlight: new InFlight(store, { leaseMs: 15_000, sweepMs: 60_000, log: logger }) });
  return { app, store };
}

/**
 * Runs `work` twice: once timed, sampling only the RSS, and once sampling the heap after a
 * forced GC every `everyMs` (which slows it down too much to time). `work(pass)` must be
 * repeatable: pass 0 and 1 get fresh inputs.
 */
async function measured<T>(work: (pass: 0 | 1) => Promise<T>, everyMs = 100): Promise<{ result: T; seconds: number; heapMb: number; rssMb: number }> {
  gc!();
  let rss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => (rss = Math.max(rss, process.memoryUsage().rss)), 20);
  const started = performance.now();
  let result: T;
  try {
    result = await work(0);
  } finally {
    clearInterval(rssTimer);
  }
  const seconds = (performance.now() - started) / 1000;

  gc!();
  const base = process.memoryUsage().heapUsed;
  let heap = 0;
  const sample = () => {
    gc!();
    heap = Math.max(heap, process.memoryUsage().heapUsed - base);
  };
  const timer = setInterval(sample, everyMs);
  try {
    await work(1);
    sample();
  } finally {
    clearInterval(timer);
  }
  return { result, seconds, heapMb: heap / MB, rssMb: rss / MB };
}

const rows: string[] = [];
const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-export-'));
let pgOk = true;
try {
  const probe = postgres(pgUrl, { max: 1, connect_timeout: 3, onnotice: () => {} });
  await probe`select 1`;
  await probe.end();
} catch {
  pgOk = false;
  console.error(`Postgres at ${pgUrl} is unreachable: SQLite only.`);
}

try {
  for (const dialect of ['sqlite', 'postgres'] as const) {
    if (dialect === 'postgres' && !pgOk) continue;
    for (const size of sizes) {
      const session = signSessionId(SECRET);
      const source = await scratch(dialect, dir);
      const targets = [await scratch(dialect, dir), await scratch(dialect, dir)];
      try {
        const from = appOn(source.target);
        await from.store.migrate();
        for (const q of bulkSeedSql(dialect, { conversations: Math.ceil(size / PER_CONVERSATION), perConversation: Math.min(size, PER_CONVERSATION), sessionHash: hashSessionId(session) })) await source.sql(q);

        const file = path.join(dir, `${dialect}-${size}.jsonl`);
        const exported = await measured(async () => {
          const res = await from.app.request('/v1/conversations/export', { headers: { 'x-session-id': session } });
          const out = createWriteStream(file);
          const reader = res.body!.getReader();
          for (let next = await reader.read(); !next.done; next = await reader.read()) if (!out.write(next.value)) await once(out, 'drain');
          out.end();
          await once(out, 'close');
          return statSync(file).size;
        });
        await from.store.close();

        const imported = await measured(async (pass) => {
          const to = appOn(targets[pass]!.target);
          await to.store.migrate();
          try {
            const body = Readable.toWeb(createReadStream(file)) as ReadableStream<Uint8Array>;
            const res = await to.app.request('/v1/conversations/import', {
              method: 'POST',
              body,
              headers: { 'content-type': 'application/x-ndjson', 'x-session-id': session },
              duplex: 'half',
            } as RequestInit);
            const json = (await res.json()) as { imported?: number; error?: unknown };
            if (res.status !== 200 || json.imported !== Math.ceil(size / PER_CONVERSATION)) throw new Error(`import answered ${res.status}: ${JSON.stringify(json).slice(0, 500)}`);
            return json.imported;
          } finally {
            await to.store.close();
          }
        });
        const mb = exported.result / MB;
        rows.push(
          `| ${dialect} | ${size.toLocaleString('en')} | ${mb.toFixed(1)} | export | ${exported.seconds.toFixed(2)} | ${(mb / exported.seconds).toFixed(1)} | ${exported.heapMb.toFixed(1)} | ${exported.rssMb.toFixed(0)} |`,
          `| ${dialect} | ${size.toLocaleString('en')} | ${mb.toFixed(1)} | import | ${imported.seconds.toFixed(2)} | ${(mb / imported.seconds).toFixed(1)} | ${imported.heapMb.toFixed(1)} | ${imported.rssMb.toFixed(0)} |`,
        );
        console.error(rows.at(-2));
        console.error(rows.at(-1));
        rmSync(file, { force: true });
      } finally {
        await source.drop();
        for (const t of targets) await t.drop();
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(`node ${process.version} · ${new Date().toISOString()} · ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} · \`npm run bench:export\`\n`);
console.log('| dialect | messages | file (MB) | step | seconds | MB/s | heap growth, peak after GC (MB) | peak RSS (MB) |');
console.log('|---|---:|---:|---|---:|---:|---:|---:|');
for (const row of rows) console.log(row);
