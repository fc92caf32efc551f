import type { StreamObserver } from './relay.js';

/** The slot a chat completion holds; read with `c.get('slot')`. */
export interface Slot {
  /**
   * Keeps the slot past the handler, for the stream the handler returns: the observer given back
   * releases it when the stream ends (relay reports the end exactly once, however it comes).
   */
  holdUntilEnd(observer: StreamObserver): StreamObserver;
}

/** A count a slot is taken against (a session, a user, an address) and its cap; 0 = no cap. */
export interface SlotClaim {
  key: string;
  max: number;
}

export type TakenSlot<C extends SlotClaim> =
  | { ok: true; /** Gives the slot back; calls after the first do nothing. */ release(): void }
  | { ok: false; /** The claim that is at its cap, or null when the process is. */ full: C | null };

/**
 * Upstream calls this process is running, counted per key and in total, to cap how many run at
 * once. Keys are dropped when their count returns to zero, so the map only ever holds callers
 * with a call in progress.
 */
export class StreamSlots {
  private total = 0;
  private readonly byKey = new Map<string, number>();

  /** Slots held now. */
  get active(): number {
    return this.total;
  }

  /** Slots `key` holds now. */
  heldBy(key: string): number {
    return this.byKey.get(key) ?? 0;
  }

  /** Takes one slot per claim and one of the process's (`max` of them, 0 = no cap): all or none. */
  take<C extends SlotClaim>(claims: readonly C[], max: number): TakenSlot<C> {
    const full = claims.find((claim) => claim.max > 0 && this.heldBy(claim.key) >= claim.max);
    if (full) return { ok: false, full };
    if (max > 0 && this.total >= max) return { ok: false, full: null };
    this.total += 1;
    for (const { key } of claims) this.byKey.set(key, this.heldBy(key) + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.total -= 1;
        for (const { key } of claims) {
          const left = this.heldBy(key) - 1;
          if (left > 0) this.byKey.set(key, left);
          else this.byKey.delete(key);
        }
      },
    };
  }
}
