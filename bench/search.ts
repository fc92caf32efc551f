// `npm run bench:search`: full-text search latency over 100 000 messages on SQLite and Postgres,
// the cost of a streamed delta with and without the index, and the read throughput an export
// would have (until the export endpoint lands: a paged read of every message of one user through
// GET /v1/conversations/:id, labelled as such).
//
// Each dialect gets a scratch database (a SQLite file, a Postgres database dropped afterwards),
// migrated, then filled with bulk SQL (the index triggers run as for any insert): half of the
// messages belong to one heavy user, the other half to users of 1 000 messages each, one of whom
// is the light searcher (two conversations of others are shared with it). Text is generated from
// a Zipf-distributed vocabulary with accented words, CJK messages and emoji. Queries go through
// the HTTP app in process (app.request: routing, auth, validation, the store, snippets, JSON),
// one at a time, after a warm-up; latency is per request, p50 and p95 per kind of query.
//
// Env: BENCH_SEARCH_MESSAGES (100000), BENCH_SEARCH_QUERIES (per kind and searcher, 40),
// BENCH_SEARCH_DIALECTS (sqlite,postgres), BENCH_SEARCH_SEED, BENCH_PG_URL, BENCH_APPEND_ROUNDS
// (0 skips the append cost). The report is printed and written to bench/results/.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import postgres from 'postgres';
import { newApiKey } from '../app/auth/api-keys.js';
import { createStore } from '../db/index.js';
import { registerSearchFunctions } from '../db/sqlite/search-index.js';
import type { Store } from '../db/store.js';
import { createApp } from '../app/app.js';
import { loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { InFlight } from '../app/streaming/in-flight.js';
import { appendTable, compareAppendCost, PG_ADMIN_URL, type AppendComparison } from './append-cost.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const TOTAL = Number(process.env.BENCH_SEARCH_MESSAGES ?? 100_000);
const PER_KIND = Number(process.env.BENCH_SEARCH_QUERIES ?? 40);
const DIALECTS = (process.env.BENCH_SEARCH_DIALECTS ?? 'sqlite,postgres').split(',').map((d) => d.trim()) as ('sqlite' | 'postgres')[];
const SEED = Number(process.env.BENCH_SEARCH_SEED ?? 20_261_202);
const APPEND_ROUNDS = Number(process.env.BENCH_APPEND_ROUNDS ?? 20);
const MESSAGES_PER_CONVERSATION = 100;
const LIGHT_USER_MESSAGES = 1_000;
if (!Number.isInteger(TOTAL) || TOTAL < 4_000 || TOTAL % 2_000) throw new Error('BENCH_SEARCH_MESSAGES must be a multiple of 2000, at least 4000');

// ---------- text ----------

/** mulberry32: a small seeded generator, so every run (and both dialects) gets the same text. */
function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const COMMON = `the of and to a in is it you that he was for on are with as I his they be at one have this from or had by
not word but what some we can out other were all there when up use your how said an each she which do their time if will way
about many then them write would like so these her long make thing see him two has look more day could go come did number sound
no most people my over know water than call first who may down side been now find any new work part take get place made live
where after back little only round man year came show every good me give our under name very through just form sentence great
think say help low line differ turn cause much mean before move right boy old too same tell does set three want air well also
play small end put home read hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth father head stand own page
should country found answer school grow study still learn plant cover food sun four between state keep eye never last let
thought city tree cross farm hard start might story saw far sea draw left late run while press close night real life few north
function variable database query server request response error python javascript typescript docker kubernetes deploy config`.split(/\s+/);
const ACCENTED = ['café', 'naïve', 'résumé', 'Łódź', 'straße', 'crème', 'façade', 'jalapeño', 'São', 'Zürich', 'déjà', 'über'];
const CJK_WORDS = '天气 今天 明天 我们 你们 他们 学习 工作 时间 问题 朋友 中国 日本 电脑 手机 音乐 电影 公园 咖啡 学校 老师 学生 医生 医院 飞机 火车 城市 东京 天気 勉強 会社 先生 한국 학교 친구 사랑'.split(' ');
const CJK_FILLER = '的一是了不在有人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处府'.split('');
const EMOJI = ['🎉', '😀', '👍', '🚀', '❤️', '👩‍👩‍👧', '🇫🇷'];

function syllableWord(rand: () => number): string {
  const c = 'bcdfghjklmnprstvwz';
  const v = 'aeiou';
  let w = '';
  const n = 2 + Math.floor(rand() * 3);
  for (let i = 0; i < n; i++) w += c[Math.floor(rand() * c.length)]! + v[Math.floor(rand() * v.length)]!;
  return w;
}

/** The vocabulary by rank (common words first) and a sampler with Zipf's law (s = 1.07). */
function vocabulary(rand: () => number) {
  const words = [...new Set(COMMON)];
  const seen = new Set(words);
  // Accented words at middle ranks, so they are neither everywhere nor nowhere.
  const accentAt = new Map(ACCENTED.map((w, i) => [400 + i * 150, w]));
  while (words.length < 30_000) {
    const accented = accentAt.get(words.length);
    const w = accented ?? syllableWord(rand);
    if (seen.has(w)) continue;
    seen.add(w);
    words.push(w);
  }
  const cdf = new Float64Array(words.length);
  let sum = 0;
  for (let i = 0; i < words.length; i++) cdf[i] = sum += 1 / (i + 1) ** 1.07;
  const pick = () => {
    const x = rand() * sum;
    let lo = 0;
    let hi = words.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return words[lo]!;
  };
  return { words, pick };
}

function messageText(rand: () => number, pick: () => string, role: 'user' | 'assistant'): string {
  if (rand() < 0.08) {
    // A CJK message: characters and words with no spaces, some Latin inside.
    let s = '';
    const n = role === 'user' ? 10 + Math.floor(rand() * 30) : 60 + Math.floor(rand() * 300);
    while (s.length < n) {
      const r = rand();
      s += r < 0.3 ? CJK_WORDS[Math.floor(rand() * CJK_WORDS.length)]! : r < 0.95 ? CJK_FILLER[Math.floor(rand() * CJK_FILLER.length)]! : pick();
      if (rand() < 0.05) s += '，';
    }
    return `${s}。`;
  }
  const n = role === 'user' ? 5 + Math.floor(rand() * 35) : 30 + Math.floor(rand() ** 2 * 400);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    let w = pick();
    if (i === 0 || out.at(-1)!.endsWith('.')) w = w[0]!.toUpperCase() + w.slice(1);
    if (rand() < 0.08) w += rand() < 0.7 ? '.' : ',';
    if (rand() < 0.01) w += ` ${EMOJI[Math.floor(rand() * EMOJI.length)]}`;
    out.push(w);
  }
  return `${out.join(' ')}.`;
}

