import type { Context } from 'hono';
import type { AppEnv } from '../types.js';

/** A request can keep itself out of the history with `x-persist: off`. */
export const PERSIST_HEADER = 'x-persist';
const OFF = /^(off|false|0|no)$/i;

/** Why something of a request will not be stored. */
export type NotStoredReason = 'persistence_disabled' | 'request_opted_out' | 'consent_denied' | 'consent_required';

/** Why nothing of this request may be added to the history; null when it may be. */
export async function whyNotStored(c: Context<AppEnv>): Promise<NotStoredReason | null> {
  const { store, config, consents } = c.get('services');
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

/** Whether this request may add to the history (persistence on, no opt-out, consent as required). */
export async function mayStore(c: Context<AppEnv>): Promise<boolean> {
  return (await whyNotStored(c)) === null;
}
