// `npm run soak`: load with verification. For a bounded time, hundreds of concurrent streaming
// conversations (several turns each) with random client aborts and upstream faults run against
// real server processes: one on a temp SQLite file, then two on one scratch Postgres database
// with the clients spread over both. Once the load stops and every stream has settled, the
// servers are stopped with SIGTERM (they must exit 0) and every conversation in the database is
// checked against what its client saw: no message lost, duplicated, reordered or garbled, no
// seq gap, nothing left `streaming`. Exit code 1 on any mismatch.
//
// Env: SOAK_SECONDS (load per phase, default 45), SOAK_CONCURRENCY (virtual clients, default 200),
// SOAK_PHASES (default "sqlite,postgres"), SOAK_SEED (default random; printed),
// SOAK_PG_URL (admin connection used to create/drop the scratch database,
// default postgres://postgres@127.0.0.1:5432/postgres), SOAK_DUMP (file: every conversation as
// the clients saw it, one JSON line each, for digging into a mismatch).
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import { hashSessionId } from '../app/session-ids.js';
import { createStore, parseDbUrl } from '../db/index.js';
import type { Principal } from '../db/store.js';
import { runLoad, type ConversationRecord, type Endpoint } from './soak-client.js';
import { formatMismatch, newTally, verifyConversation, type Mismatch, type StoredMessage, type Tally } from './soak-verify.js';

const ROOT = path.resolve(import.meta.dirname, '..');

// ---------- configuration ----------

function envNumber(name: string, fallback: number, min: number, max: number, integer = true): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
    throw new Error(`${name} must be ${integer ? 'a whole number' : 'a number'} from ${min} to ${max} (got ${JSON.stringify(raw)})`);
  }
  return n;
}

type PhaseName = 'sqlite' | 'postgres';
const SECONDS = envNumber('SOAK_SECONDS', 45, 1, 3600, false);
const CONCURRENCY = envNumber('SOAK_CONCURRENCY', 200, 1, 2000);
const SEED = envNumber('SOAK_SEED', Math.floor(Math.random() * 2 ** 31), 0, 2 ** 31 - 1);
const PHASES = (process.env.SOAK_PHASES ?? 'sqlite,postgres')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
  .map((p) => {
    if (p !== 'sqlite' && p !== 'postgres') throw new Error(`SOAK_PHASES: unknown phase ${JSON.stringify(p)} (known: sqlite, postgres)`);
    return p as PhaseName;
  });
const PG_ADMIN_URL = process.env.SOAK_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DUMP = process.env.SOAK_DUMP || null;
const UPSTREAM_TIMEOUT_MS = 2_000;
const SETTLE_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 30_000;
const API_SAMPLE = 100;
const SHOW_MISMATCHES = 8;

// ---------- cleanup of everything this run starts ----------

const children = new Set<ChildProcess>();
const cleanups: (() => Promise<void> | void)[] = [];
let interrupted = false;
let cleaning: Promise<void> | undefined;

// A watchdog in its own process group that removes whatever is still listed if this process
// dies without cleaning up (see soak-janitor.ts).
const janitor = spawn(process.execPath, ['--import', 'tsx', 'scripts/soak-janitor.ts'], {
  cwd: ROOT,
  detached: true,
  stdio: ['pipe', 'ignore', 'inherit'],
});
janitor.unref();
janitor.stdin!.on('error', () => {});
(janitor.stdin as unknown as { unref?: () => void }).unref?.();
const note = (n: Record<string, unknown>) => {
  if (janitor.stdin!.writable) janitor.stdin!.write(`${JSON.stringify(n)}\n`);
};

function cleanupAll(): Promise<void> {
  return (cleaning ??= (async () => {
    const live = [...children];
    for (const c of live) c.kill('SIGTERM');
    await Promise.race([
      Promise.all(live.map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))))),
      new Promise((r) => setTimeout(r, 5_000)),
    ]);
    for (const c of children) c.kill('SIGKILL');
    await drainCleanups();
    janitor.stdin!.end();
  })());
}

