import { createMiddleware } from 'hono/factory';
import { callerKeys, scopeLabel } from '../rate-limit/caller.js';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

/**
 * Caps the chat completions running at once, streamed or not: MAX_STREAMS_PER_CALLER per session
 * or signed-in user, MAX_STREAMS_PER_ADDRESS per client address for anonymous callers (dropping
 * the session frees nothing), MAX_STREAMS per process. Over a cap → 429 before anything is
 * recorded or sent. The slot is given back exactly once: when the handler returns or fails, or,
 * for a stream it returned, when that stream ends.
 */
export const concurrencyLimit = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const { config, inFlight } = c.get('services');
    const { perCaller, perAddress, total } = config.concurrency;
    const claims = callerKeys(c).map((k) => ({ ...k, max: k.scope === 'address' ? perAddress : perCaller }));
    const taken = inFlight.slots.take(claims, total);
    if (!taken.ok) {
      const claim = taken.full;
      if (!claim) {
        throw new ApiError(
          429,
          'rate_limit_error',
          `This server is running as many chat completions as it allows at once (${total}, MAX_STREAMS). Retry shortly.`,
          'concurrency_limit_exceeded',
          null,
          { 'retry-after': '1' },
        );
      }
      const setting = claim.scope === 'address' ? 'MAX_STREAMS_PER_ADDRESS' : 'MAX_STREAMS_PER_CALLER';
      throw new ApiError(
        429,
        'rate_limit_error',
        `Too many chat completions at once: at most ${claim.max} per ${scopeLabel[claim.scope]} (${setting}). Wait for one to finish.`,
        'concurrency_limit_exceeded',
      );
    }
    let kept = false;
    c.set('slot', {
      holdUntilEnd(observer) {
        kept = true;
        return {
          push: (bytes) => observer.push(bytes),
          end(how) {
            taken.release();
            return observer.end(how);
          },
        };
      },
    });
    try {
      await next();
    } finally {
      // A handler that failed after handing the slot to a stream never returned that stream.
      if (!kept || c.error) taken.release();
    }
  });
