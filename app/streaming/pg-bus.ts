import type { NotificationChannel } from '../../db/store.js';
import type { Logger } from '../logger.js';
import { LocalAnswerBus, type AnswerBus, type AnswerEvent, type AnswerListener } from './bus.js';

const REMOTE_KINDS = new Set<AnswerEvent['kind']>(['grew', 'ended', 'cancel']);
/** Postgres takes NOTIFY payloads under 8000 bytes. */
const MAX_NOTIFY_BYTES = 7990;

/**
 * The bus across the server processes of one Postgres database, on LISTEN/NOTIFY (no other
 * infrastructure). This process's listeners hear its events at once; other processes hear
 * `grew`, `ended` and `cancel` through a NOTIFY whose payload names the answers and nothing of
 * their content (NOTIFY takes under 8000 bytes: the content is read from the database). A NOTIFY
 * is sent after the write it announces has committed, so a listener that reads then sees it.
 * Every process hears every answer's events and drops those nobody here listens to: one map
 * lookup each.
 */
export class PgAnswerBus implements AnswerBus {
  private readonly local = new LocalAnswerBus();
  /** Tells this process's own notifications apart, which its listeners already heard. */
  private readonly origin = crypto.randomUUID().slice(0, 8);
  private unlisten: (() => Promise<void>) | null = null;
  private failures = 0;

  private constructor(
    private readonly channel: NotificationChannel,
    private readonly log: Logger,
  ) {}

  /** Listens before it returns, so nothing sent after start-up is missed. */
  static async start(channel: NotificationChannel, log: Logger): Promise<PgAnswerBus> {
    const bus = new PgAnswerBus(channel, log);
    bus.unlisten = await channel.listen(
      (payload) => bus.heard(payload),
      // (Re)connected: whatever was sent meanwhile is lost, so every listener looks again.
      () => bus.local.publishAll({ kind: 'resync' }),
    );
    return bus;
  }

  publish(messageId: string, event: AnswerEvent): void {
    this.local.publish(messageId, event);
    if (!REMOTE_KINDS.has(event.kind)) return;
    // Gathered for a moment: a batch of the history writer announces many answers at once, and
    // one NOTIFY carries them all (one round trip instead of one each). Of an answer's `grew`
    // events only the furthest matters.
    const key = `${event.kind}:${messageId}`;
    const offset = event.kind === 'grew' ? event.offset : 0;
    this.outbox.set(key, [event.kind, messageId, Math.max(offset, this.outbox.get(key)?.[2] ?? 0)]);
    if (this.outbox.size === 1) setImmediate(this.send);
  }

  private readonly outbox = new Map<string, [kind: string, messageId: string, offset: number]>();

  /** The gathered events, in as few notifications as fit under Postgres' payload limit. */
  private readonly send = (): void => {
    const events = [...this.outbox.values()];
    this.outbox.clear();
    const payloads: string[] = [];
    let part: string[] = [];
    let size = 0;
    const head = JSON.stringify(this.origin).length + 4;
    for (const event of events) {
      const json = JSON.stringify(event);
      const bytes = Buffer.byteLength(json);
      if (part.length && head + size + bytes + 1 > MAX_NOTIFY_BYTES) {
        payloads.push(`[${JSON.stringify(this.origin)},[${part.join(',')}]]`);
        part = [];
        size = 0;
      }
      part.push(json);
      size += bytes + 1;
    }
    if (part.length) payloads.push(`[${JSON.stringify(this.origin)},[${part.join(',')}]]`);
    for (const payload of payloads) {
      this.channel.notify(payload).then(
        () => (this.failures = 0),
        (err: unknown) => {
          // Listeners elsewhere poll the database as well: a lost notification only delays them.
          if (this.failures++ % 100 === 0) this.log.warn({ err, failures: this.failures }, 'could not notify other processes of an answer event');
        },
      );
    }
  };

  subscribe(messageId: string, listener: AnswerListener): () => void {
    return this.local.subscribe(messageId, listener);
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.().catch(() => {});
    await this.local.close();
  }

  /** `[origin, [[kind, messageId, offset], …]]`, or one event as `[origin, kind, messageId, offset]`. */
  private heard(payload: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    if (!Array.isArray(parsed) || parsed[0] === this.origin) return;
    const events = parsed.length === 2 && Array.isArray(parsed[1]) ? (parsed[1] as unknown[]) : parsed.length === 4 ? [parsed.slice(1)] : [];
    for (const event of events) {
      if (!Array.isArray(event) || event.length !== 3) continue;
      const [kind, messageId, offset] = event as unknown[];
      if (typeof messageId !== 'string') continue;
      if (kind === 'grew' && typeof offset === 'number') this.local.publish(messageId, { kind, offset });
      else if (kind === 'ended' || kind === 'cancel') this.local.publish(messageId, { kind });
    }
  }
}
