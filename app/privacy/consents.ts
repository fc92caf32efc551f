import type { Consent, SessionInfo, Store } from '../../db/store.js';

/**
 * Consent per session, read through a small cache: the decision is needed on every chat
 * request, and a session's answer rarely changes. A change made through this process is seen
 * at once; one made through another process within `ttlMs`.
 */
export class Consents {
  private readonly cache = new Map<string, { consent: Consent | null; at: number }>();

  constructor(
    private readonly store: Store,
    private readonly ttlMs = 10_000,
    private readonly maxEntries = 10_000,
  ) {}

  async get(sessionId: string): Promise<Consent | null> {
    const hit = this.cache.get(sessionId);
    if (hit && Date.now() - hit.at < this.ttlMs) return hit.consent;
    const consent = await this.store.getConsent(sessionId);
    this.remember(sessionId, consent);
    return consent;
  }

  async set(sessionId: string, consent: Consent, info: SessionInfo): Promise<void> {
    await this.store.setConsent(sessionId, consent, info);
    this.remember(sessionId, consent);
  }

  private remember(sessionId: string, consent: Consent | null): void {
    this.cache.delete(sessionId);
    // Map keeps insertion order: the first key is the least recently stored.
    if (this.cache.size >= this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(sessionId, { consent, at: Date.now() });
  }
}
