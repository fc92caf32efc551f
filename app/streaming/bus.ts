/**
 * What happens to an answer, as its watchers and its writer hear of it. Events say that
 * something changed, never what: a listener reads the answer itself (from the process's live
 * answer or from the database), so an event lost or heard twice costs nothing but a look.
 */
export type AnswerEvent =
  /** The live answer changed (this process only: read the LiveAnswer). */
  | { kind: 'delta' }
  /** Its content up to `offset` UTF-16 code units is in the database. */
  | { kind: 'grew'; offset: number }
  /** It ended, and how is in the database. */
  | { kind: 'ended' }
  /** Someone asked to stop it. */
  | { kind: 'cancel' }
  /** Events may have been missed (the bus reconnected): look again. */
  | { kind: 'resync' };

export type AnswerListener = (event: AnswerEvent) => void;

/**
 * Announces answer events to whoever listens for that answer: in this process, and — for the
 * Postgres bus — in every other process of the database (all but `delta`, which only this
 * process's watchers can use).
 */
export interface AnswerBus {
  publish(messageId: string, event: AnswerEvent): void;
  /** Returns the unsubscribe function. */
  subscribe(messageId: string, listener: AnswerListener): () => void;
  close(): Promise<void>;
}

/**
 * The in-process bus: one process (SQLite), or this process's half of the Postgres bus.
 * Publishing to an answer nobody watches is one map lookup, so the producer pays nothing for it;
 * a listener only notes the event (it never does work in the publisher's stack).
 */
export class LocalAnswerBus implements AnswerBus {
  private readonly listeners = new Map<string, Set<AnswerListener>>();

  publish(messageId: string, event: AnswerEvent): void {
    const set = this.listeners.get(messageId);
    if (!set) return;
    for (const listener of set) listener(event);
  }

  /** Every listener of every answer (after a reconnect, when events may have been missed). */
  publishAll(event: AnswerEvent): void {
    for (const set of this.listeners.values()) for (const listener of set) listener(event);
  }

  subscribe(messageId: string, listener: AnswerListener): () => void {
    let set = this.listeners.get(messageId);
    if (!set) this.listeners.set(messageId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (!set.size && this.listeners.get(messageId) === set) this.listeners.delete(messageId);
    };
  }

  /** Answers listened to now (for tests and metrics). */
  get size(): number {
    return this.listeners.size;
  }

  async close(): Promise<void> {
    this.listeners.clear();
  }
}
