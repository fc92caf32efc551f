import { readFileSync } from 'node:fs';
import { countTokens } from 'gpt-tokenizer/encoding/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../app/env.js';
import { startServer, type RunningServer } from '../app/server.js';
import { estimatePromptTokens, estimateTokens } from '../app/tokens.js';
import { createLogger } from '../app/logger.js';
import { newSession, testConfig } from './helpers/app.js';
import { useMockUpstream } from './helpers/mock.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { waitFor } from './helpers/streams.js';

/*
 * Token estimates run on the event loop every request shares. Byte-pair encoding costs the
 * square of a pre-tokenized run's length: one prompt of 256 Ki "a"s used to hold the whole
 * process for 70 s. These tests feed the worst inputs and check that nothing else waits.
 */

const DEFAULT_MAX = loadConfig({}).tokenEstimateMaxChars;
const exact = (text: string) => countTokens(text, { disallowedSpecial: new Set() });

/** Deterministic varied text in one script: every piece different, so no cache helps. */
function run(length: number, first: number, span: number): string {
  let text = '';
  for (let i = 0; text.length < length; i++) text += String.fromCodePoint(first + ((i * 7919) % span));
  return text;
}
const cjk = (chars: number) => run(chars, 0x4e00, 20_000);
const emoji = (codeUnits: number) => run(codeUnits, 0x1f300, 700);

/**
 * Runs `work` while a setImmediate ticker measures the longest stretch the event loop was held,
 * in CPU time (robust to other processes taking the core) and in wall time.
 */
async function longestBlock<T>(work: () => Promise<T>) {
  let lastCpu = process.cpuUsage();
  let lastWall = performance.now();
  let cpuMs = 0;
  let wallMs = 0;
  let running = true;
  const tick = () => {
    const cpu = process.cpuUsage(lastCpu);
    const wall = performance.now();
    cpuMs = Math.max(cpuMs, (cpu.user + cpu.system) / 1000);
    wallMs = Math.max(wallMs, wall - lastWall);
    lastCpu = process.cpuUsage();
    lastWall = wall;
    if (running) setImmediate(tick);
  };
  setImmediate(tick);
  const started = process.cpuUsage();
  const result = await work();
  const used = process.cpuUsage(started);
  running = false;
  return { result, cpuMs, wallMs, totalCpuMs: (used.user + used.system) / 1000 };
}