// ---------- the data set ----------

interface Conv {
  id: string;
  userId: string;
  title: string;
  createdAt: number;
}
interface Msg {
  id: string;
  conversationId: string;
  seq: number;
  role: 'user' | 'assistant';
  content: string;
  createdAt: number;
}

interface DataSet {
  heavy: string;
  light: string;
  users: string[];
  conversations: Conv[];
  /** Generated in batches, the same for every dialect. */
  batches(): Generator<Msg[]>;
  shares: { conversationId: string; userId: string }[];
  pick: () => string;
  words: string[];
  samples: string[];
}

export function dataSet(): DataSet {
  const rand = random(SEED);
  const { words, pick } = vocabulary(rand);
  const heavy = crypto.randomUUID();
  const lightUsers = Array.from({ length: TOTAL / 2 / LIGHT_USER_MESSAGES }, () => crypto.randomUUID());
  const users = [heavy, ...lightUsers];
  const now = Date.now();
  const span = 90 * 24 * 3_600_000;
  const conversations: Conv[] = [];
  const owners = [
    ...Array.from({ length: TOTAL / 2 / MESSAGES_PER_CONVERSATION }, () => heavy),
    ...lightUsers.flatMap((u) => Array.from({ length: LIGHT_USER_MESSAGES / MESSAGES_PER_CONVERSATION }, () => u)),
  ];
  owners.forEach((userId, i) => {
    const title = Array.from({ length: 3 + Math.floor(rand() * 4) }, pick).join(' ');
    conversations.push({ id: crypto.randomUUID(), userId, title: title[0]!.toUpperCase() + title.slice(1), createdAt: now - span + Math.floor((i / owners.length) * span) });
  });
  // Interleave owners in time: shuffle creation times.
  for (let i = conversations.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [conversations[i]!.createdAt, conversations[j]!.createdAt] = [conversations[j]!.createdAt, conversations[i]!.createdAt];
  }
  const light = lightUsers[0]!;
  const shares = conversations
    .filter((c) => c.userId === lightUsers[1] || c.userId === lightUsers[2])
    .slice(0, 2)
    .map((c) => ({ conversationId: c.id, userId: light }));
  const samples: string[] = [];
  function* batches() {
    const r = random(SEED + 1);
    let batch: Msg[] = [];
    for (const c of conversations) {
      for (let seq = 1; seq <= MESSAGES_PER_CONVERSATION; seq++) {
        const role = seq % 2 ? 'user' : 'assistant';
        const content = messageText(r, pick, role);
        if (samples.length < 2_000 && r() < 0.05) samples.push(content);
        batch.push({ id: crypto.randomUUID(), conversationId: c.id, seq, role, content, createdAt: c.createdAt + seq * 30_000 });
        if (batch.length === 1_000) {
          yield batch;
          batch = [];
        }
      }
    }
    if (batch.length) yield batch;
  }
  return { heavy, light, users, conversations, batches, shares, pick, words, samples };
}

