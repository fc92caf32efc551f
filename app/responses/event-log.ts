import type { Message, ResponseEvent, Store } from '../../db/store.js';
import type { Logger } from '../logger.js';
import type { AnswerBus } from '../streaming/bus.js';
import { isTerminalEvent } from '../streaming/stages/responses-events.js';

/*
 * A background response's events, kept in the database as they are made so that any process can
 * replay them (GET /v1/responses/:id?stream=true&starting_after=N) and follow the rest: the
 * events are the ones that were made, with their sequence numbers, so a reader that resumes gets
 * no gap and no repeat.
 */

const backoff = (failures: number) => Math.min(50 * 2 ** Math.min(failures, 10), 2_000);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const encoder = new TextEncoder();

export interface EventLogOptions {
  store: Store;
  bus: AnswerBus;
  log: Logger;
  responseId: string;
  /** The answer's message id: readers listen for its bus events. */
  messageId: string;
  /** How long failed writes are retried before the events still pending are given up on (HISTORY_RETRY_MS). */
  retryForMs: number;
}

/**
 * Writes events as they come, one write at a time: whatever arrived while a write ran goes in
 * the next, so a fast stream costs few writes and a slow one is written at once. Each write is
 * announced on the bus (`grew`), which wakes readers here and, through NOTIFY, elsewhere.
 */
export class EventLogWriter {
  private pending: ResponseEvent[] = [];
  private writing: Promise<void> | null = null;
  private failures = 0;
  private scheduled = false;

  constructor(private readonly options: EventLogOptions) {}

  add(event: ResponseEvent): void {
    this.pending.push(event);
    this.schedule();
  }

  /** Resolves once every event is written (or retrying ran out). */
  async finish(): Promise<void> {
    const deadline = Date.now() + this.options.retryForMs;
    while (this.writing || this.pending.length) {
      await (this.writing ?? this.write());
      if (this.pending.length && this.failures) {
        if (Date.now() >= deadline) {
          this.options.log.error({ response_id: this.options.responseId, lost_events: this.pending.length }, 'could not record the events of a background response');
          this.pending = [];
          return;
        }
        await sleep(Math.min(backoff(this.failures), Math.max(0, deadline - Date.now())));
      }
    }
  }

  private schedule(): void {
    if (this.scheduled || this.writing || this.failures) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.write();
    });
  }

  private write(): Promise<void> {
    if (this.writing) return this.writing;
    if (!this.pending.length) return Promise.resolve();
    const batch = this.pending;
    this.pending = [];
    const { store, bus, responseId, messageId, log } = this.options;
    this.writing = store.appendResponseEvents(responseId, batch).then(
      () => {
        this.failures = 0;
        bus.publish(messageId, { kind: 'grew', offset: batch.at(-1)!.seq });
      },
      (err: unknown) => {
        this.pending = [...batch, ...this.pending];
        this.failures++;
        if (this.failures === 1) log.warn({ err, response_id: responseId }, 'could not record background response events; will retry');
      },
    );
    return this.writing.finally(() => {
      this.writing = null;
      if (!this.pending.length) return;
      if (this.failures) setTimeout(() => void this.write(), backoff(this.failures)).unref();
      else this.schedule();
    });
  }
}

export interface FollowOptions {
  store: Store;
  bus: AnswerBus;
  responseId: string;
  messageId: string;
  /** Events after this sequence number (-1: all of them). */
  after: number;
  /** Looked at this often without news, should a bus event be lost. */
  pollMs?: number;
  /** How long an answer that ended may still be missing its last events (their writer was finishing) before they are made up. */
  graceMs?: number;
  /** The response's end as it stands, for a stream whose writer died before writing it. */
  ending(): Promise<{ type: string; body: Record<string, unknown> }>;
}

const ended = (m: Message | null) => !m || (m.status !== 'streaming' && m.status !== 'draft');

/**
 * The events of a background response after `after`, replayed from the database, then followed
 * as they are written, until its last one. A reader is woken by the bus and looks at least every
 * `pollMs`. If the process that ran the response died, its answer is closed by the sweep and no
 * last event will come: after `graceMs` one is made (the response as it stands), numbered next.
 */
export function followEvents(options: FollowOptions): ReadableStream<Uint8Array> {
  const { store, bus, responseId, messageId, pollMs = 500, graceMs = 3_000 } = options;
  let after = options.after;
  let wake: (() => void) | null = null;
  let news = false;
  let endedSince: number | null = null;
  const unsubscribe = bus.subscribe(messageId, () => {
    news = true;
    wake?.();
  });
  const nap = (ms: number) =>
    new Promise<void>((resolve) => {
      if (news) return resolve();
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = null;
        resolve();
      }
      wake = done;
    });
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        for (;;) {
          news = false;
          const rows = await store.readResponseEvents(responseId, after, 200);
          if (rows.length) {
            let out = '';
            let last = false;
            for (const row of rows) {
              const type = (JSON.parse(row.data) as { type: string }).type;
              out += `event: ${type}\ndata: ${row.data}\n\n`;
              after = row.seq;
              if (isTerminalEvent(type)) {
                last = true;
                break;
              }
            }
            controller.enqueue(encoder.encode(out));
            if (last) {
              unsubscribe();
              controller.close();
            }
            return;
          }
          if (ended(await store.getMessage(messageId))) {
            // Resumed after the last event: nothing follows it.
            const [at] = after >= 0 ? await store.readResponseEvents(responseId, after - 1, 1) : [];
            if (at && at.seq === after && isTerminalEvent((JSON.parse(at.data) as { type: string }).type)) {
              unsubscribe();
              controller.close();
              return;
            }
            endedSince ??= Date.now();
            if (Date.now() - endedSince >= graceMs) {
              const { type, body } = await options.ending();
              controller.enqueue(encoder.encode(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: after + 1, ...body })}\n\n`));
              unsubscribe();
              controller.close();
              return;
            }
          }
          await nap(endedSince === null ? pollMs : Math.min(pollMs, 250));
        }
      },
      cancel() {
        unsubscribe();
        wake?.();
      },
    },
    { highWaterMark: 0 },
  );
}
