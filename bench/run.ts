// `npm run bench`: our proxy against the mock upstream and two reference proxies.
// Each (target, load, round) gets a fresh child process, so CPU and peak RSS are that target's
// alone; targets alternate within a round so machine noise hits them alike.
//
// Env overrides: BENCH_ROUNDS (default 3), BENCH_LEVELS (default "1,16,64,256,json64"; a number
// is a streaming concurrency, jsonN is non-streaming at concurrency N), BENCH_TARGETS (default
// all: direct,node-pipe,floor,bare,ours-off,ours-sqlite,ours-pg), BENCH_SERVER_LOG (our server's log
// level, default silent; `error` shows why requests fail), BENCH_CODE_VERSION (header label when
// run from a tree without .git). Exits 1 if any request failed.
import { execFileSync, fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { nextMessage, type Stats, type ToChild } from './ipc.js';
import { LoadClient, type LoadResult } from './load.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const PG_ADMIN_URL = 'postgres://postgres@127.0.0.1:5432/postgres';
const MOCK_DEFAULTS = { chunks: 64, chunk_size: 16, delay_ms: 5 };
// Longer than HISTORY_BATCH_FLUSH_MS (250) so deferred transcript writes land in the CPU window.
const SETTLE_MS = 400;

const ALL_TARGETS = ['direct', 'node-pipe', 'floor', 'bare', 'ours-off', 'ours-sqlite', 'ours-pg'] as const;
type Target = (typeof ALL_TARGETS)[number];

interface Level {
  label: string;
  stream: boolean;
  concurrency: number;
  count: number;
  warmup: number;
}

// ---------- configuration ----------

function parseLevels(raw: string): Level[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((tok) => {
      const m = /^(json)?(\d+)$/.exec(tok);
      const c = m ? Number(m[2]) : NaN;
      if (!m || !Number.isInteger(c) || c < 1 || c > 1024) throw new Error(`BENCH_LEVELS: bad level ${JSON.stringify(tok)} (use e.g. 1,16,json64)`);
      const stream = !m[1];
      // Streams take ~0.35 s each (64 chunks × 5 ms), so concurrency 1 gets few (the whole bench
      // must stay near 10 minutes); non-streaming answers are instant, so that level needs many.
      const count = stream ? (c === 1 ? 24 : Math.max(c * 3, 64)) : Math.max(c * 16, 1024);
      return { label: `${stream ? 'stream' : 'json'} ×${c}`, stream, concurrency: c, count, warmup: Math.max(2, Math.min(c, 32)) };
    });
}

function parseTargets(raw: string | undefined): Target[] {
  if (!raw) return [...ALL_TARGETS];
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  for (const t of list) if (!(ALL_TARGETS as readonly string[]).includes(t)) throw new Error(`BENCH_TARGETS: unknown target ${t} (known: ${ALL_TARGETS.join(', ')})`);
  // Keep the canonical order so `floor` (the ratio base) and the table read the same every run.
  return ALL_TARGETS.filter((t) => list.includes(t));
}

const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) throw new Error('BENCH_ROUNDS must be 1..20');
const levels = parseLevels(process.env.BENCH_LEVELS ?? '1,16,64,256,json64');
const targets = parseTargets(process.env.BENCH_TARGETS);

// ---------- cleanup: children, temp files, scratch databases ----------

const children = new Set<ChildProcess>();
const scratchDbs = new Set<string>();
const tmp = mkdtempSync(path.join(os.tmpdir(), 'chat-proxy-bench-'));
let pgAdmin: postgres.Sql | undefined;

const admin = () => (pgAdmin ??= postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {}, connect_timeout: 5 }));