// ---------- filling each dialect ----------

export async function fillSqlite(file: string, data: DataSet): Promise<void> {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  registerSearchFunctions(db);
  const conv = db.prepare(
    'insert into conversations (id, session_id, user_id, title, metadata, last_seq, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  const msg = db.prepare('insert into messages (id, conversation_id, role, status, content, seq, created_at, updated_at) values (?, ?, ?, ?, ?, ?, ?, ?)');
  const share = db.prepare('insert into conversation_shares (conversation_id, user_id, role, created_at) values (?, ?, ?, ?)');
  db.transaction(() => {
    for (const c of data.conversations) conv.run(c.id, `bench-session-${c.userId}`, c.userId, c.title, '{}', MESSAGES_PER_CONVERSATION, c.createdAt, c.createdAt);
    for (const s of data.shares) share.run(s.conversationId, s.userId, 'viewer', Date.now());
  })();
  for (const batch of data.batches()) {
    db.transaction(() => {
      for (const m of batch) msg.run(m.id, m.conversationId, m.role, 'final', m.content, m.seq, m.createdAt, m.createdAt);
    })();
  }
  db.close();
}

export async function fillPostgres(url: string, data: DataSet): Promise<void> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    const convRows = data.conversations.map((c) => ({
      id: c.id,
      session_id: `bench-session-${c.userId}`,
      user_id: c.userId,
      title: c.title,
      last_seq: MESSAGES_PER_CONVERSATION,
      created_at: new Date(c.createdAt),
      updated_at: new Date(c.createdAt),
    }));
    for (let i = 0; i < convRows.length; i += 1_000) await sql`insert into conversations ${sql(convRows.slice(i, i + 1_000))}`;
    for (const s of data.shares) await sql`insert into conversation_shares (conversation_id, user_id, role, created_at) values (${s.conversationId}, ${s.userId}, 'viewer', now())`;
    for (const batch of data.batches()) {
      const rows = batch.map((m) => ({
        id: m.id,
        conversation_id: m.conversationId,
        role: m.role,
        status: 'final',
        content: m.content,
        seq: m.seq,
        created_at: new Date(m.createdAt),
        updated_at: new Date(m.createdAt),
      }));
      await sql`insert into messages ${sql(rows)}`;
    }
    // What autovacuum would have done by the time anyone searches: statistics, and the GIN
    // index's pending list merged.
    await sql`vacuum analyze messages`;
    await sql`vacuum analyze conversations`;
  } finally {
    await sql.end();
  }
}

