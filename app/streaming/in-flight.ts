import { hostname } from 'node:os';
import type { Lease, Store } from '../../db/store.js';
import type { Logger } from '../logger.js';
import { LocalAnswerBus, type AnswerBus } from './bus.js';
import { LiveAnswers } from './live-answer.js';
import { StreamSlots } from './slots.js';
import { Watchers } from './watch.js';

/** A stream this process is relaying right now. */
export interface InFlightStream {
  /** Ends the stream early (shutdown): the client is told, the message is closed as interrupted. */
  interrupt(): void;
  /** Resolves once the stream has ended and its message is fully recorded. */
  settled: Promise<void>;
}

export interface InFlightOptions {
  /** How long a message's lease lasts without a heartbeat. */
  leaseMs: number;
  /** How often expired leases are looked for. */
  sweepMs: number;
  log: Logger;
  /** Answer events between watchers and writers: across processes on Postgres; in this process by default. */
  bus?: AnswerBus;
}

/**
 * The streams of this process, and the lease that marks their messages as still being written.
 * Every process renews the leases of its own messages and closes messages whose lease expired
 * (their writer died), so a crash never leaves a message `streaming` for long — and a process
 * never touches a message that a live process is still writing.
 */
export class InFlight {
  /** Identifies this process as a lease holder. */
  readonly holder = `${hostname()}:${process.pid}:${crypto.randomUUID().slice(0, 8)}`;
  private readonly streams = new Set<InFlightStream>();
  /** Chat completions running now, per caller and in total, for the concurrency caps. */
  readonly slots = new StreamSlots();
  readonly bus: AnswerBus;
  /** The answers this process is generating, as its watchers follow them and cancels reach them. */
  readonly answers: LiveAnswers;
  /** Who watches which answer here (GET …/messages/:message_id/stream). */
  readonly watchers = new Watchers();
  private timers: ReturnType<typeof setInterval>[] = [];

  constructor(
    private readonly store: Store | null,
    private readonly options: InFlightOptions,
  ) {
    this.bus = options.bus ?? new LocalAnswerBus();
    this.answers = new LiveAnswers(this.bus);
  }

  lease(now = Date.now()): Lease {
    return { holder: this.holder, expiresAt: new Date(now + this.options.leaseMs) };
  }

  track(stream: InFlightStream): void {
    this.streams.add(stream);
    void stream.settled.finally(() => this.streams.delete(stream));
  }

  /** Starts heartbeats and periodic sweeps, with one sweep right away (start-up recovery). */
  async start(): Promise<void> {
    if (!this.store || this.timers.length) return;
    const heartbeat = setInterval(() => void this.heartbeat(), Math.max(50, Math.floor(this.options.leaseMs / 3)));
    const sweep = setInterval(() => void this.sweep(), this.options.sweepMs);
    heartbeat.unref();
    sweep.unref();
    this.timers = [heartbeat, sweep];
    await this.sweep();
  }

  /**
   * Renews this process's leases, and stops the answers whose cancel was requested: the bus
   * tells a writer at once; this is for a notification that got lost.
   */
  async heartbeat(): Promise<void> {
    if (!this.store) return;
    try {
      const cancelled = await this.store.renewLeases(this.holder, this.lease().expiresAt);
      for (const id of cancelled) this.answers.get(id)?.stop('cancelled');
    } catch (err) {
      this.options.log.warn({ err }, 'could not renew stream leases');
    }
  }

  async sweep(): Promise<number> {
    if (!this.store) return 0;
    try {
      const closed = await this.store.sweepOrphans(new Date());
      if (closed) this.options.log.warn({ closed }, 'closed messages left streaming by a process that is gone (finish_reason interrupted)');
      return closed;
    } catch (err) {
      this.options.log.warn({ err }, 'orphan sweep failed; will retry');
      return 0;
    }
  }

  /**
   * Lets running streams finish for up to `graceMs`, then interrupts the rest and waits for
   * their messages to be recorded.
   */
  async shutdown(graceMs: number): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    const all = () => Promise.allSettled([...this.streams].map((s) => s.settled));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
    clearTimeout(timer);
    if (this.streams.size) {
      this.options.log.warn({ streams: this.streams.size }, 'shutdown grace period over; interrupting streams');
      for (const s of this.streams) s.interrupt();
      // Recording the ends needs the database; do not wait forever for one that is down.
      await Promise.race([all(), new Promise<void>((r) => setTimeout(r, 10_000).unref())]);
      if (this.streams.size) this.options.log.error({ streams: this.streams.size }, 'stopping with messages whose end could not be recorded; the next sweep closes them');
    }
  }
}
