import type { HistoryBatch, MessageFinish, Store } from '../../db/store.js';

interface Waiter {
  resolve(): void;
  reject(err: unknown): void;
}

interface Pending {
  messages: Map<string, { append: string; finish: MessageFinish | null }>;
  completions: Map<string, { upstreamId: string | null; model: string | null }>;
  waiters: Waiter[];
}

const empty = (): Pending => ({ messages: new Map(), completions: new Map(), waiters: [] });

/**
 * The writes of every answer this process is recording, committed together: one transaction
 * at a time, holding everything that was asked for while the previous one ran (group commit).
 * With one stream that is a write per flush, as before; with hundreds, one round trip and one
 * commit carry them all instead of one each, so the database's cost grows with the number of
 * flushes in flight, not the number of streams. Each caller's promise settles with its batch:
 * a failed batch fails every write in it, and each caller retries as it would a write of its own
 * (streaming/recorder.ts keeps the text and backs off).
 */
export class HistoryWriter {
  private next: Pending = empty();
  private scheduled = false;
  private running = false;

  constructor(private readonly store: Store) {}

  /** Appends text to a message (after any text asked for earlier). */
  append(messageId: string, text: string): Promise<void> {
    return this.add((p) => {
      const m = p.messages.get(messageId);
      if (m) m.append += text;
      else p.messages.set(messageId, { append: text, finish: null });
    });
  }

  /** Ends a message, after the text asked for before it. */
  finish(messageId: string, finish: MessageFinish): Promise<void> {
    return this.add((p) => {
      const m = p.messages.get(messageId);
      if (m) m.finish ??= finish;
      else p.messages.set(messageId, { append: '', finish });
    });
  }

  /** Records the upstream's id and model of a stored completion (the first one asked for wins). */
  note(completionId: string, upstream: { upstreamId: string | null; model: string | null }): Promise<void> {
    return this.add((p) => {
      if (!p.completions.has(completionId)) p.completions.set(completionId, upstream);
    });
  }

  private add(put: (p: Pending) => void): Promise<void> {
    put(this.next);
    const done = new Promise<void>((resolve, reject) => this.next.waiters.push({ resolve, reject }));
    this.schedule();
    return done;
  }

  /** The next batch goes once the current one is done, and not inside the caller's stack. */
  private schedule(): void {
    if (this.scheduled || this.running || this.next.waiters.length === 0) return;
    this.scheduled = true;
    setImmediate(this.run);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    const taken = this.next;
    this.next = empty();
    this.running = true;
    const batch: HistoryBatch = {
      messages: [...taken.messages].map(([id, m]) => ({ id, ...m })),
      completions: [...taken.completions].map(([id, c]) => ({ id, ...c })),
    };
    Promise.resolve().then(() => this.store.writeBatch(batch)).then(
      () => {
        for (const w of taken.waiters) w.resolve();
      },
      (err: unknown) => {
        for (const w of taken.waiters) w.reject(err);
      },
    ).finally(() => {
      this.running = false;
      this.schedule();
    });
  };
}