/** The HTTP app on `store`, as the server builds it (no listening socket: app.request()). */
export function appOn(store: Store) {
  const config = loadConfig({ PERSIST_TRANSCRIPTS: 'true', DB_URL: 'file::memory:', LOG_LEVEL: 'silent', RATE_LIMIT_MAX: '0', SESSION_SECRET: 'bench-session-secret-0123456789abcdef' });
  const logger = createLogger('silent');
  return createApp({ config, store, logger, inFlight: new InFlight(store, { leaseMs: config.streams.leaseMs, sweepMs: config.streams.sweepMs, log: logger }) });
}
type App = ReturnType<typeof appOn>;

// ---------- queries ----------

interface Kind {
  kind: string;
  queries: string[];
}

export function queryKinds(data: DataSet): Kind[] {
  const rand = random(SEED + 2);
  const pickFrom = <T>(list: T[]) => list[Math.floor(rand() * list.length)]!;
  const band = (from: number, to: number) => Array.from({ length: PER_KIND }, () => data.words[from + Math.floor(rand() * (to - from))]!);
  const phrase = () => {
    for (;;) {
      const words = pickFrom(data.samples).split(/[^\p{L}\p{N}]+/u).filter((w) => /^[a-z]+$/i.test(w));
      if (words.length < 4) continue;
      const i = Math.floor(rand() * (words.length - 2));
      return `"${words[i]} ${words[i + 1]} ${words[i + 2]}"`;
    }
  };
  const n = (f: () => string) => Array.from({ length: PER_KIND }, f);
  return [
    { kind: 'very common word (rank 10-60: in, you, that…)', queries: band(10, 60) },
    { kind: 'frequent word (rank 100-300)', queries: band(100, 300) },
    { kind: 'mid word (rank 500-3000)', queries: band(500, 3_000) },
    { kind: 'rare word (rank 10k-30k)', queries: band(10_000, 30_000) },
    { kind: 'two words', queries: n(() => `${pickFrom(data.words.slice(50, 2_000))} ${pickFrom(data.words.slice(50, 2_000))}`) },
    { kind: 'three-word phrase', queries: n(phrase) },
    { kind: 'prefix* (3-4 letters)', queries: n(() => `${pickFrom(data.words.slice(100, 5_000)).slice(0, 3 + Math.floor(rand() * 2))}*`) },
    { kind: 'accents typed without', queries: n(() => pickFrom(['cafe', 'naive', 'resume', 'lodz', 'strasse', 'creme', 'facade', 'jalapeno', 'sao', 'zurich', 'deja', 'uber'])) },
    { kind: 'CJK word (2 characters)', queries: n(() => pickFrom(CJK_WORDS)) },
    { kind: 'no match', queries: n(() => `zq${Math.floor(rand() * 1e9).toString(36)}`) },
  ];
}

interface Latency {
  p50: number;
  p95: number;
  hits: number;
}

async function timeQueries(app: App, auth: string, kinds: Kind[]): Promise<Map<string, Latency>> {
  const out = new Map<string, Latency>();
  const all: number[] = [];
  let allHits = 0;
  for (const { kind, queries } of kinds) {
    const times: number[] = [];
    let hits = 0;
    for (const q of queries) {
      const started = performance.now();
      const res = await app.request(`/v1/conversations/search?${new URLSearchParams({ q, limit: '20' })}`, { headers: { authorization: `Bearer ${auth}` } });
      const body = (await res.json()) as { data?: unknown[] };
      times.push(performance.now() - started);
      if (res.status !== 200) throw new Error(`search ${JSON.stringify(q)} answered ${res.status}: ${JSON.stringify(body)}`);
      hits += body.data!.length;
    }
    out.set(kind, { ...percentiles(times), hits: hits / queries.length });
    all.push(...times);
    allHits += hits;
  }
  out.set('all kinds', { ...percentiles(all), hits: allHits / all.length });
  return out;
}

function percentiles(times: number[]) {
  const sorted = [...times].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  return { p50: at(0.5), p95: at(0.95) };
}

