// `npx tsx bench/turn-cost.ts`: what recording one chat turn costs on a long conversation, the
// way a chat page sends it (the whole history every time), measured at ProxiedTurn.begin: the
// request's conversion, the transaction that decides what to store, and the inserts.
//
// Env: TURN_COST_MESSAGES (history length, default 1000), TURN_COST_TURNS (timed turns, 50),
// TURN_COST_DIALECTS (default "sqlite,postgres"), TEST_DATABASE_URL (Postgres, as the tests).
import { LocalAnswerBus } from '../app/streaming/bus.js';
import { LiveAnswers } from '../app/streaming/live-answer.js';
import { HistoryWriter } from '../app/streaming/history-writer.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { ProxiedTurn } from '../app/chat/turn.js';
import type { ChatMessage, ChatRequest } from '../app/chat/schemas.js';
import { loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { createMetrics } from '../app/metrics.js';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';

const HISTORY = Number(process.env.TURN_COST_MESSAGES ?? 1000);
const TURNS = Number(process.env.TURN_COST_TURNS ?? 50);
const DIALECTS = (process.env.TURN_COST_DIALECTS ?? 'sqlite,postgres').split(',');
const PG_URL = process.env.TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

const config = loadConfig({ PERSIST_TRANSCRIPTS: 'true', DB_URL: 'file::memory:', LOG_LEVEL: 'silent', MAX_MESSAGES_PER_CONVERSATION: '100000', MAX_BYTES_PER_SESSION: '1000000000' });
const log = createLogger('silent');
const metrics = createMetrics();
const owner = { sessionId: 'bench-session', userId: null };
const text = (i: number) => `message ${i}: ${'lorem ipsum dolor sit amet '.repeat(4)}`;

async function measure(store: Store): Promise<number[]> {
  const bus = new LocalAnswerBus();
  const ctx = {
    store,
    history: new HistoryWriter(store),
    owner,
    config,
    log,
    metrics,
    lease: { holder: 'bench', expiresAt: new Date(Date.now() + 3_600_000) },
    session: {},
    answers: new LiveAnswers(bus),
    bus,
  };
  // The history as a chat page holds it: user and assistant in turn, ending with an answer.
  const history: ChatMessage[] = [];
  for (let i = 0; i < HISTORY; i++) history.push({ role: i % 2 ? 'assistant' : 'user', content: text(i) });
  const first = await ProxiedTurn.begin(ctx, { messages: history.slice(0, -1) } as ChatRequest, null, true);
  await store.appendContent(first.assistantMessageId!, text(HISTORY - 1));
  await store.finishMessage(first.assistantMessageId!, { status: 'final', finishReason: 'stop' });
  const times: number[] = [];
  for (let t = 0; t < TURNS; t++) {
    history.push({ role: 'user', content: `question ${t}` });
    const started = performance.now();
    const turn = await ProxiedTurn.begin(ctx, { messages: history } as ChatRequest, first.conversationId, true);
    times.push(performance.now() - started);
    const answer = `answer ${t}`;
    await store.appendContent(turn.assistantMessageId!, answer);
    await store.finishMessage(turn.assistantMessageId!, { status: 'final', finishReason: 'stop' });
    history.push({ role: 'assistant', content: answer });
  }
  return times;
}

const pct = (sorted: number[], p: number) => sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;

for (const dialect of DIALECTS) {
  let store: Store;
  let cleanup: () => Promise<void>;
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(join(tmpdir(), 'turn-cost-'));
    store = createStore({ dialect: 'sqlite', path: join(dir, 'bench.db') });
    cleanup = async () => {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    };
  } else {
    const name = `turn_cost_${process.pid}`;
    const admin = postgres(PG_URL, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${name}"`);
    const url = new URL(PG_URL);
    url.pathname = `/${name}`;
    store = createStore({ dialect: 'postgres', url: url.toString() }, { max: 4 });
    cleanup = async () => {
      await store.close();
      await admin.unsafe(`drop database if exists "${name}" with (force)`);
      await admin.end();
    };
  }
  try {
    await store.migrate();
    const times = (await measure(store)).sort((a, b) => a - b);
    const mean = times.reduce((a, b) => a + b, 0) / times.length;
    console.log(
      `${dialect.padEnd(8)} ${HISTORY} messages, ${TURNS} turns: mean ${mean.toFixed(2)} ms, p50 ${pct(times, 50).toFixed(2)} ms, p90 ${pct(times, 90).toFixed(2)} ms, max ${times.at(-1)!.toFixed(2)} ms`,
    );
  } finally {
    await cleanup();
  }
}
