import { createHash } from 'node:crypto';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { IdempotencyRecord, Json, Principal, Store } from '../db/store.js';
import { canonicalJson } from '../db/tree.js';
import { ApiError } from './errors.js';
import type { AppEnv } from './types.js';

/**
 * `Idempotency-Key`: a client that retries a write (a dropped connection, a timeout) sends the
 * same key, and gets the first request's outcome instead of a second write. Keys are kept per
 * caller for 24 hours (the retention sweep purges older ones). A key sent again with another
 * request is a 409; a key whose first request is still running makes the retry wait for it.
 * Only a success is kept: a request that failed wrote nothing, so its key is given up and a
 * retry runs again.
 */
export const IDEMPOTENCY_HEADER = 'idempotency-key';
export const KEY_LIFETIME_MS = 24 * 3_600_000;
/** A claim that has run this long without an outcome belongs to a process that died (plain writes). */
const WRITE_STALE_MS = 60_000;
/** How long a retry waits for the first request of a plain write before answering 409. */
const WRITE_WAIT_MS = 10_000;

const KEY = /^[\x20-\x7e]{1,255}$/;

/** The request's key, checked (1–255 printable ASCII characters); null when it sent none. */
export function idempotencyKeyOf(c: Context<AppEnv>): string | null {
  const key = c.req.header(IDEMPOTENCY_HEADER);
  if (key === undefined) return null;
  if (!KEY.test(key)) {
    throw new ApiError(
      400,
      'invalid_request_error',
      "Invalid header 'Idempotency-Key': must be 1 to 255 printable ASCII characters (a UUID is a good key).",
      'invalid_value',
      'Idempotency-Key',
    );
  }
  return key;
}

/** What tells two uses of a key apart: method, path, the body as JSON (key order aside), and anything else that names the target. */
export function requestHash(method: string, path: string, body: unknown, ...extra: (string | null | undefined)[]): string {
  return createHash('sha256')
    .update(canonicalJson([method, path, body ?? null, ...extra.map((e) => e ?? null)]))
    .digest('hex');
}

export type Claimed = { kind: 'run'; complete(status: number, response: Json): Promise<void>; release(): Promise<void> } | { kind: 'replay'; record: IdempotencyRecord };

export interface ClaimOptions {
  /** A claim without an outcome older than this is taken over (its process is gone). */
  staleMs: number;
  /** How long to wait for a first request still running before answering 409. */
  waitMs: number;
  /** The client went away: stop waiting. */
  signal?: AbortSignal;
}

/**
 * Takes `key` for this request, or says what to replay. While the first request runs, waits
 * (polling with backoff) until it has an outcome, gives the key up, or runs past `waitMs`.
 */
export async function claimKey(store: Store, owner: Principal, key: string, hash: string, options: ClaimOptions): Promise<Claimed> {
  const until = Date.now() + options.waitMs;
  for (let attempt = 0; ; attempt++) {
    const now = Date.now();
    const claim = await store.claimIdempotencyKey(owner, key, hash, {
      expiredBefore: new Date(now - KEY_LIFETIME_MS),
      staleBefore: new Date(now - options.staleMs),
    });
    if (claim.claimed) {
      let settled = false;
      return {
        kind: 'run',
        complete: async (status, response) => {
          if (settled) return;
          settled = true;
          await store.completeIdempotencyKey(owner, key, { status, response });
        },
        release: async () => {
          if (settled) return;
          settled = true;
          await store.releaseIdempotencyKey(owner, key);
        },
      };
    }
    const { record } = claim;
    if (record.requestHash !== hash) {
      throw new ApiError(
        409,
        'invalid_request_error',
        'This Idempotency-Key was already used for another request (another body or path); use a new key for a new request.',
        'idempotency_key_reused',
        'Idempotency-Key',
      );
    }
    if (record.status !== null) return { kind: 'replay', record };
    if (Date.now() >= until || options.signal?.aborted) {
      throw new ApiError(
        409,
        'invalid_request_error',
        'The first request with this Idempotency-Key is still running; retry once it has finished.',
        'idempotency_key_in_use',
        'Idempotency-Key',
        { 'retry-after': '1' },
      );
    }
    await sleep(Math.min(25 * 2 ** attempt, 500), options.signal);
  }
}

export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });

/**
 * Idempotency-Key for a JSON write (create a conversation, post a message, fork, import): put
 * it after the body's validator, so a request that is refused as invalid never takes a key. A
 * 2xx answer is kept whole and given again, with `idempotent-replayed: true`, to every retry.
 */
export const idempotent = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const key = idempotencyKeyOf(c);
    const store = c.get('services').store;
    if (key === null || !store) return next();
    const body: unknown = await c.req.json().catch(() => null);
    const claim = await claimKey(store, c.get('principal'), key, requestHash(c.req.method, c.req.path, body), {
      staleMs: WRITE_STALE_MS,
      waitMs: WRITE_WAIT_MS,
      signal: c.req.raw.signal,
    });
    if (claim.kind === 'replay') {
      c.header('idempotent-replayed', 'true');
      return c.json(claim.record.response, claim.record.status as 201);
    }
    try {
      await next();
    } finally {
      // Hono renders a handler's error into c.res before it returns here. The write is done
      // either way: a key that cannot be recorded is logged, not turned into a failed answer.
      const ok = !c.error && c.res.status >= 200 && c.res.status < 300;
      await (ok ? claim.complete(c.res.status, (await c.res.clone().json()) as Json) : claim.release()).catch((err: unknown) =>
        c.get('log').error({ err }, ok ? 'could not record the outcome of an Idempotency-Key' : 'could not give up an Idempotency-Key'),
      );
    }
  });
