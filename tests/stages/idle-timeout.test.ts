import { describe, expect, it } from 'vitest';
import { idleTimeout, UpstreamTimeoutError, type Clock } from '../../app/streaming/stages/idle-timeout.js';

/** A clock that moves only when told to, firing due timers in order. */
function fakeClock() {
  let now = 0;
  let timers: { at: number; fn: () => void; id: number }[] = [];
  let ids = 0;
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn, ms) => {
      const id = ++ids;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimeout: (id) => void (timers = timers.filter((t) => t.id !== id)),
  };
  return {
    clock,
    advance(ms: number) {
      const until = now + ms;
      for (;;) {
        timers.sort((a, b) => a.at - b.at);
        const next = timers[0];
        if (!next || next.at > until) break;
        timers.shift();
        now = next.at;
        next.fn();
      }
      now = until;
    },
    pending: () => timers.length,
  };
}

const chunk = new TextEncoder().encode('data: a\n\n');

describe('the idle timeout stage', () => {
  it.each([
    // [gaps between chunks (ms), timeout, errors?]
    [[10, 10, 10], 20, false],
    [[19, 19, 19, 19], 20, false],
    [[5, 25], 20, true],
    [[20], 20, true],
  ])('chunks after %j with a %i ms timeout: errors %s', async (gaps, ms, errors) => {
    const t = fakeClock();
    const stage = idleTimeout(ms, t.clock);
    const writer = stage.writable.getWriter();
    const reader = stage.readable.getReader();
    let failed: unknown = null;
    for (const gap of gaps) {
      t.advance(gap);
      try {
        const reading = reader.read();
        reading.catch(() => {}); // its failure is read below
        await writer.write(chunk);
        expect((await reading).value).toBe(chunk); // untouched
      } catch (err) {
        failed = err;
        break;
      }
    }
    if (!failed && !errors) {
      await writer.close();
      expect((await reader.read()).done).toBe(true);
      expect(t.pending()).toBe(0);
    }
    if (errors) {
      if (!failed) failed = await reader.read().catch((e) => e);
      expect(failed).toBeInstanceOf(UpstreamTimeoutError);
    } else expect(failed).toBeNull();
  });

  it('times out a stream that never sends its first chunk, and cancels its source', async () => {
    const t = fakeClock();
    let cancelled: unknown = null;
    const silent = new ReadableStream<Uint8Array>({ cancel: (reason) => void (cancelled = reason) });
    const reading = silent.pipeThrough(idleTimeout(50, t.clock)).getReader().read();
    t.advance(49);
    t.advance(1);
    await expect(reading).rejects.toBeInstanceOf(UpstreamTimeoutError);
    expect(cancelled).toBeInstanceOf(UpstreamTimeoutError);
  });

  it('stops its timer when the reader goes away', async () => {
    const t = fakeClock();
    const stage = idleTimeout(50, t.clock);
    await stage.readable.cancel('bye');
    expect(t.pending()).toBe(0);
  });
});