describe('token estimates', () => {
  beforeAll(async () => {
    // Loading the tokenizer (~0.3 s, once per process) is not what is measured here.
    await estimateTokens('warm up', { maxChars: DEFAULT_MAX });
  });

  // Cut below maxChars: these cases check the exact count, and the README keeps growing.
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8').slice(0, DEFAULT_MAX - 1_024);
  const code = readFileSync(new URL('../app/chat/turn.ts', import.meta.url), 'utf8');
  const prose =
    'The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, ' +
    "and the shells she sells are surely seashells. Don't count your chickens before they've hatched!\n\n";
  const chinese = '我们的服务会保存对话，以便您以后可以继续。保留期过后，它们会被自动删除，您也可以随时删除或选择退出。';
  const japanese = '吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所でニャーニャー泣いていた事だけは記憶している。';
  const mixed = `Résumé naïve café — ${chinese} 🙂🙂 ${japanese}\n\tindented\n    code();  // comment`;

  it.each([
    { name: 'the README', text: readme },
    { name: 'TypeScript source', text: code },
    { name: 'English prose', text: prose.repeat(40) },
    { name: 'Chinese', text: chinese.repeat(20) },
    { name: 'Japanese', text: japanese.repeat(20) },
    { name: 'mixed scripts and whitespace', text: mixed.repeat(30) },
  ])('counts $name within 1% of the exact count', async ({ text }) => {
    const want = exact(text);
    const got = await estimateTokens(text, { maxChars: DEFAULT_MAX });
    expect(Math.abs(got - want) / want).toBeLessThan(0.01);
  });

  it('samples and extrapolates beyond maxChars, within a few percent', async () => {
    // Prose, tables, code and CJK, which differ threefold in characters per token.
    const long = (readme + code + prose.repeat(20) + mixed.repeat(20)).repeat(8);
    expect(long.length).toBeGreaterThan(4 * DEFAULT_MAX);
    const want = exact(long);
    const got = await estimateTokens(long, { maxChars: DEFAULT_MAX });
    expect(Math.abs(got - want) / want).toBeLessThan(0.03);
  });

  it('estimates a prompt as its messages plus the chat format overhead', async () => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: [{ type: 'text', text: prose }, { type: 'image_url' }] },
      { role: 'assistant', content: chinese, name: 'helper' },
      { role: 'user', content: '<|endoftext|> is text here, not a special token' },
    ];
    const want =
      3 +
      messages.reduce((n, m) => n + 3 + exact(m.role), 0) +
      exact('You are terse.') +
      exact(prose) +
      exact(chinese) +
      exact('helper') +
      1 +
      exact('<|endoftext|> is text here, not a special token');
    expect(await estimatePromptTokens(messages, { maxChars: DEFAULT_MAX })).toBe(want);
  });

  it.each([
    { name: 'letters without spaces', text: 'a'.repeat(65_536) },
    { name: 'spaces', text: ' '.repeat(65_536) + 'x' },
    { name: 'newlines', text: '\n'.repeat(65_536) },
    { name: 'punctuation', text: '.'.repeat(65_536) },
    { name: 'varied CJK', text: cjk(65_536) },
    { name: 'varied emoji', text: emoji(65_536) },
    { name: '1 MiB of letters without spaces', text: 'a'.repeat(1 << 20) },
  ])('never holds the event loop long on a run of $name', async ({ text }) => {
    const { result, cpuMs, wallMs, totalCpuMs } = await longestBlock(() => estimatePromptTokens([{ role: 'user', content: text }], { maxChars: DEFAULT_MAX }));
    expect(result).toBeGreaterThan(0);
    // Slices are ~2 ms; the margin is for a loaded machine. Before the budget: seconds to minutes.
    expect(cpuMs, `longest block, CPU (wall: ${wallMs.toFixed(1)} ms)`).toBeLessThan(25);
    // The whole estimate is bounded by maxChars, however long the text.
    expect(totalCpuMs).toBeLessThan(1_500);
  });

  it('counts a long run close to what the tokenizer would', async () => {
    // 8 "a"s are one token; pieces of 128 keep that exact.
    expect(await estimateTokens('a'.repeat(262_144), { maxChars: DEFAULT_MAX })).toBe(262_144 / 8);
  });

  it('reads TOKEN_ESTIMATE_MAX_CHARS from the environment', () => {
    expect(DEFAULT_MAX).toBe(65_536);
    expect(loadConfig({ TOKEN_ESTIMATE_MAX_CHARS: '200000' }).tokenEstimateMaxChars).toBe(200_000);
    expect(() => loadConfig({ TOKEN_ESTIMATE_MAX_CHARS: '10' })).toThrow(/TOKEN_ESTIMATE_MAX_CHARS.*whole number from 1024/);
  });
});

const mock = useMockUpstream();

