import type { Store } from '../../db/store.js';
import { KEY_LIFETIME_MS } from '../idempotency.js';
import type { Logger } from '../logger.js';

export interface RetentionOptions {
  /** Conversations idle longer than this are deleted unless pinned; 0 keeps them forever. */
  days: number;
  /** Soft-deleted conversations are purged this long after their deletion. */
  deletedDays: number;
  /** Rows per DELETE, so no statement holds its locks for long on a large table. */
  batchSize: number;
}

const DAY_MS = 86_400_000;

/**
 * Deletes everything past retention, batch by batch: conversations, and idle sessions with
 * nothing left. A row the database cannot read is skipped and logged, never a reason to stop.
 * Returns how many conversations went.
 */
export async function sweepRetention(store: Store, options: RetentionOptions, log: Logger, now = new Date()): Promise<number> {
  const idleBefore = options.days > 0 ? new Date(now.getTime() - options.days * DAY_MS) : null;
  const deletedBefore = new Date(now.getTime() - options.deletedDays * DAY_MS);
  // Idempotency keys answer retries for 24 hours, then go.
  const keysBefore = new Date(now.getTime() - KEY_LIFETIME_MS);
  let conversations = 0;
  let sessions = 0;
  let keys = 0;
  const unreadable = new Set<string>();
  for (;;) {
    const batch = await store.purgeExpired({ idleBefore, deletedBefore, batchSize: options.batchSize, keysBefore });
    conversations += batch.conversations;
    sessions += batch.sessions;
    keys += batch.idempotencyKeys ?? 0;
    for (const id of batch.unreadable) unreadable.add(id);
    if (batch.conversations < options.batchSize && batch.sessions < options.batchSize && (batch.idempotencyKeys ?? 0) < options.batchSize) break;
    // Let other work reach the database between batches.
    await new Promise((r) => setTimeout(r, 10));
  }
  if (unreadable.size) {
    log.warn(
      { conversation_ids: [...unreadable].slice(0, 20), count: unreadable.size },
      'retention kept idle conversations whose metadata the database cannot read; delete them by id to reclaim the space',
    );
  }
  if (conversations || sessions || keys) log.info({ deleted_conversations: conversations, deleted_sessions: sessions, deleted_idempotency_keys: keys }, 'retention sweep');
  return conversations;
}

/** Runs the sweep every `intervalMs` (hourly by default) until stopped. */
export function scheduleRetention(store: Store, options: RetentionOptions, log: Logger, intervalMs = 3_600_000): () => void {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      await sweepRetention(store, options, log);
    } catch (err) {
      log.warn({ err }, 'retention sweep failed; will retry next hour');
    } finally {
      running = false;
    }
  };
  const timer = setInterval(() => void tick(), intervalMs);
  timer.unref();
  void tick();
  return () => clearInterval(timer);
}
