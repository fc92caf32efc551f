import type { Json, MessageFinish, Store } from '../../db/store.js';
import type { Logger } from '../logger.js';

export interface RecorderOptions {
  store: Store;
  messageId: string;
  /** Write pending text at least this often… */
  flushMs: number;
  /** …or as soon as this many characters are pending. */
  flushChars: number;
  log: Logger;
  /** How long failed writes are retried before the recorder gives up on them. */
  retryForMs?: number;
}

export interface TurnOutcome {
  status: MessageFinish['status'];
  finishReason: string | null;
  tokensIn?: number | null;
  tokensOut?: number | null;
  toolCalls?: Json | null;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const backoff = (failures: number) => Math.min(50 * 2 ** failures, 2_000);

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

  constructor(private readonly options: RecorderOptions) {}

  get finished(): boolean {
    return this.finishing !== null;
  }

  append(text: string): void {
    if (this.finishing || !text) return;
    this.pending += text;
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
    this.writing = this.options.store.appendContent(this.options.messageId, text).then(
      () => {
        this.failures = 0;
      },
      (err: unknown) => {
        // Keep the text, in order, ahead of anything that arrived meanwhile.
        this.pending = text + this.pending;
        this.failures++;
        this.options.log.warn({ err, message_id: this.options.messageId, failures: this.failures }, 'history write failed; will retry');
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
    const deadline = Date.now() + (this.options.retryForMs ?? 30_000);
    while (this.writing || this.pending) {
      await this.write();
      if (this.pending && this.failures) {
        if (Date.now() > deadline) {
          this.options.log.error(
            { message_id: this.options.messageId, lost_chars: this.pending.length },
            'history write kept failing; the stored message is missing its tail',
          );
          break;
        }
        await sleep(backoff(this.failures));
      }
    }
    for (let attempt = 0; ; attempt++) {
      try {
        await this.options.store.finishMessage(this.options.messageId, outcome);
        return;
      } catch (err) {
        if (Date.now() > deadline) {
          this.options.log.error({ err, message_id: this.options.messageId }, 'could not record how the message ended');
          return;
        }
        await sleep(backoff(attempt + 1));
      }
    }
  }
}
