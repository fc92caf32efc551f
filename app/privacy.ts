import type { Context } from 'hono';
import type { Consent, MessagesToAppend, NewMessage, SessionInfo, Store } from '../db/store.js';
import type { AppEnv } from './types.js';

/** A request can keep itself out of the history with `x-persist: off`. */
export const PERSIST_HEADER = 'x-persist';
const OFF = /^(off|false|0|no)$/i;

/** Why something of a request will not be stored. */
export type NotStoredReason = 'persistence_disabled' | 'request_opted_out' | 'consent_denied' | 'consent_required';

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

/** Whether this request may add to the history, and if not, why. */
export async function notStoredReason(c: Context<AppEnv>): Promise<NotStoredReason | null> {
  const { store, config, consents } = c.get('deps');
  if (!store || !consents) return 'persistence_disabled';
  const header = c.req.header(PERSIST_HEADER);
  if (header !== undefined && OFF.test(header.trim())) return 'request_opted_out';
  const consent = await consents.get(c.get('principal').sessionId);
  if (consent === 'denied') return 'consent_denied';
  if (config.privacy.consentRequired && consent !== 'granted') return 'consent_required';
  return null;
}

export const notStoredMessages: Record<Exclude<NotStoredReason, 'persistence_disabled'>, string> = {
  request_opted_out: `This request opted out of history (${PERSIST_HEADER}: off), so nothing can be stored for it.`,
  consent_denied: 'This session opted out of history. Opt in again with POST /v1/privacy/consent {"consent":"granted"}.',
  consent_required: 'This server stores history only after consent. Opt in with POST /v1/privacy/consent {"consent":"granted"}.',
};

/**
 * REDACT_SYSTEM_PROMPTS: every message write goes through the store's two message-writing
 * methods, so filtering there keeps system prompts out of the database on every path (proxy,
 * messages endpoint, imports).
 */
export function redactSystemPrompts(store: Store): Store {
  const withoutSystem = (messages: MessagesToAppend): MessagesToAppend =>
    typeof messages === 'function'
      ? (conversation) => messages(conversation).filter((m) => m.role !== 'system')
      : messages.filter((m) => m.role !== 'system');
  return Object.assign(Object.create(store) as Store, {
    appendMessages: ((owner, id, messages, options) => store.appendMessages(owner, id, withoutSystem(messages), options)) satisfies Store['appendMessages'],
    createConversation: ((owner, input, options) =>
      store.createConversation(owner, input, {
        ...options,
        messages: options.messages && (withoutSystem(options.messages) as NewMessage[]),
      })) satisfies Store['createConversation'],
  });
}
