import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { getCookie } from 'hono/cookie';
import { clientAddress } from '../client-address.js';
import { SESSION_COOKIE, SESSION_HEADER } from '../middleware/session.js';
import type { AppEnv } from '../types.js';

export type CallerScope = 'user' | 'session' | 'address';

/** One thing a request counts against, under a key safe to store (hashed). */
export interface CallerKey {
  scope: CallerScope;
  key: string;
}

/**
 * Whom a request counts against, for rate limits and concurrency caps. A signed-in user is one
 * caller wherever it connects from. An anonymous caller counts both as its session and as its
 * client address: a session costs nothing to replace, an address does. A request that brought
 * no session (one was just minted for it) counts against its address only.
 * Keys are hashed: a session id is a bearer credential and must not sit readable in Redis.
 */
export function callerKeys(c: Context<AppEnv>): CallerKey[] {
  const principal = c.get('principal');
  if (principal.userId) return [{ scope: 'user', key: hash(`user:${principal.userId}`) }];
  const keys: CallerKey[] = [];
  if (c.req.header(SESSION_HEADER) !== undefined || getCookie(c, SESSION_COOKIE) !== undefined) {
    keys.push({ scope: 'session', key: hash(`session:${principal.sessionId}`) });
  }
  keys.push({ scope: 'address', key: hash(`ip:${addressBucket(clientAddress(c) ?? 'unknown')}`) });
  return keys;
}

/** How a scope reads in an error message: "per session". */
export const scopeLabel: Record<CallerScope, string> = {
  user: 'user',
  session: 'session',
  address: 'client address',
};

const hash = (raw: string) => createHash('sha256').update(raw).digest('base64url');

/**
 * The unit counted as one address. An IPv6 client usually holds a whole /64 and can pick any
 * address in it, so the /64 is what counts; an IPv4 address counts alone.
 */
export function addressBucket(address: string): string {
  if (!address.includes(':')) return address;
  const [head, tail, ...more] = address.split('::');
  if (more.length) return address;
  const groups = (part: string | undefined) => {
    const list = part ? part.split(':') : [];
    // An embedded IPv4 tail (a.b.c.d) holds the last two groups.
    if (list.at(-1)?.includes('.')) list.splice(-1, 1, '0', '0');
    return list;
  };
  const left = groups(head);
  const right = groups(tail);
  const full = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  if (full.length !== 8) return address;
  return `${full.slice(0, 4).map((g) => parseInt(g, 16).toString(16)).join(':')}::/64`;
}