async function dropDb(name: string): Promise<void> {
  await admin().unsafe(`drop database if exists "${name}" with (force)`);
  scratchDbs.delete(name);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    children.delete(child);
    return;
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    child.send({ type: 'stop' } satisfies ToChild);
  } catch {
    child.kill('SIGKILL');
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
  children.delete(child);
}

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    await Promise.all([...children].map((c) => stopChild(c).catch(() => c.kill('SIGKILL'))));
    for (const name of [...scratchDbs]) await dropDb(name).catch((err) => console.error(`could not drop scratch database ${name}: ${err.message}`));
    await pgAdmin?.end({ timeout: 2 }).catch(() => {});
    rmSync(tmp, { recursive: true, force: true });
  })());
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    console.error(`\n${sig}: cleaning up…`);
    void cleanup().finally(() => process.exit(130));
  });
}
// Output piped into `head` must not kill the run before cleanup (EPIPE); anything else unexpected
// still cleans up before exiting.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {});
process.once('uncaughtException', (err) => {
  console.error(err);
  void cleanup().finally(() => process.exit(1));
});

// ---------- children ----------

// Every measured process runs compiled JavaScript under plain node, as `npm start` runs the
// server: no tsx loader or esbuild service in its CPU or memory. Built once per bench run.
const COMPILED = path.join(ROOT, 'dist', 'bench');
function build(): void {
  execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.bench.json'], { cwd: ROOT, stdio: 'inherit' });
  // The web page too, as `npm run build` makes it: a server that found it missing would build it itself.
  execFileSync(process.execPath, [path.join(ROOT, 'dist', 'scripts', 'build-ui.js')], { cwd: ROOT, stdio: 'ignore' });
}

