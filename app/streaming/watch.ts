import type { Json, Store } from '../../db/store.js';
import type { Logger } from '../logger.js';
import type { AnswerBus } from './bus.js';
import type { LiveAnswer, LiveAnswers } from './live-answer.js';
import { errorEventData } from './relay.js';

/** Code points of content per event, and per database read: what one watcher holds at most. */
const WINDOW = 4096;
const encoder = new TextEncoder();
const KEEP_ALIVE = encoder.encode(': keep-alive\n\n');

export interface WatchOptions {
  store: Store;
  bus: AnswerBus;
  answers: LiveAnswers;
  messageId: string;
  /** For the chunks' `model` (the conversation's) and `created` (the answer's). */
  model: string | null;
  createdAt: Date;
  /** UTF-16 code units of content the client already has (Last-Event-ID or ?offset). */
  offset: number;
  log: Logger;
  /** How often the database is looked at when nothing is heard (a notification lost, a writer gone). */
  pollMs?: number;
  /** A comment goes out after this long without an event, so proxies keep the connection. */
  keepAliveMs?: number;
}

/** Where the database reads of a watcher stand: code points read, and the UTF-16 offset that is. */
interface Position {
  chars: number;
  units: number;
}

/** Whether the code unit at `i` of `text` begins a surrogate pair. */
const pairAt = (text: string, i: number) => {
  const c = text.charCodeAt(i);
  if (c < 0xd800 || c > 0xdbff) return false;
  const d = text.charCodeAt(i + 1);
  return d >= 0xdc00 && d <= 0xdfff;
};

function codePoints(text: string): number {
  let n = 0;
  for (let i = 0; i < text.length; i += pairAt(text, i) ? 2 : 1) n++;
  return n;
}

/** The last whole code point at or before UTF-16 offset `offset` of `text` (an offset inside a pair is not one). */
function positionIn(text: string, offset: number): Position {
  let chars = 0;
  let units = 0;
  while (units < text.length) {
    const width = pairAt(text, units) ? 2 : 1;
    if (units + width > offset) break;
    units += width;
    chars++;
  }
  return { chars, units };
}

/** At most WINDOW code units of `text` from `from`, never ending between the halves of a pair. */
function windowOf(text: string, from: number): string {
  let end = Math.min(text.length, from + WINDOW);
  if (end < text.length && end - from > 1 && pairAt(text, end - 1)) end--;
  return text.slice(from, end);
}

interface ToolCallLike {
  id?: unknown;
  type?: unknown;
  function?: { name?: unknown; arguments?: unknown };
}

/**
 * One watcher of one answer: an SSE stream in OpenAI's `chat.completion.chunk` format, of the
 * stored answer from `offset`, then its live deltas, then `[DONE]` (or, for an answer that ended
 * in error, the error event the proxy sends). Every event carries `id: N`, N the UTF-16 code
 * units of content the client has after it, so a client that comes back with `Last-Event-ID: N`
 * gets exactly what follows.
 *
 * The stream is pulled: nothing is produced until the client reads, and each read is served
 * from the source of truth — the answer this process is generating (its text is in memory
 * anyway), else the database, read from where this watcher stands. Events on the bus only wake
 * a watcher up. So a slow watcher costs its offset and one window, never a queue, and the
 * producer never waits for it.
 *
 * Tool calls are sent as deltas of the calls assembled so far, whole on each connection (a
 * client that resumes starts its tool calls afresh); `finish_reason` comes with the end.
 */
export class Watch {
  readonly readable: ReadableStream<Uint8Array>;
  /** Content delivered, in UTF-16 code units. */
  delivered: number;
  /** Bytes handed to the stream (read by the client or queued for it). */
  sentBytes = 0;
  private position: Position | null = null;
  private live: LiveAnswer | null = null;
  private readonly sentCalls: { name: number; args: number }[] = [];
  private roleSent: boolean;
  private finished = false;
  private closed = false;
  private poked = false;
  private wake: (() => void) | null = null;
  private lastSentAt = Date.now();
  private readonly unsubscribe: () => void;
  private readonly head: { id: string; object: 'chat.completion.chunk'; created: number; model: string };
  private readonly onClose: Set<() => void> = new Set();

