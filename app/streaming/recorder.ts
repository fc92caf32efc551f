import type { MessageFinish } from '../../db/store.js';
import type { HistoryWriter } from './history-writer.js';
import type { Logger } from '../logger.js';

export interface RecorderOptions {
  /** Where the writes go: the process's group commit, shared by every answer it records. */
  writer: HistoryWriter;
  messageId: string;
  /** Write pending text at least this often… */
  flushMs: number;
  /** …or as soon as this many characters are pending. */
  flushChars: number;
  log: Logger;
  /**
   * How long failed content writes are retried before the text still pending is given up on
   * (the message is then recorded as `incomplete` once the database is back).
   */
  retryForMs: number;
  /** Told of every content write: how long it took and whether it worked. */
  onWrite?(ms: number, ok: boolean): void;
  /** Told after each content write that worked: how many characters (UTF-16) the message now holds. */
  onWritten?(chars: number): void;
}

export type TurnOutcome = Omit<MessageFinish, 'finishReason'> & { finishReason: string | null };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const backoff = (failures: number) => Math.min(50 * 2 ** Math.min(failures, 10), 2_000);

/**
 * Records one assistant message as it streams. Text is batched and written off the path of the
 * bytes (timers, never inside the caller's stack), one write at a time so the order holds.
 * A failed write keeps its text and is retried with backoff. `finish` runs once, after every
 * received character has been written (or retrying has run out), whatever called it first.
 */
export class TurnRecorder {
  private pending = '';
  private timer: ReturnType<typeof setTimeout> | null = null;
  private immediate: ReturnType<typeof setImmediate> | null = null;
  private writing: Promise<void> | null = null;
  private failures = 0;
  private finishing: Promise<void> | null = null;
  /** Characters written so far (the store keeps lengths: what it cleans, it replaces one for one). */
  private written = 0;

  constructor(private readonly options: RecorderOptions) {}

  append(text: string): void {
    if (this.finishing || !text) return;
    this.pending += text;
    // While the database is failing, the backoff timer alone decides when to try again.
    if (this.failures) return;
    if (this.pending.length >= this.options.flushChars) this.flushSoon();
    else this.timer ??= setTimeout(this.onTimer, this.options.flushMs);
  }

  /** Idempotent: the first outcome wins; later calls get the same promise. */
  finish(outcome: TurnOutcome): Promise<void> {
    return (this.finishing ??= this.complete(outcome));
  }

  private readonly onTimer = () => {
    this.timer = null;
    void this.write();
  };

  private flushSoon(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.immediate ??= setImmediate(() => {
      this.immediate = null;
      void this.write();
    });
  }

  private write(): Promise<void> {
    if (this.writing) return this.writing;
    if (!this.pending) return Promise.resolve();
    const text = this.pending;
    this.pending = '';
    const started = performance.now();
    this.writing = this.options.writer.append(this.options.messageId, text).then(
      () => {
        this.failures = 0;
        this.written += text.length;
        this.options.onWrite?.(performance.now() - started, true);
        this.options.onWritten?.(this.written);
      },
      (err: unknown) => {
        this.options.onWrite?.(performance.now() - started, false);
        // Keep the text, in order, ahead of anything that arrived meanwhile.
        this.pending = text + this.pending;
        this.failures++;
        if (this.failures === 1 || this.failures % 20 === 0) {
          this.options.log.warn({ err, message_id: this.options.messageId, failures: this.failures }, 'history write failed; will retry');
        }
      },
    );
    return this.writing.finally(() => {
      this.writing = null;
      if (this.finishing || !this.pending) return;
      if (this.failures) this.timer ??= setTimeout(this.onTimer, backoff(this.failures));
      else if (this.pending.length >= this.options.flushChars) this.flushSoon();
      else this.timer ??= setTimeout(this.onTimer, this.options.flushMs);
    });
  }

  private async complete(outcome: TurnOutcome): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    const { writer, messageId, log, retryForMs } = this.options;
    const deadline = Date.now() + retryForMs;
    let lostChars = 0;
    while (this.writing || this.pending) {
      await this.write();
      if (this.pending && this.failures) {
        if (Date.now() >= deadline) {
          lostChars = this.pending.length;
          this.pending = '';
          log.error(
            { message_id: messageId, lost_chars: lostChars, retried_ms: retryForMs },
            'the database stayed down past HISTORY_RETRY_MS; the message will be recorded as incomplete',
          );
          break;
        }
        // Never sleep past the deadline: the last attempt happens at it.
        await sleep(Math.min(backoff(this.failures), Math.max(0, deadline - Date.now())));
      }
    }
    const end: TurnOutcome = lostChars ? { ...outcome, status: 'error', finishReason: 'incomplete' } : outcome;
    // How the message ended is small and essential: keep trying until the database answers.
    for (let attempt = 1; ; attempt++) {
      try {
        await writer.finish(messageId, end);
        if (attempt > 1) log.warn({ message_id: messageId, attempts: attempt, finish_reason: end.finishReason }, 'recorded the end of the message after the database came back');
        return;
      } catch (err) {
        if (attempt === 1) log.warn({ err, message_id: messageId }, 'could not record the end of the message; retrying');
        await sleep(backoff(attempt));
      }
    }
  }
}