/** Runs (newest first) and forgets the registered cleanups: temp files, scratch databases. */
async function drainCleanups(): Promise<void> {
  while (cleanups.length) {
    try {
      await cleanups.pop()!();
    } catch (err) {
      console.error(`cleanup: ${(err as Error).message}`);
    }
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // `on`, not `once`: tsx relays the signal a second time, and with no listener left its
  // preflight would exit the process mid-cleanup.
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: stopping, cleaning up processes and scratch databases…`);
    void cleanupAll().finally(() => process.exit(130));
  });
}

// ---------- child processes ----------

interface LogSummary {
  /** "warn: msg" → count */
  counts: Map<string, number>;
  /** First few error-level lines (and any non-JSON output) verbatim. */
  samples: string[];
}

interface Child {
  child: ChildProcess;
  exited: Promise<number | string>;
  log: LogSummary;
  tail(): string;
}

const LEVELS: Record<number, string> = { 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

function spawnNode(script: string, env: Record<string, string>, stdin: 'ignore' | 'pipe' = 'ignore'): Child {
  const base: Record<string, string> = {};
  for (const k of ['PATH', 'HOME', 'TMPDIR', 'TEMP', 'TMP']) if (process.env[k]) base[k] = process.env[k]!;
  const child = spawn(process.execPath, ['--import', 'tsx', script], { cwd: ROOT, env: { ...base, ...env }, stdio: [stdin, 'pipe', 'pipe'] });
  children.add(child);
  if (child.pid) note({ op: 'add', kind: 'pid', pid: child.pid });
  const exited = new Promise<number | string>((r) =>
    child.once('exit', (code, signal) => {
      children.delete(child);
      if (child.pid) note({ op: 'remove', kind: 'pid', pid: child.pid });
      r(code ?? signal ?? -1);
    }),
  );
  const log: LogSummary = { counts: new Map(), samples: [] };
  let tail = '';
  const onLine = (line: string) => {
    tail = (tail + line + '\n').slice(-8_000);
    if (!line.trim()) return;
    let parsed: any;
    try {
      parsed = JSON.parse(line);
    } catch {
      parsed = null;
    }
    const level = parsed && typeof parsed.level === 'number' ? (LEVELS[parsed.level] ?? String(parsed.level)) : 'output';
    if (level === 'info') return;
    const err = parsed?.err;
    const why = typeof err?.message === 'string' ? ` (${err.type ?? 'Error'}: ${err.message.replace(/127\.0\.0\.1:\d+/g, 'mock').slice(0, 90)})` : '';
    const key = `${level}: ${parsed?.msg ?? line.slice(0, 120)}${why}`;
    log.counts.set(key, (log.counts.get(key) ?? 0) + 1);
    // Verbatim samples only of what is not an ordinary upstream failure answered with an HTTP error.
    const ordinary = err?.type === 'ApiError';
    if ((level === 'error' || level === 'fatal' || level === 'output') && !ordinary && log.samples.length < 5) log.samples.push(line.slice(0, 2_000));
  };
  createInterface({ input: child.stderr! }).on('line', onLine);
  // stdout is read by the caller for the mock; servers log there.
  if (!script.includes('soak-mock')) createInterface({ input: child.stdout! }).on('line', onLine);
  return { child, exited, log, tail: () => tail };
}

async function startMock(): Promise<{ url: string; proc: Child }> {
  const proc = spawnNode('scripts/soak-mock.ts', {}, 'pipe');
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`mock upstream did not start:\n${proc.tail()}`)), 20_000);
    createInterface({ input: proc.child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(line).url);
      } catch {
        reject(new Error(`mock upstream said: ${line}`));
      }
    });
    void proc.exited.then((code) => reject(new Error(`mock upstream exited (${code}):\n${proc.tail()}`)));
  });
  return { url, proc };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** CPU seconds a process has used so far (Linux /proc; null elsewhere). */
function cpuSeconds(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 of the line, in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

interface ServerProc extends Child {
  url: string;
}

/** `node --import tsx app/index.ts` (what `npm start` runs), ready once /healthz answers 200. */
async function startServer(env: Record<string, string>): Promise<ServerProc> {
  const port = await freePort();
  const proc = spawnNode('app/index.ts', { HOST: '127.0.0.1', PORT: String(port), ...env });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  let exitedWith: number | string | null = null;
  void proc.exited.then((c) => (exitedWith = c));
  for (;;) {
    if (exitedWith !== null) throw new Error(`server exited (${exitedWith}) before it was ready:\n${proc.tail()}`);
    if (Date.now() > deadline) throw new Error(`server not ready after 30 s:\n${proc.tail()}`);
    try {
      const res = await fetch(`${url}/healthz`);
      const body = (await res.json()) as any;
      if (res.ok && body?.persistence?.ok) return { ...proc, url };
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
}

// ---------- scratch databases ----------

interface Db {
  url: string;
  /** Raw counts straight from the tables, independent of the store code under test. */
  counts(): Promise<{ conversations: number; messages: number; open: number }>;
  closeRaw(): Promise<void>;
}

async function sqliteDb(): Promise<Db> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-proxy-soak-'));
  note({ op: 'add', kind: 'dir', path: dir });
  cleanups.push(() => {
    rmSync(dir, { recursive: true, force: true });
    note({ op: 'remove', kind: 'dir', path: dir });
  });
  const file = path.join(dir, 'soak.db');
  let raw: Database.Database | undefined;
  return {
    url: `file:${file}`,
    async counts() {
      raw ??= new Database(file, { readonly: true, fileMustExist: true, timeout: 5_000 });
      const one = (q: string) => (raw!.prepare(q).get() as { n: number }).n;
      return {
        conversations: one('select count(*) as n from conversations'),
        messages: one('select count(*) as n from messages'),
        open: one(`select count(*) as n from messages where status in ('streaming', 'draft')`),
      };
    },
    async closeRaw() {
      raw?.close();
      raw = undefined;
    },
  };
}

async function postgresDb(): Promise<Db> {
  const name = `soak_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
  note({ op: 'add', kind: 'db', name, adminUrl: PG_ADMIN_URL });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end({ timeout: 2 });
  }
  cleanups.push(async () => {
    const a = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 });
    try {
      await a.unsafe(`drop database if exists "${name}" with (force)`);
      note({ op: 'remove', kind: 'db', name });
    } finally {
      await a.end({ timeout: 2 });
    }
  });
  const u = new URL(PG_ADMIN_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  let raw: postgres.Sql | undefined;
  return {
    url,
    async counts() {
      raw ??= postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
      const [row] = await raw<{ conversations: number; messages: number; open: number }[]>`
        select (select count(*)::int from conversations) as conversations,
               (select count(*)::int from messages) as messages,
               (select count(*)::int from messages where status in ('streaming', 'draft')) as open`;
      return row!;
    },
    async closeRaw() {
      await raw?.end({ timeout: 2 });
      raw = undefined;
    },
  };
}