  constructor(private readonly options: WatchOptions) {
    this.delivered = options.offset;
    this.roleSent = options.offset > 0;
    this.head = {
      id: `chatcmpl-${options.messageId}`,
      object: 'chat.completion.chunk',
      created: Math.floor(options.createdAt.getTime() / 1000),
      model: options.model ?? 'unknown',
    };
    // Before the first read, so nothing that happens from here on goes unheard.
    this.unsubscribe = options.bus.subscribe(options.messageId, this.poke);
    this.readable = new ReadableStream<Uint8Array>(
      { pull: (controller) => this.pull(controller), cancel: () => this.close() },
      // One event queued at most: a client that does not read holds nothing more.
      { highWaterMark: 1 },
    );
  }

  /** Runs once the watch is over, however it ends. */
  onClosed(fn: () => void): void {
    if (this.closed) fn();
    else this.onClose.add(fn);
  }

  private readonly poke = () => {
    this.poked = true;
    this.wake?.();
  };

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe();
    this.wake?.();
    for (const fn of this.onClose) fn();
    this.onClose.clear();
  }

  private async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    try {
      for (;;) {
        if (this.closed) return;
        this.poked = false;
        const out = await this.next();
        if (this.closed) return;
        if (out) this.send(controller, encoder.encode(out));
        if (this.finished) {
          controller.close();
          this.close();
          return;
        }
        if (out) return;
        if (await this.sleep()) return this.send(controller, KEEP_ALIVE);
      }
    } catch (err) {
      this.options.log.warn({ err, message_id: this.options.messageId }, 'watching an answer failed');
      controller.error(err);
      this.close();
    }
  }

  private send(controller: ReadableStreamDefaultController<Uint8Array>, bytes: Uint8Array): void {
    controller.enqueue(bytes);
    this.sentBytes += bytes.byteLength;
    this.lastSentAt = Date.now();
  }

  /** Waits for an event or the poll interval; true when a keep-alive is due instead. */
  private sleep(): Promise<boolean> {
    if (this.poked) return Promise.resolve(false);
    const { pollMs = 1_000, keepAliveMs = 15_000 } = this.options;
    const keepAliveIn = this.lastSentAt + keepAliveMs - Date.now();
    return new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve(Date.now() - this.lastSentAt >= keepAliveMs);
      }, Math.max(0, Math.min(pollMs, keepAliveIn)));
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve(false);
      };
    });
  }

  /** What there is to send now ('' when nothing new). */
  private async next(): Promise<string> {
    const live = this.options.answers.get(this.options.messageId);
    if (live) {
      this.live = live;
      return this.fromLive(live);
    }
    return this.fromDatabase();
  }

  private fromLive(live: LiveAnswer): string {
    let out = '';
    if (live.text.length > this.delivered) {
      const piece = windowOf(live.text, this.delivered);
      this.delivered += piece.length;
      out += this.chunk({ content: piece });
    }
    const calls = this.toolCallDeltas(live.toolCalls);
    if (calls.length) out += this.chunk({ tool_calls: calls });
    // Where the database stands is known again only from this text (see locate()).
    this.position = null;
    return out;
  }

  private async fromDatabase(): Promise<string> {
    const { store, messageId } = this.options;
    if (!this.position) {
      this.position = await this.locate();
      // Located: the ended answer's text need not be kept alive for this watcher any more.
      this.live = null;
    }
    const position = this.position;
    const row = position && (await store.readMessageText(messageId, position.chars, WINDOW));
    if (!position || !row) {
      // The conversation was deleted meanwhile: nothing more will come.
      this.finished = true;
      return '';
    }
    let out = '';
    const text = row.text;
    const chars = codePoints(text);
    if (text) {
      const piece = text.slice(Math.max(0, this.delivered - position.units));
      position.units += text.length;
      position.chars += chars;
      if (piece) out += this.chunk({ content: piece });
      this.delivered = Math.max(this.delivered, position.units);
    }
    // The snapshot holds all the text there is and says the answer ended: say how, once.
    if (chars < WINDOW && (row.status === 'final' || row.status === 'error')) {
      const calls = this.toolCallDeltas(row.toolCalls);
      if (calls.length) out += this.chunk({ tool_calls: calls });
      if (row.status === 'final') {
        const reason = row.finishReason ?? (calls.length || this.sentCalls.length ? 'tool_calls' : 'stop');
        out += this.chunk({}, reason);
        out += `id: ${this.delivered}\ndata: [DONE]\n\n`;
      } else {
        out += `id: ${this.delivered}\ndata: ${errorEventData(row.finishReason)}\n\n`;
      }
      this.finished = true;
    }
    return out;
  }

  /**
   * Where `delivered` falls in the stored text, in code points: from the text this process
   * generated when it did (the same text, see LiveAnswer), else from the stored text, read whole
   * once. Offset 0 needs neither.
   */
  private async locate(): Promise<Position | null> {
    if (this.delivered === 0) return { chars: 0, units: 0 };
    if (this.live) return positionIn(this.live.text, this.delivered);
    const row = await this.options.store.readMessageText(this.options.messageId, 0);
    return row && positionIn(row.text, this.delivered);
  }

  private chunk(delta: Record<string, unknown>, finishReason: string | null = null): string {
    if (!this.roleSent) {
      delta = { role: 'assistant', ...delta };
      this.roleSent = true;
    }
    return `id: ${this.delivered}\ndata: ${JSON.stringify({ ...this.head, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
  }

  /** What the client lacks of the tool calls assembled so far (listed without holes, as stored). */
  private toolCallDeltas(calls: readonly unknown[] | Json | null): unknown[] {
    if (!Array.isArray(calls)) return [];
    const out: unknown[] = [];
    const present = (calls as unknown[]).filter((c): c is ToolCallLike => !!c && typeof c === 'object');
    present.forEach((call, index) => {
      const name = typeof call.function?.name === 'string' ? call.function.name : '';
      const args = typeof call.function?.arguments === 'string' ? call.function.arguments : '';
      const sent = this.sentCalls[index];
      if (!sent) {
        out.push({ index, id: call.id, type: call.type ?? 'function', function: { name, arguments: args } });
        this.sentCalls[index] = { name: name.length, args: args.length };
        return;
      }
      const more: { name?: string; arguments?: string } = {};
      if (name.length > sent.name) more.name = name.slice(sent.name);
      if (args.length > sent.args) more.arguments = args.slice(sent.args);
      if (more.name === undefined && more.arguments === undefined) return;
      out.push({ index, function: more });
      sent.name = name.length;
      sent.args = args.length;
    });
    return out;
  }
}

/** The watchers of each answer in this process, to cap them (STREAM_MAX_WATCHERS). */
export class Watchers {
  private readonly byMessage = new Map<string, Set<Watch>>();

  /** A new watch of the answer, unless it already has `max` watchers here (null). */
  open(options: WatchOptions, max: number): Watch | null {
    let set = this.byMessage.get(options.messageId);
    if (set && set.size >= max) return null;
    if (!set) this.byMessage.set(options.messageId, (set = new Set()));
    const watch = new Watch(options);
    set.add(watch);
    const watchers = set;
    watch.onClosed(() => {
      watchers.delete(watch);
      if (!watchers.size && this.byMessage.get(options.messageId) === watchers) this.byMessage.delete(options.messageId);
    });
    return watch;
  }

  /** The watches of an answer open here now. */
  of(messageId: string): readonly Watch[] {
    return [...(this.byMessage.get(messageId) ?? [])];
  }
}
