import type { Store } from '../db/store.js';
import type { Principal, User } from '../db/store.js';
import type { Credentials } from './auth/credentials.js';
import type { Config } from './env.js';
import type { Logger } from './logger.js';
import type { Slot } from './streaming/slots.js';
import type { RateLimitStore } from './rate-limit/stores.js';
import type { SessionIds } from './session-ids.js';
import type { Metrics } from './metrics.js';
import type { Consents } from './privacy/consents.js';
import type { InFlight } from './streaming/in-flight.js';
import type { HistoryWriter } from './streaming/history-writer.js';
import type { UpstreamModels } from './upstream/models.js';

export interface AppDeps {
  config: Config;
  /** Null when PERSIST_TRANSCRIPTS is off: the server is then a pure proxy. */
  store: Store | null;
  logger: Logger;
  /** Rate-limit counters (Redis when REDIS_URL is set); absent, each app gets its own in-memory store. */
  rateLimitStore?: RateLimitStore;
  /** Streams being relayed by this process, with their message leases. */
  inFlight: InFlight;
  /** Prometheus metrics; absent, the app makes its own registry. */
  metrics?: Metrics;
}

/** What handlers see: the dependencies with the app's own services filled in. */
export interface Services extends AppDeps {
  metrics: Metrics;
  /** Per-session consent (null when persistence is off). */
  consents: Consents | null;
  /** Mints and checks anonymous session ids. */
  sessionIds: SessionIds;
  /** Checks API keys and JWTs. */
  credentials: Credentials;
  /** The upstream's model list, cached. */
  models: UpstreamModels;
  /** Writes of the answers being recorded, committed together (null when persistence is off). */
  history: HistoryWriter | null;
}

/**
 * Who the caller is: a signed-in user (with the anonymous session it sent, if any), an
 * anonymous session (its id as the client holds it), the operator's admin key, or nobody at all
 * on a public route.
 */
export type Identity =
  | { type: 'user'; user: User; via: 'api_key' | 'jwt'; sessionId: string | null }
  | { type: 'session'; user: null; sessionId: string }
  | { type: 'admin'; user: null; sessionId: null }
  | { type: 'public'; user: null; sessionId: null };

/** Read with `c.get('…')`: Hono's `c.var` copies every variable into a new object per access. */
export interface AppEnv {
  Variables: {
    services: Services;
    requestId: string;
    identity: Identity;
    /** Whose rows the caller reads and writes (the stores' view of the identity). */
    principal: Principal;
    log: Logger;
    /** Set on chat completions by concurrencyLimit(). */
    slot: Slot;
  };
}