// ---------- one phase ----------

interface PhaseResult {
  name: PhaseName;
  /** 1-minute load average of the machine when the load stopped. */
  loadAvg: number;
  servers: number;
  loadSeconds: number;
  requests: number;
  streams200: number;
  ttfb: { p50: number; p99: number; n: number };
  /** The same, split: requests on a reused keep-alive connection, and on a new connection. */
  ttfbReused: { p50: number; p99: number; n: number };
  ttfbNew: { p50: number; p99: number; n: number };
  /** Cores each server process used on average during the load (null where unknown). */
  serverCores: (number | null)[];
  settleMs: number;
  exitCodes: (number | string)[];
  tally: Tally;
  apiChecked: number;
  dbCounts: { conversations: number; messages: number; open: number };
  mismatches: Mismatch[];
  logs: LogSummary[];
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function pool<T>(items: T[], workers: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(workers, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

async function runPhase(name: PhaseName, mockUrl: string, seed: number): Promise<PhaseResult> {
  const db = name === 'sqlite' ? await sqliteDb() : await postgresDb();
  cleanups.push(() => db.closeRaw());
  const serverCount = name === 'sqlite' ? 1 : 2;
  const env = {
    PERSIST_TRANSCRIPTS: 'true',
    DB_URL: db.url,
    OPENAI_BASE_URL: mockUrl,
    OPENAI_API_KEY: 'soak-test-key',
    LOG_LEVEL: 'warn',
    MAX_CONVERSATIONS_PER_SESSION: '1000000',
    RATE_LIMIT_MAX: '1000000',
    // All the load comes from one address: the per-address and process caps would refuse most of it.
    MAX_STREAMS_PER_ADDRESS: '0',
    MAX_STREAMS: '0',
    UPSTREAM_TIMEOUT_MS: String(UPSTREAM_TIMEOUT_MS),
    // The clients name their sessions (a readable id per virtual client, seeded for replay).
    ALLOW_CLIENT_SESSION_IDS: 'true',
  };
  console.log(`\n[${name}] ${serverCount} server process${serverCount > 1 ? 'es' : ''} on ${name === 'sqlite' ? db.url : db.url.replace(/\/\/[^@]*@/, '//')}`);
  const servers = await Promise.all(Array.from({ length: serverCount }, () => startServer(env)));
  const agents = servers.map(() => new http.Agent({ keepAlive: true, maxSockets: Infinity }));
  const endpoints: Endpoint[] = servers.map((s, i) => ({ url: s.url, agent: agents[i]! }));
  const mismatches: Mismatch[] = [];
  const report = (m: Mismatch) => mismatches.push(m);

  // Load.
  console.log(`[${name}] load: ${CONCURRENCY} virtual clients for ${SECONDS} s…`);
  const conversations: ConversationRecord[] = [];
  const t0 = performance.now();
  const cpu0 = servers.map((s) => cpuSeconds(s.child.pid));
  const ticker = setInterval(() => {
    const turns = conversations.reduce((n, c) => n + c.turns.length, 0);
    console.log(`[${name}]   ${((performance.now() - t0) / 1000).toFixed(0)} s: ${conversations.length} conversations, ${turns} turns done`);
  }, 10_000);
  try {
    await runLoad({
      phase: name,
      endpoints,
      concurrency: CONCURRENCY,
      deadline: Date.now() + SECONDS * 1000,
      seed,
      conversations,
      stopped: () => interrupted,
    });
  } finally {
    clearInterval(ticker);
  }
  const loadSeconds = (performance.now() - t0) / 1000;
  const loadAvg = os.loadavg()[0]!;
  const serverCores = servers.map((s, i) => {
    const a = cpu0[i];
    const b = cpuSeconds(s.child.pid);
    return a === null || a === undefined || b === null ? null : (b - a) / loadSeconds;
  });
  for (const a of agents) a.destroy();
  if (DUMP) {
    appendFileSync(DUMP, conversations.map((c) => `${JSON.stringify({ ...c, turns: c.turns.map((t) => ({ ...t, startedAt: t.startedAt - t0 })) })}\n`).join(''));
  }
  const turns = conversations.flatMap((c) => c.turns);
  const answered = turns.filter((t) => t.status === 200 && t.ttfbMs !== null);
  const stats = (list: typeof answered) => {
    const v = list.map((t) => t.ttfbMs!).sort((a, b) => a - b);
    return { p50: percentile(v, 50), p99: percentile(v, 99), n: v.length };
  };

  // Settle: every stream's writes done (nothing streaming), before anything is stopped.
  const s0 = performance.now();
  let open = -1;
  while (performance.now() - s0 < SETTLE_TIMEOUT_MS) {
    open = (await db.counts()).open;
    if (open === 0) break;
    await sleep(100);
  }
  const settleMs = performance.now() - s0;
  if (open !== 0) {
    report({ phase: name, source: 'store', sessionId: '-', conversationId: null, turn: null, seq: null, plan: null, what: `${open} message(s) still streaming/draft ${SETTLE_TIMEOUT_MS / 1000} s after the load stopped` });
  }

  // The HTTP API, while the servers are up: a sample of conversations through a random server.
  const withId = conversations.filter((c) => c.id);
  const sample = [...withId].sort(() => Math.random() - 0.5).slice(0, API_SAMPLE);
  let apiChecked = 0;
  await pool(sample, 4, async (conv) => {
    const server = servers[Math.floor(Math.random() * servers.length)]!;
    let res: Response;
    try {
      res = await fetch(`${server.url}/v1/conversations/${conv.id}?view=tree&limit=200`, { headers: { 'x-session-id': conv.sessionId } });
    } catch (err) {
      report({ phase: name, source: 'api', sessionId: conv.sessionId, conversationId: conv.id, turn: null, seq: null, plan: null, what: `GET /v1/conversations/:id failed: ${(err as Error).message}` });
      return;
    }
    if (!res.ok) {
      report({ phase: name, source: 'api', sessionId: conv.sessionId, conversationId: conv.id, turn: null, seq: null, plan: null, what: `GET /v1/conversations/:id answered ${res.status}: ${(await res.text()).slice(0, 300)}` });
      return;
    }
    const body = (await res.json()) as {
      messages: { id: string; parent_message_id: string | null; seq: number; role: string; status: string; content: string; finish_reason: string | null }[];
    };
    const stored: StoredMessage[] = body.messages.map((m) => ({
      id: m.id,
      parentId: m.parent_message_id,
      seq: m.seq,
      role: m.role,
      status: m.status,
      content: m.content,
      finishReason: m.finish_reason,
    }));
    verifyConversation(conv, stored, null, 'api', report, null);
    apiChecked++;
  });

  // Graceful stop: SIGTERM, each must exit 0.
  for (const s of servers) s.child.kill('SIGTERM');
  const exitCodes = await Promise.all(
    servers.map((s) =>
      Promise.race([s.exited, sleep(STOP_TIMEOUT_MS).then(() => `still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM`)]),
    ),
  );
  exitCodes.forEach((code, i) => {
    if (code !== 0) {
      report({ phase: name, source: 'store', sessionId: '-', conversationId: null, turn: null, seq: null, plan: null, what: `server ${i + 1} did not exit 0 on SIGTERM: ${code}\n${servers[i]!.tail().slice(-2_000)}` });
      servers[i]!.child.kill('SIGKILL');
    }
  });

  // Verify every conversation from the database, through the store.
  const target = parseDbUrl(db.url);
  const store = createStore(target, { max: 4 });
  const tally = newTally();
  let dbCounts = { conversations: 0, messages: 0, open: 0 };
  try {
    await pool(conversations, 8, async (conv) => {
      // The database keys sessions by the hash of their id, as the server does.
      const owner: Principal = { sessionId: hashSessionId(conv.sessionId), userId: null };
      const found = conv.id ? await store.getConversation(owner, conv.id) : null;
      const stored = found
        ? (await store.listMessages(found.id, { afterSeq: 0, limit: 100_000 })).map((m) => ({
            id: m.id,
            parentId: m.parentMessageId,
            seq: m.seq,
            role: m.role,
            status: m.status,
            content: m.content,
            finishReason: m.finishReason,
          }))
        : null;
      verifyConversation(conv, stored, found?.lastSeq ?? null, 'store', report, tally);
    });

    // No conversation the clients do not know of (e.g. created twice, or by a turn whose id was lost).
    const bySession = new Map<string, Set<string>>();
    for (const c of conversations) {
      const set = bySession.get(c.sessionId) ?? new Set<string>();
      if (c.id) set.add(c.id);
      bySession.set(c.sessionId, set);
    }
    await pool([...bySession], 8, async ([sessionId, known]) => {
      const owner: Principal = { sessionId: hashSessionId(sessionId), userId: null };
      let after = null;
      for (;;) {
        const page = await store.listConversations(owner, { limit: 100, after, includeDeleted: true });
        for (const c of page.items) {
          if (!known.has(c.id)) {
            const msgs = await store.listMessages(c.id, { afterSeq: 0, limit: 50 });
            report({
              phase: name,
              source: 'store',
              sessionId,
              conversationId: c.id,
              turn: null,
              seq: null,
              plan: null,
              what: 'conversation in the database that no client turn was told about',
              actual: msgs.map((m) => `${m.seq}:${m.role}/${m.status} ${JSON.stringify(m.content.slice(0, 40))}`).join('; '),
            });
          }
        }
        const last = page.items.at(-1);
        if (!page.hasMore || !last) break;
        after = { createdAt: last.createdAt, id: last.id };
      }
    });
    dbCounts = await db.counts();
  } finally {
    await store.close();
  }
  if (dbCounts.open !== 0) {
    report({ phase: name, source: 'store', sessionId: '-', conversationId: null, turn: null, seq: null, plan: null, what: `${dbCounts.open} message(s) left streaming/draft after the servers stopped` });
  }
  if (dbCounts.messages !== tally.messages) {
    report({ phase: name, source: 'store', sessionId: '-', conversationId: null, turn: null, seq: null, plan: null, what: 'messages in the database vs messages checked', expected: String(tally.messages), actual: String(dbCounts.messages) });
  }

  return {
    name,
    loadAvg,
    servers: serverCount,
    loadSeconds,
    requests: turns.length,
    streams200: turns.filter((t) => t.status === 200).length,
    ttfb: stats(answered),
    ttfbReused: stats(answered.filter((t) => t.connectMs === null)),
    ttfbNew: stats(answered.filter((t) => t.connectMs !== null)),
    serverCores,
    settleMs,
    exitCodes,
    tally,
    apiChecked,
    dbCounts,
    mismatches,
    logs: servers.map((s) => s.log),
  };
}

// ---------- report ----------

function printPhase(r: PhaseResult): void {
  const t = r.tally;
  const lines = [
    `[${r.name}] results (${r.servers} server process${r.servers > 1 ? 'es' : ''}, ${CONCURRENCY} clients, ${r.loadSeconds.toFixed(1)} s of load)`,
    `  conversations ${t.conversations}, turns ${t.turns}, messages checked ${t.messages} (database holds ${r.dbCounts.conversations} conversations, ${r.dbCounts.messages} messages)`,
    `  throughput: ${(r.requests / r.loadSeconds).toFixed(1)} streams/s (${r.requests} requests, ${r.streams200} answered 200)`,
    `  time to first byte (200 streams, n=${r.ttfb.n}): p50 ${r.ttfb.p50.toFixed(1)} ms, p99 ${r.ttfb.p99.toFixed(1)} ms` +
      ` — on a reused connection (n=${r.ttfbReused.n}) p50 ${r.ttfbReused.p50.toFixed(1)} / p99 ${r.ttfbReused.p99.toFixed(1)} ms,` +
      ` on a new connection (n=${r.ttfbNew.n}) p50 ${r.ttfbNew.p50.toFixed(1)} / p99 ${r.ttfbNew.p99.toFixed(1)} ms`,
    `  machine: ${os.cpus().length} cores, load average ${r.loadAvg.toFixed(2)} when the load stopped; server CPU ${r.serverCores.map((c) => (c === null ? '?' : `${c.toFixed(2)} cores`)).join(', ')}`,
    `  settled (nothing streaming) ${r.settleMs.toFixed(0)} ms after the load; servers exited ${r.exitCodes.join(', ')} on SIGTERM; HTTP API re-checked ${r.apiChecked} conversations`,
    `  outcomes:`,
    ...[...t.outcomes].sort((a, b) => b[1] - a[1]).map(([k, n]) => `    ${String(n).padStart(7)}  ${k}`),
  ];
  r.logs.forEach((log, i) => {
    if (!log.counts.size) return;
    lines.push(`  server ${i + 1} log (non-info lines):`);
    for (const [k, n] of [...log.counts].sort((a, b) => b[1] - a[1]).slice(0, 10)) lines.push(`    ${String(n).padStart(7)}  ${k}`);
    for (const s of log.samples) lines.push(`      sample: ${s.slice(0, 1_000)}`);
  });
  lines.push(`  mismatches: ${r.mismatches.length}`);
  if (r.mismatches.length) {
    const kinds = new Map<string, number>();
    for (const m of r.mismatches) {
      const k = `${m.source}: ${m.plan ? `(${m.plan}) ` : ''}${m.what.split(';')[0]!.replace(/\(conversation shape.*$/, '').slice(0, 140)}`;
      kinds.set(k, (kinds.get(k) ?? 0) + 1);
    }
    for (const [k, n] of [...kinds].sort((a, b) => b[1] - a[1])) lines.push(`    ${String(n).padStart(7)}  ${k}`);
    lines.push(`  first ${Math.min(SHOW_MISMATCHES, r.mismatches.length)} in detail:`);
    for (const m of r.mismatches.slice(0, SHOW_MISMATCHES)) lines.push(formatMismatch(m).replace(/^/gm, '    '));
  }
  console.log(lines.join('\n'));
}

async function main(): Promise<number> {
  console.log(
    `soak: ${PHASES.join(' then ')}, ${SECONDS} s of load per phase, ${CONCURRENCY} concurrent clients, seed ${SEED}, UPSTREAM_TIMEOUT_MS ${UPSTREAM_TIMEOUT_MS}`,
  );
  console.log(
    'checks: seq 1..N dense per conversation and = last_seq; system and user messages once, exact, each after what the client sent before it; assistant per turn: ' +
      'completed → final, content = what the client assembled = mock answer; upstream drop/timeout → error, content = text before the SSE error event; ' +
      'client abort → error/client_abort, client text ⊆ stored ⊆ answer; HTTP error → error, empty; nothing streaming; no unknown conversations.',
  );
  const mock = await startMock();
  console.log(`mock upstream ${mock.url} (child process)`);
  const results: PhaseResult[] = [];
  for (const [i, phase] of PHASES.entries()) {
    if (interrupted) break;
    const r = await runPhase(phase, mock.url, (SEED + i * 7919) >>> 0);
    await drainCleanups();
    printPhase(r);
    results.push(r);
  }
  const total = results.reduce((n, r) => n + r.mismatches.length, 0);
  console.log(`\nsoak summary (seed ${SEED}):`);
  for (const r of results) {
    console.log(
      `  ${r.name.padEnd(8)} ${r.servers} proc  ${String(r.tally.conversations).padStart(6)} conversations  ${String(r.tally.turns).padStart(6)} turns  ` +
        `${String(r.tally.messages).padStart(6)} messages  ${(r.requests / r.loadSeconds).toFixed(1).padStart(6)} streams/s  ` +
        `ttfb p50 ${r.ttfb.p50.toFixed(1)} ms p99 ${r.ttfb.p99.toFixed(1)} ms  mismatches ${r.mismatches.length}`,
    );
  }
  console.log(total ? `FAILED: ${total} mismatch(es)` : 'OK: every conversation matches what its clients saw');
  return total ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  // After Ctrl-C, failures of the torn-down phase are expected; the signal handler exits.
  if (!interrupted) console.error('soak failed:', err);
  code = 1;
}
await cleanupAll();
process.exit(code);
