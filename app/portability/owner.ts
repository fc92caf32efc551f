import type { Principal, Store } from '../../db/store.js';
import { hashSessionId } from '../session-ids.js';

/** Whose conversations a shell command reads or writes, as `--owner` names them. */
export interface OwnerSpec {
  principal: Principal;
  /** How the owner was named, for messages. */
  label: string;
}

export const OWNER_FORMS = 'user:USER_ID, session:SESSION_ID (the id as the client holds it, x-session-id) or session-hash:SHA256_HEX (as the database keeps it)';

/**
 * `user:ID` (a signed-in user, as its API key or token makes it), `session:ID` (an anonymous
 * session's id as the client holds it; the database keeps its SHA-256, computed here) or
 * `session-hash:HEX` (that SHA-256, as it appears in the database). Throws a one-line reason.
 */
export function parseOwner(spec: string): OwnerSpec {
  const colon = spec.indexOf(':');
  const kind = colon === -1 ? '' : spec.slice(0, colon);
  const value = colon === -1 ? '' : spec.slice(colon + 1);
  if (!value) throw new Error(`--owner must be ${OWNER_FORMS}; got ${JSON.stringify(spec)}`);
  if (kind === 'user') return { principal: { sessionId: hashSessionId(`user:${value}`), userId: value }, label: `user ${value}` };
  if (kind === 'session') return { principal: { sessionId: hashSessionId(value), userId: null }, label: 'the session' };
  if (kind === 'session-hash') {
    if (!/^[0-9a-f]{64}$/.test(value)) throw new Error('--owner session-hash: takes the 64 lowercase hex digits of a stored session id');
    return { principal: { sessionId: value, userId: null }, label: `session ${value.slice(0, 12)}…` };
  }
  throw new Error(`--owner must be ${OWNER_FORMS}; got ${JSON.stringify(spec)}`);
}

/** A user owner must exist: conversations are never written for a user nobody can sign in as. */
export async function checkOwner(store: Store, owner: OwnerSpec): Promise<void> {
  const { userId } = owner.principal;
  if (userId && !(await store.getUser(userId))) throw new Error(`no user has id '${userId}' (npm run admin -- list-users lists them)`);
}
