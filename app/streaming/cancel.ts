import type { Message, Store } from '../../db/store.js';
import type { AnswerBus } from './bus.js';

export interface CancelOptions {
  store: Store;
  bus: AnswerBus;
  /** How long to wait for the writer to record the end (its heartbeat notices within a third of the lease). */
  waitMs: number;
  /** How often the message is looked at meanwhile, should the `ended` event be lost. */
  pollMs?: number;
}

const ended = (m: Message) => m.status === 'final' || m.status === 'error';

/**
 * Stops an answer wherever it is being generated. The request is recorded in the database
 * first (so the writer's lease heartbeat finds it even if the bus loses it), then announced on
 * the bus, which reaches the writer at once in this process or through NOTIFY in another. The
 * writer aborts the upstream and records `error` / `cancelled` after the last delta it received;
 * an answer no live process holds is closed by the request itself. An answer that already ended
 * is left as it is.
 *
 * Returns the message once it has ended (`settled`), or as it stands after `waitMs`; null when
 * it is gone (its conversation deleted meanwhile).
 */
export async function cancelAnswer(options: CancelOptions, messageId: string): Promise<{ message: Message; settled: boolean } | null> {
  const { store, bus, waitMs, pollMs = 500 } = options;
  let heard = false;
  let wake: (() => void) | null = null;
  // Listening before asking: the end can come right after.
  const unsubscribe = bus.subscribe(messageId, (event) => {
    if (event.kind !== 'ended') return;
    heard = true;
    wake?.();
  });
  try {
    const asked = await store.requestCancel(messageId, new Date());
    // Still open: its writer stops it. Closed by the request: its watchers are told.
    if (asked) bus.publish(messageId, ended(asked) ? { kind: 'ended' } : { kind: 'cancel' });
    const deadline = Date.now() + waitMs;
    for (;;) {
      heard = false;
      const message = await store.getMessage(messageId);
      if (!message) return null;
      if (ended(message)) return { message, settled: true };
      const left = deadline - Date.now();
      if (left <= 0) return { message, settled: false };
      if (heard) continue;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.min(pollMs, left));
        function done() {
          clearTimeout(timer);
          wake = null;
          resolve();
        }
        wake = done;
      });
    }
  } finally {
    unsubscribe();
  }
}
