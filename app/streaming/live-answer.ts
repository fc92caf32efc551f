import { cleanText } from '../../db/shared.js';
import type { ToolCall } from '../chat/stream.js';
import type { AnswerBus, AnswerEvent } from './bus.js';

/** Why a proxied exchange was stopped from this side. */
export type StopCause = 'client_abort' | 'cancelled' | 'interrupted';

const DELTA: AnswerEvent = { kind: 'delta' };
const ENDED: AnswerEvent = { kind: 'ended' };

const isHighSurrogate = (code: number) => code >= 0xd800 && code <= 0xdbff;

/**
 * An answer this process is generating, as watchers in this process follow it: its text exactly
 * as the database holds it once written, its tool calls so far. Each change is announced on the
 * bus (`delta`), so a watcher here sees new text at once, without reading the database.
 *
 * Text is cleaned as the store cleans it (U+0000 and lone surrogates become U+FFFD, one code
 * unit for one, so offsets never move) piece by piece; a high surrogate that ends a piece waits
 * for the next one, in case its other half comes there, so cleaning pieces gives what cleaning
 * the whole would.
 */
export class LiveAnswer {
  /** The text so far, as stored: offsets into it are the offsets watchers resume at. */
  text = '';
  /** Tool calls assembled so far, by index (holes where the upstream skipped one). */
  toolCalls: readonly (ToolCall | undefined)[] = [];
  /** Recorded in full: watchers read the rest from the database. */
  ended = false;
  private held = '';
  private stopper: ((cause: StopCause) => void) | null = null;
  private stopAsked: StopCause | null = null;
  private readonly unsubscribe: () => void;

  constructor(
    readonly messageId: string,
    private readonly bus: AnswerBus,
    private readonly onEnd: () => void,
  ) {
    // A cancel request, from this process or (through the bus) another one.
    this.unsubscribe = bus.subscribe(messageId, (event) => {
      if (event.kind === 'cancel') this.stop('cancelled');
    });
  }

  /** Takes content as it arrives; returns it as the database will store it (possibly shorter by a held surrogate). */
  append(content: string): string {
    let piece = this.held ? this.held + content : content;
    this.held = '';
    if (isHighSurrogate(piece.charCodeAt(piece.length - 1))) {
      this.held = piece.slice(-1);
      piece = piece.slice(0, -1);
    }
    piece = cleanText(piece);
    this.text += piece;
    return piece;
  }

  /** The held surrogate, when the answer ends without its other half (as stored: U+FFFD). */
  takeHeld(): string {
    const rest = this.held ? cleanText(this.held) : '';
    this.held = '';
    this.text += rest;
    return rest;
  }

  /** Tells this process's watchers that text or tool calls changed. */
  changed(): void {
    this.bus.publish(this.messageId, DELTA);
  }

  /** Who stops the exchange: a request made before there was one is passed on now. */
  onStop(stopper: (cause: StopCause) => void): void {
    this.stopper = stopper;
    if (this.stopAsked) stopper(this.stopAsked);
  }

  /** Stops the exchange (a cancel request, from the bus or the lease heartbeat). */
  stop(cause: StopCause): void {
    if (this.ended) return;
    if (this.stopper) this.stopper(cause);
    else this.stopAsked ??= cause;
  }

  /** The answer is recorded to its end: watchers read how it ended from the database. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.unsubscribe();
    this.onEnd();
    this.bus.publish(this.messageId, ENDED);
  }
}

/** The answers this process is generating, by message id. */
export class LiveAnswers {
  private readonly byId = new Map<string, LiveAnswer>();

  constructor(private readonly bus: AnswerBus) {}

  open(messageId: string): LiveAnswer {
    const answer = new LiveAnswer(messageId, this.bus, () => {
      if (this.byId.get(messageId) === answer) this.byId.delete(messageId);
    });
    this.byId.set(messageId, answer);
    return answer;
  }

  get(messageId: string): LiveAnswer | undefined {
    return this.byId.get(messageId);
  }

  get size(): number {
    return this.byId.size;
  }
}
