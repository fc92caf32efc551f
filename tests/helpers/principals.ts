import { expect } from 'vitest';
import type { Principal } from '../../db/store.js';

/** Principals and assertions shared by the store contract suites. */
export const anon = (): Principal => ({ sessionId: `s-${crypto.randomUUID()}`, userId: null });
export const signedIn = (userId: string, sessionId = `s-${crypto.randomUUID()}`): Principal => ({ sessionId, userId });
export const roomy = { maxPerSession: 1_000 };

/** What `promise` rejects with; the test fails if it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected a rejection'),
    (err: unknown) => err,
  );
}
