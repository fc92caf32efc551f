import { createMiddleware } from 'hono/factory';
import type { Store } from '../../db/store.js';
import { ApiError } from '../errors.js';
import { notStoredMessages, whyNotStored } from '../privacy/policy.js';
import type { AppEnv } from '../types.js';

/** History endpoints answer 501 when the server runs as a pure proxy. */
export const requirePersistence = () =>
  createMiddleware<AppEnv & { Variables: { store: Store } }>(async (c, next) => {
    const store = c.get('services').store;
    if (!store) {
      throw new ApiError(
        501,
        'not_implemented_error',
        'Conversation history is disabled on this server. Set PERSIST_TRANSCRIPTS=true (and DB_URL) to enable it.',
        'persistence_disabled',
      );
    }
    c.set('store', store);
    await next();
  });

/** Writes that would store something for the session need its consent (and no opt-out header). */
export const requireStorable = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const reason = await whyNotStored(c);
    if (reason && reason !== 'persistence_disabled') throw new ApiError(403, 'permission_error', notStoredMessages[reason], reason);
    await next();
  });
