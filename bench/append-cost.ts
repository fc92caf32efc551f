// What one streamed delta costs the database, with and without the search index: the time of
// store.appendContent() as a streamed answer grows, on SQLite (a WAL file, as the server runs
// it) and on a scratch Postgres database. "without" is a database migrated up to, not including,
// the search migration; both are measured in one run, answer for answer in turn, so the noise of
// a shared machine falls on both alike.
//
// `npx tsx bench/append-cost.ts` prints it alone; bench/search.ts reports it beside the search
// figures. Env: BENCH_APPEND_ROUNDS (answers per case, default 20), BENCH_PG_URL (an admin URL).
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { drizzle as sqliteDrizzle } from 'drizzle-orm/better-sqlite3';
import { migrate as sqliteMigrate } from 'drizzle-orm/better-sqlite3/migrator';
import { drizzle as pgDrizzle } from 'drizzle-orm/postgres-js';
import { migrate as pgMigrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';

export const PG_ADMIN_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DELTA_CHARS = 120;

/** A typical answer (40 flushes of 120 characters: 4 800) and a long one (200: 24 000). */
export const APPEND_CASES = [
  { label: 'answer of 4 800 chars', appends: 40 },
  { label: 'answer of 24 000 chars', appends: 200 },
] as const;

const words = 'the quick brown fox jumps over a lazy dog while streaming answers grow by small deltas café naïve 天气 很好'.split(' ');
function delta(i: number): string {
  let s = '';
  for (let w = i % words.length; s.length < DELTA_CHARS; w = (w * 7 + 3) % words.length) s += `${words[w]} `;
  return s.slice(0, DELTA_CHARS);
}

export interface AppendCost {
  /** Microseconds per appendContent call. */
  p50: number;
  p95: number;
  mean: number;
  calls: number;
}

const summary = (times: number[]): AppendCost => {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
  return { p50: at(0.5), p95: at(0.95), mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, calls: sorted.length };
};

/** Streams one answer of `appends` deltas into `store`, pushing each append's and the finish's time (µs). */
async function streamOne(store: Store, appends: number, times: { appends: number[]; finishes: number[] } | null): Promise<void> {
  const owner = { sessionId: `bench-append-${crypto.randomUUID()}`, userId: null };
  const conversation = await store.createConversation(owner, { title: 'append cost' }, { maxPerSession: 1_000_000 });
  const [, answer] = await store.appendMessages(
    owner,
    conversation.id,
    [
      { role: 'user', content: 'Tell me a long story about the weather' },
      { role: 'assistant', status: 'streaming', content: '' },
    ],
    { maxMessages: 1000 },
  );
  for (let i = 0; i < appends; i++) {
    const text = delta(i);
    const started = performance.now();
    await store.appendContent(answer!.id, text);
    times?.appends.push((performance.now() - started) * 1000);
  }
  const started = performance.now();
  await store.finishMessage(answer!.id, { status: 'final', finishReason: 'stop' });
  times?.finishes.push((performance.now() - started) * 1000);
}

/** The dialect's migrations folder without the search migration (the schema before it). */
function foldersWithoutSearch(dialect: 'sqlite' | 'postgres', dir: string): string {
  const folder = path.join(dir, 'migrations-before-search');
  cpSync(path.join(ROOT, 'drizzle', dialect === 'sqlite' ? 'sqlite' : 'pg'), folder, { recursive: true });
  const journalFile = path.join(folder, 'meta/_journal.json');
  const journal = JSON.parse(readFileSync(journalFile, 'utf8'));
  journal.entries = journal.entries.filter((e: { tag: string }) => !e.tag.endsWith('_search'));
  writeFileSync(journalFile, JSON.stringify(journal));
  return folder;
}

/** A store of `dialect` on a scratch database, migrated fully or up to the search migration. */
export async function scratchStore(dialect: 'sqlite' | 'postgres', { search = true } = {}): Promise<{ store: Store; dispose(): Promise<void> }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-proxy-bench-'));
  if (dialect === 'sqlite') {
    const file = path.join(dir, 'bench.db');
    if (!search) {
      const raw = new Database(file);
      raw.function('chat_proxy_sha256_hex', { deterministic: true }, (v: unknown) => (v == null ? null : createHash('sha256').update(String(v)).digest('hex')));
      sqliteMigrate(sqliteDrizzle(raw), { migrationsFolder: foldersWithoutSearch(dialect, dir) });
      raw.close();
    }
    const store = createStore({ dialect: 'sqlite', path: file });
    if (search) await store.migrate();
    return { store, dispose: async () => (await store.close(), rmSync(dir, { recursive: true, force: true })) };
  }
  const name = `chat_proxy_bench_${process.pid}_${crypto.randomUUID().slice(0, 8)}`;
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  if (!search) {
    const raw = postgres(url.toString(), { max: 1, onnotice: () => {} });
    await pgMigrate(pgDrizzle(raw), { migrationsFolder: foldersWithoutSearch(dialect, dir) });
    await raw.end();
  }
  const store = createStore({ dialect: 'postgres', url: url.toString() }, { max: 4 });
  if (search) await store.migrate();
  return {
    store,
    async dispose() {
      await store.close();
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface AppendComparison {
  dialect: 'sqlite' | 'postgres';
  label: string;
  without: AppendCost;
  with: AppendCost;
  /** finishMessage, where a streamed answer's last re-index now happens. */
  finishWithout: AppendCost;
  finishWith: AppendCost;
}

/** appendContent's cost without and with the search index, answer for answer in turn. */
export async function compareAppendCost(dialect: 'sqlite' | 'postgres', rounds = Number(process.env.BENCH_APPEND_ROUNDS ?? 20)): Promise<AppendComparison[]> {
  const before = await scratchStore(dialect, { search: false });
  const after = await scratchStore(dialect, { search: true });
  try {
    const results: AppendComparison[] = [];
    for (const { label, appends } of APPEND_CASES) {
      const times = { without: { appends: [] as number[], finishes: [] as number[] }, with: { appends: [] as number[], finishes: [] as number[] } };
      // One answer each to warm statements and caches up, not counted.
      await streamOne(before.store, appends, null);
      await streamOne(after.store, appends, null);
      for (let r = 0; r < rounds; r++) {
        await streamOne(before.store, appends, times.without);
        await streamOne(after.store, appends, times.with);
      }
      results.push({
        dialect,
        label,
        without: summary(times.without.appends),
        with: summary(times.with.appends),
        finishWithout: summary(times.without.finishes),
        finishWith: summary(times.with.finishes),
      });
    }
    return results;
  } finally {
    await before.dispose();
    await after.dispose();
  }
}

export function appendTable(rows: AppendComparison[]): string {
  const us = (n: number) => (n >= 1000 ? `${(n / 1000).toFixed(2)} ms` : `${n.toFixed(0)} µs`);
  const lines = [
    '| dialect | streamed answer | appendContent without index (p50 / p95 / mean) | with index | mean added per delta | finishMessage without / with (p50) |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.dialect} | ${r.label} | ${us(r.without.p50)} / ${us(r.without.p95)} / ${us(r.without.mean)} | ${us(r.with.p50)} / ${us(r.with.p95)} / ${us(r.with.mean)} | ${us(r.with.mean - r.without.mean)} | ${us(r.finishWithout.p50)} / ${us(r.finishWith.p50)} |`,
    );
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const rows: AppendComparison[] = [];
  for (const dialect of ['sqlite', 'postgres'] as const) rows.push(...(await compareAppendCost(dialect)));
  console.log(appendTable(rows));
}