describe.each(dialects)('a server estimating huge prompts on %s', (dialect) => {
  let db: TestStore;
  let server: RunningServer;

  beforeAll(async () => {
    db = await testStore(dialect);
    server = await startServer(testConfig({ OPENAI_BASE_URL: mock.url, PORT: '0', HOST: '127.0.0.1' }), {
      store: db.store,
      logger: createLogger('silent'),
    });
    // The server runs in this process: load the tokenizer now, once, outside the measurement.
    await estimateTokens('warm up', { maxChars: DEFAULT_MAX });
  });
  afterAll(async () => {
    await server?.close();
    await db?.cleanup();
  });

  const chat = (session: string, body: Record<string, unknown>) =>
    fetch(`${server.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session },
      body: JSON.stringify({ stream: true, ...body }),
    });
  const answerOf = (session: string, id: string) =>
    waitFor(async () => {
      const res = await fetch(`${server.url}/v1/conversations/${id}`, { headers: { 'x-session-id': session } });
      const m = ((await res.json()) as { messages?: any[] }).messages?.at(-1);
      return m?.role === 'assistant' && m.status !== 'streaming' ? m : null;
    }, 20_000);

  it('answers /healthz within 200 ms and keeps other streams flowing throughout', async () => {
    const session = newSession();

    // Another client's stream, 5 ms between chunks, read as it arrives.
    const other = await chat(session, { messages: [{ role: 'user', content: 'hi' }], mock: { chunks: 20_000, delay_ms: 5 } });
    const otherReader = other.body!.getReader();
    const otherChunks: number[] = [];
    const readingOther = (async () => {
      for (;;) {
        const { done } = await otherReader.read();
        if (done) return;
        otherChunks.push(performance.now());
      }
    })();
    await waitFor(() => otherChunks.length > 0);

    // /healthz, polled back to back: one request is always in flight, so a blocked event loop
    // shows up as a slow answer or as a gap between two answers.
    const health: { ms: number; at: number }[] = [];
    let polling = true;
    const polls = (async () => {
      while (polling) {
        const started = performance.now();
        const res = await fetch(`${server.url}/healthz`);
        expect(res.status).toBe(200);
        await res.text();
        health.push({ ms: performance.now() - started, at: performance.now() });
      }
    })();
    await waitFor(() => health.length > 0);
    const phaseStart = performance.now();

    const prompts = {
      letters: 'a'.repeat(262_144),
      cjk: cjk(262_144 / 3), // 256 KiB of UTF-8
      emoji: emoji(262_144 / 2), // 256 KiB of UTF-8
    };
    const cut = Object.entries(prompts).map(async ([name, content]) => {
      // Cut by the client after the first chunk: the estimate then runs on what was sent.
      const res = await chat(session, { messages: [{ role: 'user', content }], mock: { usage: false, chunks: 200, delay_ms: 5 } });
      expect(res.status, name).toBe(200);
      const reader = res.body!.getReader();
      await reader.read();
      await reader.cancel();
      return [name, await answerOf(session, res.headers.get('x-conversation-id')!)] as const;
    });
    // And an answer that is one long run, read to the end.
    const longAnswer = (async () => {
      const res = await chat(session, { messages: [{ role: 'user', content: 'go' }], mock: { usage: false, text: 'b'.repeat(200_000), chunks: 50 } });
      await res.text();
      return answerOf(session, res.headers.get('x-conversation-id')!);
    })();
    const answers = Object.fromEntries(await Promise.all(cut));
    const long = await longAnswer;
    const phaseEnd = performance.now();

    polling = false;
    await polls;
    await otherReader.cancel();
    await readingOther;

    for (const answer of Object.values(answers)) {
      expect(answer).toMatchObject({ status: 'error', finish_reason: 'client_abort', tokens_source: 'estimated' });
      expect(answer.tokens_in).toBeGreaterThan(1_000);
    }
    // 8 "a"s are one token, plus the chat format's 7.
    expect(answers.letters.tokens_in).toBe(262_144 / 8 + 7);
    expect(long).toMatchObject({ status: 'final', tokens_source: 'estimated', tokens_out: (exact('b'.repeat(128)) * 200_000) / 128 });

    const during = health.filter((h) => h.at >= phaseStart);
    expect(during.length, 'health answers during the estimates').toBeGreaterThan(5);
    const slowest = Math.max(...health.map((h) => h.ms));
    const gaps = health.slice(1).map((h, i) => h.at - health[i]!.at);
    expect(slowest, 'slowest /healthz').toBeLessThan(200);
    expect(Math.max(...gaps), 'longest gap between /healthz answers').toBeLessThan(200);

    const flowing = otherChunks.filter((at) => at >= phaseStart && at <= phaseEnd);
    expect(flowing.length, 'chunks of the other stream during the estimates').toBeGreaterThan(5);
    const otherGaps = otherChunks.slice(1).map((at, i) => at - otherChunks[i]!);
    expect(Math.max(...otherGaps), 'longest gap in the other stream').toBeLessThan(200);
  });
});
