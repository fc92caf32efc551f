import Database from 'better-sqlite3';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import postgres from 'postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';
import { mockAnswer } from '../mock/upstream.js';
import { call, capturingLogger, newSession, testApp, type TestApp } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, scratchDatabase, type ScratchDb } from './helpers/dialects.js';
import { startServerProcess } from './helpers/server-process.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';

const mock = useMockUpstream();

/** A store whose stream writes can be switched off, as if the database went down, and back on. */
function switchableStore(inner: Store) {
  const state = { down: false, failures: 0 };
  const fail = () => {
    if (!state.down) return;
    state.failures++;
    throw Object.assign(new Error('connection refused'), { code: 'ECONNREFUSED' });
  };
  const store: Store = Object.create(inner);
  store.appendContent = async (...args) => (fail(), inner.appendContent(...args));
  store.finishMessage = async (...args) => (fail(), inner.finishMessage(...args));
  store.writeBatch = async (...args) => (fail(), inner.writeBatch(...args));
  return { store, state };
}

/** Reads a client's stream step by step, so a test can act once the client has seen so much. */
function streamReader(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = '';
  /** Reads until `enough(text)` holds (true) or the stream ends first (false). */
  const until = async (enough: (text: string) => boolean): Promise<boolean> => {
    while (!enough(text)) {
      const { done, value } = await reader.read();
      if (done) return false;
      text += decoder.decode(value, { stream: true });
    }
    return true;
  };
  /** Reads to the end; the whole text. */
  const rest = async () => (await until(() => false), text);
  return { until, rest };
}
const hasContent = (chars = 1) => (sse: string) => streamedContent(sse).length >= chars;
const logLines = (log: ReturnType<typeof capturingLogger>) => log.lines.map((l) => JSON.parse(l) as Record<string, any>);

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
  /** A request to an app in this process, or to a server process at its URL. */
  const send = (to: TestApp | string, path: string, init: RequestInit) =>
    typeof to === 'string' ? fetch(to + path, init) : to.request(path, init);
  const start = (to: TestApp | string, session: string, mockOptions: object) =>
    send(to, '/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], stream: true, mock: mockOptions }),
    });
  const answerOf = (to: TestApp | string, id: string, session: string) =>
    waitFor(
      async () => {
        const res = await send(to, `/v1/conversations/${id}`, { headers: { 'x-session-id': session } });
        const body = await res.json().catch(() => null);
        const m = res.ok ? body?.messages?.[1] : null;
        return m && m.status !== 'streaming' ? m : null;
      },
      15_000,
    );

  it('keeps the stream going through an outage shorter than HISTORY_RETRY_MS and records everything', async () => {
    const { store: flaky, state } = switchableStore(store);
    const log = capturingLogger();
    const app = testApp(flaky, { ...env, OPENAI_BASE_URL: mock.url }, log.logger);
    const session = newSession();
    const opts = { chunks: 60, delay_ms: 5 };
    const res = await start(app, session, opts);
    const client = streamReader(res.body!);
    // Down once the answer has begun; back up only after writes kept failing while the client
    // read on through half of the answer.
    await client.until(hasContent());
    state.down = true;
    expect(await client.until(hasContent(mockAnswer(opts).length / 2))).toBe(true);
    await waitFor(() => state.failures >= 2);
    state.down = false;
    const text = await client.rest();
    expect(text).toContain('[DONE]');
    const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
    expect(answer).toMatchObject({ status: 'final', finish_reason: 'stop', content: mockAnswer(opts) });
    // The outage really hit this stream's writes: they failed, were logged with the request, and
    // the text they carried was written once the database was back.
    expect(state.failures).toBeGreaterThanOrEqual(2);
    const failed = logLines(log).find((l) => l.msg === 'history write failed; will retry');
    expect(failed).toMatchObject({ level: 40, request_id: res.headers.get('x-request-id'), message_id: answer.id, err: { code: 'ECONNREFUSED' } });
  });

  it('records the message as incomplete, once the database is back, when it stayed down too long', async () => {
    const { store: flaky, state } = switchableStore(store);
    const log = capturingLogger();
    const app = testApp(flaky, { ...env, OPENAI_BASE_URL: mock.url, HISTORY_RETRY_MS: '200' }, log.logger);
    const session = newSession();
    const res = await start(app, session, { chunks: 30, delay_ms: 5 });
    const client = streamReader(res.body!);
    // Down once the answer has begun, so the rest of it cannot be written.
    await client.until(hasContent());
    state.down = true;
    // The client's stream was never affected.
    expect(await client.rest()).toContain('[DONE]');
    // Down until the recorder has given up on the unwritten text (HISTORY_RETRY_MS).
    await waitFor(() => log.text().includes('the database stayed down past HISTORY_RETRY_MS'));
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
      // Deliberately slow, and longer than UPSTREAM_TIMEOUT_MS: nothing races this sleep; it only
      // has to outlast the timeout, were the timeout (wrongly) started before the upstream call.
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
      // Deliberately slow (nothing races it): should the upstream call ever overlap recording the
      // request again, the whole answer and the drop would be in before the relay reads a byte.
      await new Promise((r) => setTimeout(r, 300));
      return store.createConversation(...args);
    };
    const app = testApp(slow, { ...env, OPENAI_BASE_URL: mock.url });
    const session = newSession();
    const res = await start(app, session, { fault: 'drop', chunks: 30, drop_after: 20, delay_ms: 1 });
    // A client slow to read keeps chunks waiting inside the relay when the failure is noticed:
    // it starts reading only once the upstream has dropped the connection.
    await waitFor(() => mock.traffic.ended === mock.traffic.received);
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
      const client = streamReader(res.body!);
      const admin = postgres((db.target as { url: string }).url, { max: 1, onnotice: () => {} });
      let killed = 0;
      try {
        // Kills when the client has a quarter, half and three quarters of the answer.
        for (const part of [1 / 4, 2 / 4, 3 / 4]) {
          expect(await client.until(hasContent(mockAnswer(opts).length * part))).toBe(true);
          // The pool reconnects lazily, so a later round may find nothing to kill.
          killed += (await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`).length;
        }
        expect(killed).toBeGreaterThan(0);
      } finally {
        await admin.end();
      }
      expect(await client.rest()).toContain('[DONE]');
      const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
    });

    it('answers 503 with Retry-After when its connections are killed or a lock times out during an API write', async () => {
      const app = testApp(store, { OPENAI_BASE_URL: mock.url });
      const url = (db.target as { url: string }).url;
      const name = new URL(url).pathname.slice(1);
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      const holder = await admin.reserve();
      const killOthers = () => holder`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`;
      try {
        // The store's connections are killed; those it opens again give up on a lock after 100 ms.
        await holder.unsafe(`alter database "${name}" set lock_timeout = '100ms'`);
        await holder`begin`;
        await holder`lock table conversations in exclusive mode`;
        await killOthers();
        for (let i = 0; i < 2; i++) {
          const res = await call(app, 'POST', '/v1/conversations', { session: newSession(), body: {} });
          expect(res.status, res.text).toBe(503);
          expect(res.headers.get('retry-after')).toBe('1');
          expect(res.json.error).toMatchObject({ code: 'database_unavailable' });
        }
      } finally {
        await holder`rollback`;
        await holder.unsafe(`alter database "${name}" reset lock_timeout`);
        await killOthers();
        holder.release();
        await admin.end();
      }
      // And writes work again once the pool has replaced the killed connections.
      await waitFor(async () => (await call(app, 'POST', '/v1/conversations', { session: newSession(), body: {} })).status === 201);
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

    it('keeps serving, with nothing unhandled, while its connections are killed over and over (a real server process)', async () => {
      const url = (db.target as { url: string }).url;
      const server = await startServerProcess({
        PERSIST_TRANSCRIPTS: 'true',
        DB_URL: url,
        OPENAI_BASE_URL: mock.url,
        ...env,
        // Sweeps run during the storm too; leases stay long enough that no live stream is swept.
        ORPHAN_SWEEP_INTERVAL_MS: '50',
      });
      const opts = { chunks: 40, delay_ms: 3 };
      const stream = async (session: string) => {
        try {
          const res = await start(server.url, session, opts);
          const text = await res.text();
          await fetch(`${server.url}/healthz`).then((r) => r.text());
          return { status: res.status, text, id: res.headers.get('x-conversation-id'), session };
        } catch (err) {
          return { status: 0, text: String(err), id: null, session };
        }
      };
      const admin = postgres(url, { max: 1, onnotice: () => {} });
      let killing = true;
      let killed = 0;
      // No pause between kills: connections are also killed while they start up, which is when
      // postgres.js used to run a query whose rejection nobody awaited.
      const killer = (async () => {
        while (killing) {
          killed += (await admin`select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()`).length;
        }
      })();
      const outcomes: Awaited<ReturnType<typeof stream>>[] = [];
      try {
        for (let round = 0; round < 8 && server.child.exitCode === null; round++) {
          outcomes.push(...(await Promise.all(Array.from({ length: 4 }, () => stream(newSession())))));
        }
      } finally {
        killing = false;
        await killer;
        await admin.end();
      }
      try {
        expect(server.child.exitCode, server.output()).toBeNull();
        expect(server.output()).not.toMatch(/unhandled|uncaught/i);
        expect(killed).toBeGreaterThan(0);
        // A request whose recording failed is refused with 503 before the upstream is called;
        // a stream that started always reaches the client whole.
        for (const o of outcomes) {
          expect([200, 503], o.text).toContain(o.status);
          if (o.status === 200) expect(o.text).toContain('[DONE]');
        }
        // Reconnected: every started answer gets recorded as ended, and a new one completely.
        for (const o of outcomes.filter((o) => o.status === 200)) {
          expect(await answerOf(server.url, o.id!, o.session)).toMatchObject({ status: 'final' });
        }
        // A connection killed mid-query fails its first query once more after it reconnects
        // (postgres.js replays the old 57P01: porsager/postgres#1223), and the last kills may
        // still be on their way: a request meeting either gets 503 and, like any client, retries.
        const after = await waitFor(async () => {
          const o = await stream(newSession());
          return o.status === 200 ? o : null;
        }, 15_000);
        expect(await answerOf(server.url, after.id!, after.session)).toMatchObject({ status: 'final', content: mockAnswer(opts) });
      } finally {
        await server.kill();
      }
    });
  }

  if (dialect === 'sqlite') {
    it('keeps the stream flowing while another process holds the write lock, and records everything', async () => {
      const log = capturingLogger();
      const app = testApp(store, { ...env, OPENAI_BASE_URL: mock.url }, log.logger);
      const session = newSession();
      const opts = { chunks: 60, delay_ms: 5 };
      const res = await start(app, session, opts);
      const client = streamReader(res.body!);
      await client.until(hasContent());
      const other = new Database((db.target as { path: string }).path);
      other.exec('BEGIN IMMEDIATE');
      let text: string;
      try {
        // The whole rest of the answer reaches the client while the lock is held.
        text = await client.rest();
      } finally {
        other.exec('COMMIT');
        other.close();
      }
      expect(text).toContain('[DONE]');
      const answer = await answerOf(app, res.headers.get('x-conversation-id')!, session);
      expect(answer).toMatchObject({ status: 'final', content: mockAnswer(opts) });
      // The lock did stop the writes meanwhile (they were retried after it).
      expect(logLines(log).find((l) => l.msg === 'history write failed; will retry')).toMatchObject({ message_id: answer.id, err: { code: 'SQLITE_BUSY' } });
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
