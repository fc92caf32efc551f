import type { NotificationChannel } from '../../db/store.js';
import type { Logger } from '../logger.js';
import { LocalAnswerBus, type AnswerBus, type AnswerEvent, type AnswerListener } from './bus.js';

const REMOTE_KINDS = new Set<AnswerEvent['kind']>(['grew', 'ended', 'cancel']);

/**
 * The bus across the server processes of one Postgres database, on LISTEN/NOTIFY (no other
 * infrastructure). This process's listeners hear its events at once; other processes hear
 * `grew`, `ended` and `cancel` through a NOTIFY whose payload names the answer and nothing of
 * its content (NOTIFY takes under 8000 bytes: the content is read from the database). A NOTIFY
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
    const payload = JSON.stringify([this.origin, event.kind, messageId, event.kind === 'grew' ? event.offset : 0]);
    this.channel.notify(payload).then(
      () => (this.failures = 0),
      (err: unknown) => {
        // Listeners elsewhere poll the database as well: a lost notification only delays them.
        if (this.failures++ % 100 === 0) this.log.warn({ err, failures: this.failures }, 'could not notify other processes of an answer event');
      },
    );
  }

  subscribe(messageId: string, listener: AnswerListener): () => void {
    return this.local.subscribe(messageId, listener);
  }

  async close(): Promise<void> {
    const unlisten = this.unlisten;
    this.unlisten = null;
    await unlisten?.().catch(() => {});
    await this.local.close();
  }

  private heard(payload: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(payload);
    } catch {
      return;
    }
    if (!Array.isArray(parsed) || parsed.length !== 4) return;
    const [origin, kind, messageId, offset] = parsed as unknown[];
    if (origin === this.origin || typeof messageId !== 'string') return;
    if (kind === 'grew' && typeof offset === 'number') this.local.publish(messageId, { kind, offset });
    else if (kind === 'ended' || kind === 'cancel') this.local.publish(messageId, { kind });
  }
}