function spawn(file: string, args: string[]): ChildProcess {
  if (cleaning) throw new Error('bench is stopping'); // nothing new once cleanup has begun
  const child = fork(path.join(COMPILED, file.replace(/\.ts$/, '.js')), args, {
    cwd: ROOT,
    execArgv: [],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

async function stats(child: ChildProcess): Promise<Stats> {
  const reply = nextMessage(child, 'stats', 10_000);
  child.send({ type: 'stats' } satisfies ToChild);
  return reply;
}

async function startMock(): Promise<{ child: ChildProcess; endpoint: string; baseUrl: string }> {
  const child = spawn('mock-child.ts', [JSON.stringify(MOCK_DEFAULTS)]);
  const ready = await nextMessage(child, 'ready', 60_000);
  return { child, endpoint: ready.endpoint, baseUrl: ready.baseUrl };
}

let runSeq = 0;

/** Starts the target fresh; returns its process, endpoint and a disposer for its database. */
async function startTarget(target: Target, upstreamBase: string) {
  const n = ++runSeq;
  if (target === 'direct') {
    const m = await startMock();
    return { child: m.child, endpoint: m.endpoint, dispose: async () => {} };
  }
  const env: Record<string, string> = {
    PORT: '0',
    HOST: '127.0.0.1',
    OPENAI_BASE_URL: upstreamBase,
    OPENAI_API_KEY: 'k',
    PERSIST_TRANSCRIPTS: 'false',
    LOG_LEVEL: 'silent',
    RATE_LIMIT_MAX: '1000000000',
    // All the load comes from one address: the per-address and process caps would refuse most of it.
    MAX_STREAMS_PER_ADDRESS: '0',
    MAX_STREAMS: '0',
    MAX_CONVERSATIONS_PER_SESSION: '1000000000',
    // The load generator names one session per worker.
    ALLOW_CLIENT_SESSION_IDS: 'true',
  };
  let dispose = async () => {};
  if (target === 'ours-sqlite') {
    // A fresh file per run so every run writes into an equally empty database.
    const file = path.join(tmp, `bench-${n}.db`);
    Object.assign(env, { PERSIST_TRANSCRIPTS: 'true', DB_URL: `file:${file}` });
    dispose = async () => {
      for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(file + suffix, { force: true });
    };
  } else if (target === 'ours-pg') {
    if (cleaning) throw new Error('bench is stopping');
    const name = `chat_proxy_bench_${process.pid}_${n}`;
    scratchDbs.add(name);
    await admin().unsafe(`create database "${name}"`);
    Object.assign(env, { PERSIST_TRANSCRIPTS: 'true', DB_URL: `postgres://postgres@127.0.0.1:5432/${name}` });
    dispose = () => dropDb(name);
  }
  const child = spawn('target-child.ts', [target, upstreamBase, JSON.stringify(env)]);
  try {
    const ready = await nextMessage(child, 'ready', 60_000);
    return { child, endpoint: ready.endpoint, dispose };
  } catch (err) {
    await stopChild(child).catch(() => {});
    await dispose();
    throw err;
  }
}

// ---------- one measurement ----------

interface Sample {
  ttfbP50: number;
  ttfbP99: number;
  rate: number;
  cpuMsPerReq: number;
  rssMb: number;
  ok: number;
  failed: number;
  failureSamples: string[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function measure(target: Target, level: Level, upstreamBase: string): Promise<Sample> {
  const t = await startTarget(target, upstreamBase);
  let exitNote: string | undefined;
  t.child.once('exit', (code, signal) => {
    exitNote = `target process exited during the run (code ${code}, signal ${signal})`;
  });
  const client = new LoadClient(t.endpoint, level.concurrency, `bench${process.pid}r${runSeq}`);
  try {
    const warm = await client.run(level.warmup, level.stream);
    const before = await stats(t.child);
    const res: LoadResult = await client.run(level.count, level.stream);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const after = await stats(t.child);
    const sorted = res.ttfbMs.sort((a, b) => a - b);
    const failureSamples = [...new Set([...warm.failureSamples.map((s) => `(warm-up) ${s}`), ...res.failureSamples])];
    if (exitNote) failureSamples.push(exitNote);
    return {
      ttfbP50: percentile(sorted, 50),
      ttfbP99: percentile(sorted, 99),
      rate: res.ok / (res.elapsedMs / 1000),
      cpuMsPerReq: (after.cpuUs - before.cpuUs) / 1000 / level.count,
      rssMb: after.maxRssKb / 1024,
      ok: res.ok,
      failed: res.failed + warm.failed,
      failureSamples,
    };
  } catch (err) {
    if (exitNote) (err as Error).message += ` (${exitNote})`;
    throw err;
  } finally {
    client.close();
    await stopChild(t.child);
    await t.dispose();
  }
}

// ---------- report ----------

const median = (xs: number[]) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

interface Row {
  level: Level;
  target: Target;
  samples: Sample[];
  error?: string;
}

type Metric = 'ttfbP50' | 'ttfbP99' | 'rate' | 'cpuMsPerReq' | 'rssMb';
const DIGITS: Record<Metric, number> = { ttfbP50: 2, ttfbP99: 2, rate: 1, cpuMsPerReq: 3, rssMb: 1 };

function cell(row: Row, base: Row | undefined, metric: Metric): string {
  const v = median(row.samples.map((s) => s[metric]));
  if (!Number.isFinite(v)) return '–';
  const b = base ? median(base.samples.map((s) => s[metric])) : NaN;
  const ratio = Number.isFinite(b) && b > 0 ? ` (${(v / b).toFixed(2)}x)` : '';
  return `${v.toFixed(DIGITS[metric])}${ratio}`;
}

function commandLine(): string {
  const vars = ['BENCH_ROUNDS', 'BENCH_LEVELS', 'BENCH_TARGETS']
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]}`);
  return [...vars, 'npm run bench'].join(' ');
}

/** Which code was measured: children load the working tree as it is when they start. */
function codeVersion(): string {
  // For runs from an exported tree (git archive) that has no .git of its own.
  if (process.env.BENCH_CODE_VERSION) return process.env.BENCH_CODE_VERSION;
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: ROOT, encoding: 'utf8' }).trim();
    return dirty ? `${head} + uncommitted changes` : head;
  } catch {
    return 'unknown commit';
  }
}

function render(rows: Row[], startedAt: Date, elapsedS: number, version: string): string {
  const cpu = os.cpus();
  const lines = [
    `node ${process.version} · ${startedAt.toISOString()} · ${cpu[0]?.model.trim() ?? 'unknown CPU'} × ${cpu.length} · ${version} · \`${commandLine()}\``,
    '',
    `Mock upstream: ${MOCK_DEFAULTS.chunks} chunks × ${MOCK_DEFAULTS.chunk_size} chars, ${MOCK_DEFAULTS.delay_ms} ms apart. ` +
      `Median of ${rounds} round(s), targets alternating; each run a fresh process. ` +
      `Counts: ${levels.map((l) => `${l.label}: ${l.count}`).join(', ')}. ` +
      `CPU and RSS are the target process only (for ours-pg the Postgres server is not counted); ` +
      `ratios are to \`floor\` (Hono + undici.request + one TransformStream). Wall time ${elapsedS.toFixed(0)} s.`,
    '',
    '| load | target | TTFB p50 (ms) | TTFB p99 (ms) | streams or req /s | CPU (ms/req) | peak RSS (MB) | failed |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const row of rows) {
    const base = rows.find((r) => r.level === row.level && r.target === 'floor' && r.samples.length > 0);
    const failed = row.samples.reduce((n, s) => n + s.failed, 0);
    const total = row.samples.reduce((n, s) => n + s.ok + s.failed, 0);
    const cells = row.error && row.samples.length === 0
      ? ['error', 'error', 'error', 'error', 'error']
      : (['ttfbP50', 'ttfbP99', 'rate', 'cpuMsPerReq', 'rssMb'] as const).map((m) => cell(row, base, m));
    lines.push(`| ${row.level.label} | ${row.target} | ${cells.join(' | ')} | ${row.error ? 'run error' : `${failed}/${total}`} |`);
  }
  const problems = rows.filter((r) => r.error || r.samples.some((s) => s.failed > 0 || s.failureSamples.length > 0));
  if (problems.length > 0) {
    lines.push('', '**Failures**', '');
    for (const r of problems) {
      const why = [...new Set([...(r.error ? [r.error] : []), ...r.samples.flatMap((s) => s.failureSamples)])];
      lines.push(`- ${r.level.label} / ${r.target}: ${why.map((w) => w.replace(/\s+/g, ' ')).join('; ')}`);
    }
  }
  return lines.join('\n') + '\n';
}

// ---------- main ----------

async function main(): Promise<number> {
  const startedAt = new Date();
  const t0 = Date.now();
  const version = codeVersion();
  if (targets.includes('ours-pg')) {
    try {
      await admin()`select 1`;
    } catch (err) {
      throw new Error(`ours-pg needs Postgres at ${PG_ADMIN_URL} (${(err as Error).message}); or leave it out with BENCH_TARGETS`);
    }
  }
  build();
  const mock = await startMock();
  console.error(`mock upstream ${mock.baseUrl} (pid ${mock.child.pid}); targets ${targets.join(', ')}; ${rounds} round(s)`);
  mock.child.once('exit', (code) => {
    if (!cleaning) console.error(`mock upstream exited unexpectedly (code ${code})`);
  });

  const rows: Row[] = [];
  for (const level of levels) {
    const levelRows = targets.map((target): Row => ({ level, target, samples: [] }));
    rows.push(...levelRows);
    for (let r = 1; r <= rounds; r++) {
      for (const row of levelRows) {
        if (row.error) continue; // a target that cannot run is reported, not retried
        const t = Date.now();
        try {
          const s = await measure(row.target, level, mock.baseUrl);
          row.samples.push(s);
          console.error(
            `${level.label.padEnd(10)} round ${r}/${rounds} ${row.target.padEnd(12)} p50 ${s.ttfbP50.toFixed(2)} ms, ` +
              `${s.rate.toFixed(1)}/s, cpu ${s.cpuMsPerReq.toFixed(3)} ms/req, rss ${s.rssMb.toFixed(1)} MB` +
              `${s.failed ? `, FAILED ${s.failed}` : ''} (${((Date.now() - t) / 1000).toFixed(1)} s)`,
          );
        } catch (err) {
          row.error = (err as Error).message;
          console.error(`${level.label} ${row.target}: run error: ${row.error}`);
        }
      }
    }
  }

  const table = render(rows, startedAt, (Date.now() - t0) / 1000, version);
  console.log(`\n${table}`);
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', 'latest.md'), table);
  console.error('written to bench/results/latest.md');
  const anyFailure = rows.some((r) => r.error || r.samples.some((s) => s.failed > 0));
  return anyFailure ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
} finally {
  await cleanup();
}
process.exit(code);
