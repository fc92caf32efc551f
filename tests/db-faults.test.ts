import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';
import { mockAnswer } from '../mock/upstream.js';
import { call, capturingLogger, newSession, testApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, scratchDatabase, type ScratchDb } from './helpers/dialects.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();

/** A store whose stream writes can be switched off, as if the database went down, and back on. */
function switchableStore(inner: Store) {
  const state = { down: false };
  const fail = () => {
    if (state.down) throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  };
  const store: Store = Object.create(inner);
  store.appendContent = async (...args) => (fail(), inner.appendContent(...args));
  store.finishMessage = async (...args) => (fail(), inner.finishMessage(...args));
  return { store, state };
}

describe.each(dialects)('database faults on %s', (dialect) => {
  let db: ScratchDb;
  let store: Store;

  beforeAll(async () => {
    db =
      dialect === 'sqlite'
        ? { target: { dialect: 'sqlite', path: join(tmpdir(), `faults-${process.pid}-${Date.now()}.db`) }, drop: async () => {} }
        : await scratchDatabase('postgres');
    store = createStore(db.target, { max: 4 });
    await store.migrate();
  });
  afterAll(async () => {
    await store?.close();
    await db?.drop();
    if (db?.target.dialect === 'sqlite') for (const ext of ['', '-wal', '-shm']) rmSync(db.target.path + ext, { force: true });
  });

  const env = { HISTORY_BATCH_FLUSH_CHARS: '16', HISTORY_BATCH_FLUSH_MS: '20' };
  const start = (app: ReturnType<typeof testApp>, session: string, mockOptions: object) =>
    app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, mock: mockOptions }),
    });
  const answerOf = (app: ReturnType<typeof testApp>, id: string, session: string) =>
    waitFor(
      async () => {
        const m = (await call(app, 'GET', `/v1/conversations/${id}`, { session })).json.messages?.[1];
        return m && m.status !== 'streaming' ? m : null;
      },
      15_000,
    );

  it('keeps the stream going through an outage shorter than HISTORY_RETRY_MS and records everything', async () => {
    const { store: flaky, state } = switchableStore(store);
    const app = testApp(flaky, { ...env, OPENAI_BASE_URL: mock.url });
    const session = newSession();
    const opts = { chunks: 60, delay_ms: 5 };
    const res = await start(app, session, opts);
    const reading = readChunks(res.body!);
    await new Promise((r) => setTimeout(r, 60));
    state.down = true;
    await new Promise((r) => setTimeout(r, 250));
    state.down = false;
    const { text } = await reading;
    expect(text).toContain('[DONE]');
    const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'final', finish_reason: 'stop', content: mockAnswer(opts) });
  });

  it('records the message as incomplete, once the database is back, when it stayed down too long', async () => {
    const { store: flaky, state } = switchableStore(store);
    const log = capturingLogger();
    const app = testApp(flaky, { ...env, OPENAI_BASE_URL: mock.url, HISTORY_RETRY_MS: '200' }, log.logger);
    const session = newSession();
    const res = await start(app, session, { chunks: 30, delay_ms: 5 });
    const reading = readChunks(res.body!);
    await new Promise((r) => setTimeout(r, 40));
    state.down = true;
    const { text } = await reading;
    // The client's stream was never affected.
    expect(text).toContain('[DONE]');
    // Down well past the 200 ms retry bound.
    await new Promise((r) => setTimeout(r, 1_000));
    state.down = false;
    const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'error', finish_reason: 'incomplete' });
    expect(mockAnswer({ chunks: 30 }).startsWith(answer.content)).toBe(true);
    expect(answer.content.length).toBeLessThan(mockAnswer({ chunks: 30 }).length);
    expect(log.text()).toContain('the database stayed down past HISTORY_RETRY_MS');
    expect(log.text()).toContain('recorded the end of the message after the database came back');
  });

  it('does not time the upstream out while the database is slow to record the request', async () => {
    const slow: Store = Object.create(store);
    slow.createConversation = async (...args) => {
      await new Promise((r) => setTimeout(r, 500));
      return store.createConversation(...args);
    };
    const app = testApp(slow, { ...env, OPENAI_BASE_URL: mock.url, UPSTREAM_TIMEOUT_MS: '200' });
    const session = newSession();
    const opts = { chunks: 40, delay_ms: 2 };
    const res = await start(app, session, opts);
    const { text } = await readChunks(res.body!);
    expect(text).toContain('[DONE]');
    const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
  });

  it('records every byte the client got when the upstream dropped while the request was still being recorded', async () => {
    const slow: Store = Object.create(store);
    slow.createConversation = async (...args) => {
      await new Promise((r) => setTimeout(r, 300));
      return store.createConversation(...args);
    };
    const app = testApp(slow, { ...env, OPENAI_BASE_URL: mock.url });
    const session = newSession();
    // The whole answer and the drop are in before the relay starts reading.
    const res = await start(app, session, { fault: 'drop', chunks: 30, drop_after: 20, delay_ms: 1 });
    // A client slow to read keeps chunks waiting inside the relay when the failure is noticed.
    await new Promise((r) => setTimeout(r, 200));
    const { text } = await readChunks(res.body!);
    expect(text).toContain('"code":"upstream_error"');
    const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'error', finish_reason: 'upstream_error' });
    expect(answer.content).toBe(streamedContent(text));
  });

  if (dialect === 'postgres') {
    it('survives its connections being killed with pg_terminate_backend mid-stream', async () => {
      const app = testApp(store, { ...env, OPENAI_BASE_URL: mock.url });
      const session = newSession();
      const opts = { chunks: 80, delay_ms: 5 };
      const res = await start(app, session, opts);
      const reading = readChunks(res.body!);
      const admin = postgres((db.target as { url: string }).url, { max: 1, onnotice: () => {} });
      let killed = 0;
      try {
        for (let i = 0; i < 3; i++) {
          await new Promise((r) => setTimeout(r, 80));
          // The pool reconnects lazily, so a later round may find nothing to kill.
          killed += (await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`).length;
        }
        expect(killed).toBeGreaterThan(0);
      } finally {
        await admin.end();
      }
      const { text } = await reading;
      expect(text).toContain('[DONE]');
      const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
    });
  }

  if (dialect === 'postgres') {
    it('answers 503 with Retry-After when its connection is killed during an API write', async () => {
      const app = testApp(store, { OPENAI_BASE_URL: mock.url });
      // Two connections: one holds the lock, the other watches (pg_stat_activity does not change
      // inside a transaction).
      const admin = postgres((db.target as { url: string }).url, { max: 2, onnotice: () => {} });
      try {
        const res = await admin.begin(async (tx) => {
          // The write queues behind this lock, so its connection is busy with it when killed.
          await tx`lock table conversations in access exclusive mode`;
          const pending = call(app, 'POST', '/v1/conversations', { session: newSession(), body: {} });
          const waiting = await waitFor(
            async () => (await admin`select pid from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'`)[0]?.pid as number | undefined,
          );
          await admin`select pg_terminate_backend(${waiting})`;
          return pending;
        });
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('1');
        expect(res.json.error).toMatchObject({ code: 'database_unavailable' });
      } finally {
        await admin.end();
      }
    });
  }

  if (dialect === 'sqlite') {
    it('keeps the stream flowing while another process holds the write lock, and records everything', async () => {
      const app = testApp(store, { ...env, OPENAI_BASE_URL: mock.url });
      const session = newSession();
      const opts = { chunks: 60, delay_ms: 5 };
      const res = await start(app, session, opts);
      const started = performance.now();
      const reading = readChunks(res.body!);
      const other = new Database((db.target as { path: string }).path);
      await new Promise((r) => setTimeout(r, 40));
      other.exec('BEGIN IMMEDIATE');
      await new Promise((r) => setTimeout(r, 400));
      other.exec('COMMIT');
      other.close();
      const { text } = await reading;
      expect(text).toContain('[DONE]');
      // 60 chunks 5 ms apart: the lock must not have added its 400 ms to the stream.
      expect(performance.now() - started).toBeLessThan(1_500);
      const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
    });

    it('answers 503 with Retry-After when the database is locked for an API write', async () => {
      const app = testApp(store, { OPENAI_BASE_URL: mock.url });
      const other = new Database((db.target as { path: string }).path);
      other.exec('BEGIN IMMEDIATE');
      try {
        const res = await call(app, 'POST', '/v1/conversations', { session: newSession(), body: {} });
        expect(res.status).toBe(503);
        expect(res.headers.get('retry-after')).toBe('1');
        expect(res.json.error).toMatchObject({ code: 'database_unavailable' });
      } finally {
        other.exec('ROLLBACK');
        other.close();
      }
    });
  }
});