/** The heavy user's export through GET /v1/conversations/export, read as a client reads it. */
async function pagedRead(app: App, auth: string): Promise<{ messages: number; bytes: number; seconds: number }> {
  const started = performance.now();
  const res = await app.request('/v1/conversations/export', { headers: { authorization: `Bearer ${auth}` } });
  if (!res.ok) throw new Error(`export answered ${res.status}`);
  let messages = 0;
  let bytes = 0;
  let carry = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    bytes += chunk.byteLength;
    const lines = (carry + decoder.decode(chunk, { stream: true })).split('\n');
    carry = lines.pop()!;
    for (const line of lines) if (line.startsWith('{"type":"message"')) messages++;
  }
  return { messages, bytes, seconds: (performance.now() - started) / 1000 };
}

// ---------- one dialect ----------

interface DialectResult {
  dialect: 'sqlite' | 'postgres';
  fillSeconds: number;
  indexSize: string;
  searches: { searcher: string; latencies: Map<string, Latency> }[];
  read: { messages: number; bytes: number; seconds: number };
}

async function runDialect(dialect: 'sqlite' | 'postgres', data: DataSet, kindsOf: () => Kind[]): Promise<DialectResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'chat-proxy-bench-search-'));
  const admin = postgres(PG_ADMIN_URL, { max: 1, onnotice: () => {} });
  const name = `chat_proxy_bench_search_${process.pid}`;
  let store: Store | undefined;
  try {
    let url = '';
    const file = path.join(dir, 'search.db');
    if (dialect === 'postgres') {
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.unsafe(`create database "${name}"`);
      const u = new URL(PG_ADMIN_URL);
      u.pathname = `/${name}`;
      url = u.toString();
    }
    store = createStore(dialect === 'sqlite' ? { dialect, path: file } : { dialect, url }, { max: 10 });
    await store.migrate();
    const keys = new Map<string, string>();
    for (const [label, id] of [
      ['heavy', data.heavy],
      ['light', data.light],
    ] as const) {
      const user = await store.createUser({ name: `bench ${label}` });
      const made = newApiKey();
      await store.createApiKey({ userId: user.id, name: 'bench', prefix: made.prefix, hash: made.hash });
      keys.set(label, made.key);
      // The generated rows name the user by the id chosen for the data set: adopt it.
      data.users[data.users.indexOf(id)] = user.id;
      for (const c of data.conversations) if (c.userId === id) c.userId = user.id;
      for (const s of data.shares) if (s.userId === id) s.userId = user.id;
      if (label === 'heavy') data.heavy = user.id;
      else data.light = user.id;
    }
    // Users the shares point to must exist (foreign key); the other light users only own rows.
    const started = performance.now();
    if (dialect === 'sqlite') await fillSqlite(file, data);
    else await fillPostgres(url, data);
    const fillSeconds = (performance.now() - started) / 1000;

    let indexSize: string;
    if (dialect === 'sqlite') {
      const raw = new Database(file, { readonly: true });
      let row: { bytes: number } | undefined;
      try {
        row = raw.prepare(`select sum(pgsize) as bytes from dbstat where name like 'search_index%'`).get() as { bytes: number } | undefined;
      } catch {
        // dbstat is not compiled in: the file size alone.
      }
      raw.close();
      indexSize = row?.bytes ? `${(row.bytes / 1e6).toFixed(0)} MB FTS5 (file ${(statSync(file).size / 1e6).toFixed(0)} MB)` : `file ${(statSync(file).size / 1e6).toFixed(0)} MB`;
    } else {
      const sql = postgres(url, { max: 1, onnotice: () => {} });
      const [row] = await sql`select pg_relation_size('messages_search_idx') as gin, pg_total_relation_size('messages') as total`;
      await sql.end();
      indexSize = `${(Number(row!.gin) / 1e6).toFixed(0)} MB GIN (messages with indexes and TOAST ${(Number(row!.total) / 1e6).toFixed(0)} MB)`;
    }

    const app = appOn(store);
    // Phrases are taken from generated messages: known once the first fill has run.
    const kinds = kindsOf();
    const searches: DialectResult['searches'] = [];
    for (const searcher of ['heavy', 'light'] as const) {
      // Warm up: statements, caches, the snippet code.
      await timeQueries(app, keys.get(searcher)!, kinds.map((k) => ({ kind: k.kind, queries: k.queries.slice(0, 3) })));
      searches.push({ searcher, latencies: await timeQueries(app, keys.get(searcher)!, kinds) });
    }
    const read = await pagedRead(app, keys.get('heavy')!);
    return { dialect, fillSeconds, indexSize, searches, read };
  } finally {
    await store?.close();
    if (dialect === 'postgres') await admin.unsafe(`drop database if exists "${name}" with (force)`).catch(() => {});
    await admin.end();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------- report ----------

function report(results: DialectResult[], appends: AppendComparison[]): string {
  const version = (() => {
    try {
      return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT }).toString().trim();
    } catch {
      return 'unknown';
    }
  })();
  const lines: string[] = [];
  lines.push(`node ${process.version} · ${new Date().toISOString()} · ${os.cpus()[0]?.model ?? 'cpu'} × ${os.cpus().length} · ${version} · \`npm run bench:search\``);
  lines.push('');
  lines.push(
    `${TOTAL.toLocaleString('en')} messages (${TOTAL / 2 / MESSAGES_PER_CONVERSATION} conversations of one heavy user, ${TOTAL / 2 / LIGHT_USER_MESSAGES} users of ${LIGHT_USER_MESSAGES} messages), ` +
      `${PER_KIND} queries per kind and searcher, limit 20, one at a time through the app in process. Latency in ms; hits = mean items returned.`,
  );
  for (const r of results) lines.push(`${r.dialect}: filled in ${r.fillSeconds.toFixed(0)} s with the triggers indexing; index ${r.indexSize}.`);
  lines.push('');
  const kinds = [...results[0]!.searches[0]!.latencies.keys()];
  const header = ['| query', ...results.flatMap((r) => r.searches.map((s) => `${r.dialect}, ${s.searcher} user: p50 / p95 (hits)`))];
  lines.push(`${header.join(' | ')} |`);
  lines.push(`|---|${header.slice(1).map(() => '---:').join('|')}|`);
  for (const kind of kinds) {
    const cells = results.flatMap((r) =>
      r.searches.map((s) => {
        const l = s.latencies.get(kind)!;
        return `${l.p50.toFixed(1)} / ${l.p95.toFixed(1)} (${l.hits.toFixed(1)})`;
      }),
    );
    lines.push(`| ${kind === 'all kinds' ? '**all kinds**' : kind} | ${cells.join(' | ')} |`);
  }
  lines.push('');
  lines.push('Export: the heavy user\'s whole export through `GET /v1/conversations/export` (JSON lines), read as a client reads it:');
  lines.push('');
  lines.push('| dialect | messages | MB exported | seconds | messages/s | MB/s |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const r of results) {
    lines.push(
      `| ${r.dialect} | ${r.read.messages} | ${(r.read.bytes / 1e6).toFixed(1)} | ${r.read.seconds.toFixed(1)} | ${(r.read.messages / r.read.seconds).toFixed(0)} | ${(r.read.bytes / 1e6 / r.read.seconds).toFixed(1)} |`,
    );
  }
  if (appends.length) {
    lines.push('');
    lines.push(`appendContent (one streamed flush of 120 characters) and finishMessage, without and with the search index (${APPEND_ROUNDS} answers each, in turn):`);
    lines.push('');
    lines.push(appendTable(appends));
  }
  return lines.join('\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const data = dataSet();
  let kinds: Kind[] | undefined;
  const kindsOf = () => (kinds ??= queryKinds(data));
  const results: DialectResult[] = [];
  for (const dialect of DIALECTS) {
    console.error(`${dialect}: filling ${TOTAL} messages and searching…`);
    results.push(await runDialect(dialect, data, kindsOf));
  }
  const appends: AppendComparison[] = [];
  if (APPEND_ROUNDS > 0) for (const dialect of DIALECTS) appends.push(...(await compareAppendCost(dialect, APPEND_ROUNDS)));
  const text = report(results, appends);
  console.log(text);
  mkdirSync(path.join(HERE, 'results'), { recursive: true });
  writeFileSync(path.join(HERE, 'results', `search-${new Date().toISOString().replace(/[:.]/g, '-')}.md`), `${text}\n`);
}
