import { z } from 'zod';
import { parseDbUrl, type DbTarget } from '../db/url.js';
import { MAX_MODEL_NAME, allowsModel } from './chat/model-allowlist.js';

// Environment variables arrive as strings; these helpers turn them into typed values and say,
// in the error, exactly what is accepted.
const bool = (fallback: boolean) =>
  z
    .enum(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off'], {
      error: 'must be one of true, false, 1, 0, yes, no, on, off',
    })
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true' || v === '1' || v === 'yes' || v === 'on');

const int = (fallback: number, min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .default(String(fallback))
    .transform((v, ctx) => {
      const n = Number(v);
      if (!/^\s*-?\d+\s*$/.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return n;
    });

// For a setting whose default depends on another one: undefined when unset.
const optionalInt = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined) return undefined;
      const parsed = int(0, min, max).safeParse(v);
      if (parsed.success) return parsed.data;
      ctx.addIssue({ code: 'custom', message: parsed.error.issues[0]!.message });
      return z.NEVER;
    });

const modelAllowlist = z.string().transform((v, ctx) => {
  const patterns = v.split(',').map((p) => p.trim()).filter(Boolean);
  if (!patterns.length || patterns.some((p) => /\s/.test(p) || p.length > MAX_MODEL_NAME)) {
    ctx.addIssue({ code: 'custom', message: 'must be model names (no spaces) separated by commas, * matching any characters, e.g. gpt-4.1*,gpt-4o-mini' });
    return z.NEVER;
  }
  return patterns;
});

const httpUrl = z
  .string()
  .trim()
  .refine((v) => /^https?:\/\/[^\s]+$/.test(v) && URL.canParse(v), {
    message: 'must be an http:// or https:// URL, e.g. https://api.openai.com/v1',
  })
  // fetch refuses URLs with credentials; the key belongs in OPENAI_API_KEY.
  .refine((v) => !URL.canParse(v) || (!new URL(v).username && !new URL(v).password), {
    message: 'must not contain user:password@ (fetch refuses such URLs); put the key in OPENAI_API_KEY',
  })
  .transform((v) => v.replace(/\/+$/, ''));

/** The asymmetric algorithms a JWKS may sign with (AUTH_JWT_ALGORITHMS picks among them). */
export const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type JwksAlgorithm = (typeof JWKS_ALGORITHMS)[number];
const isJwksAlgorithm = (v: string): v is JwksAlgorithm => (JWKS_ALGORITHMS as readonly string[]).includes(v);

const jwtAlgorithms = z.string().transform((v, ctx) => {
  const list = [...new Set(v.split(',').map((a) => a.trim()).filter(Boolean))];
  const shared = list.filter((a) => /^HS\d+$/i.test(a));
  if (shared.length) {
    ctx.addIssue({
      code: 'custom',
      message: `${shared.join(',')} is signed with a shared secret, which a public key set cannot verify (and accepting it invites HS/RS key confusion); for HS256 set AUTH_JWT_SECRET instead of AUTH_JWKS_URL`,
    });
    return z.NEVER;
  }
  if (!list.length || !list.every(isJwksAlgorithm)) {
    ctx.addIssue({ code: 'custom', message: `must be algorithms from ${JWKS_ALGORITHMS.join(', ')}, comma-separated (case matters)` });
    return z.NEVER;
  }
  return list;
});

const jwksUrl = z
  .string()
  .trim()
  .refine((v) => /^https?:\/\/[^\s]+$/.test(v) && URL.canParse(v), {
    message: 'must be an http:// or https:// URL, e.g. https://idp.example.com/.well-known/jwks.json',
  })
  .refine((v) => !URL.canParse(v) || (!new URL(v).username && !new URL(v).password), {
    message: 'must not contain user:password@ (fetch refuses such URLs)',
  });

const redisUrl = z
  .string()
  .trim()
  .refine((v) => /^rediss?:\/\/[^\s]+$/.test(v) && URL.canParse(v), {
    message: 'must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379',
  });

const envSchema = z.object({
  OPENAI_BASE_URL: httpUrl.optional(),
  OPENAI_API_KEY: z.string().optional(),
  DEFAULT_MODEL: z.string().trim().min(1, 'must not be empty').default('gpt-4.1-mini'),
  PORT: int(3001, 0, 65535),
  HOST: z.string().trim().min(1).default('0.0.0.0'),
  ALLOWED_ORIGIN: z
    .string()
    .default('http://localhost:3000')
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean))
    // A browser sends an origin as scheme://host[:port], lowercased, never with a path: an entry
    // written otherwise (a trailing slash) would silently match nothing, so it is normalised or refused.
    .transform((list, ctx) =>
      list.map((o) => {
        const origin = o === '*' ? o : normalizeOrigin(o);
        if (origin === null) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(o)} is not an origin; use * or scheme://host[:port] (no path), comma-separated` });
        return origin ?? o;
      }),
    ),
  RATE_LIMIT_WINDOW_SEC: int(60, 1, 86_400),
  RATE_LIMIT_MAX: int(50, 0),
  RATE_LIMIT_REDIS_PREFIX: z.string().regex(/^\S{1,100}$/, 'must be 1 to 100 characters without spaces').default('ratelimit:'),
  REDIS_URL: redisUrl.optional(),
  RATE_LIMIT_MAX_PER_ADDRESS: optionalInt(0),
  TRUST_PROXY: bool(false),
  MODEL_ALLOWLIST: modelAllowlist.optional(),
  MAX_OUTPUT_TOKENS: int(8192, 0),
  MAX_OUTPUT_TOKENS_FIELD: z
    .enum(['max_tokens', 'max_completion_tokens'], { error: 'must be max_tokens or max_completion_tokens' })
    .default('max_tokens'),
  MAX_CHOICES: int(1, 1, 128),
  MAX_STREAMS_PER_CALLER: int(8, 0),
  MAX_STREAMS_PER_ADDRESS: optionalInt(0),
  MAX_STREAMS: int(1000, 0),
  PERSIST_TRANSCRIPTS: bool(false),
  DB_URL: z
    .string()
    .default('file:./data/dev.db')
    .transform((v, ctx) => {
      try {
        return parseDbUrl(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    }),
  RETENTION_DAYS: int(30, 0),
  DELETED_RETENTION_DAYS: int(7, 0),
  RETENTION_BATCH_SIZE: int(500, 1, 100_000),
  CONSENT_REQUIRED: bool(false),
  PRIVACY_NOTICE: z
    .string()
    .trim()
    .min(1)
    .max(2000, 'must be at most 2000 characters')
    .default(
      'Conversations on this service are stored so you can come back to them. They are deleted automatically after the retention period, and you can delete them or opt out at any time.',
    ),
  MAX_CONVERSATIONS_PER_SESSION: int(100, 1),
  MAX_MESSAGES_PER_CONVERSATION: int(1000, 1),
  MAX_BYTES_PER_SESSION: int(10 * 1024 * 1024, 1),
  JSON_MAX_DEPTH: int(100, 2, 1000),
  METADATA_MAX_DEPTH: int(16, 1, 100),
  METADATA_MAX_BYTES: int(16 * 1024, 2, 1024 * 1024),
  SESSION_SECRET: z.string().min(32, 'must be at least 32 characters (e.g. openssl rand -base64 48)').optional(),
  ALLOW_CLIENT_SESSION_IDS: bool(false),
  HISTORY_BATCH_FLUSH_MS: int(250, 1, 60_000),
  HISTORY_BATCH_FLUSH_CHARS: int(512, 1),
  HISTORY_RETRY_MS: int(30_000, 0, 3_600_000),
  DB_POOL_MAX: int(10, 1, 1_000),
  REDACT_SYSTEM_PROMPTS: bool(false),
  UPSTREAM_TIMEOUT_MS: int(120_000, 1),
  BODY_LIMIT_BYTES: int(1_048_576, 1),
  IMPORT_MAX_BYTES: int(50 * 1024 * 1024, 1),
  IMPORT_MAX_LINE_BYTES: int(8 * 1024 * 1024, 1024),
  TOKEN_ESTIMATE_MAX_CHARS: int(65_536, 1_024, 16_777_216),
  RESPONSES_MAX_INPUT_ITEMS: int(200, 1, 10_000),
  STREAM_LEASE_MS: int(15_000, 100, 600_000),
  ORPHAN_SWEEP_INTERVAL_MS: int(5_000, 50, 600_000),
  SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),
  STREAM_ON_DISCONNECT: z.enum(['abort', 'continue'], { error: 'must be abort or continue' }).default('abort'),
  STREAM_DETACHED_MAX_MS: int(600_000, 1, 86_400_000),
  STREAM_MAX_WATCHERS: int(32, 1, 10_000),
  IP_HASH_SALT: z.string().min(16, 'must be at least 16 characters').optional(),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
  LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),
  METRICS_TOKEN: z.string().trim().min(16, 'must be at least 16 characters (e.g. openssl rand -hex 32)').optional(),
  ANONYMOUS_ACCESS: bool(true),
  ADMIN_API_KEY: z.string().min(32, 'must be at least 32 characters (e.g. openssl rand -base64 48)').optional(),
  AUTH_JWT_SECRET: z.string().min(32, 'must be at least 32 characters (e.g. openssl rand -base64 48): it is the HS256 key').optional(),
  AUTH_JWKS_URL: jwksUrl.optional(),
  AUTH_JWT_ISSUER: z.string().trim().min(1).max(2048, 'must be at most 2048 characters').optional(),
  AUTH_JWT_AUDIENCE: z.string().trim().min(1).max(2048, 'must be at most 2048 characters').optional(),
  AUTH_JWT_ALGORITHMS: jwtAlgorithms.optional(),
  AUTH_JWT_CLOCK_TOLERANCE_SEC: int(60, 0, 60),
  AUTH_JWKS_COOLDOWN_MS: int(30_000, 0, 3_600_000),
  AUTH_JWKS_TIMEOUT_MS: int(5_000, 100, 60_000),
  UI_ENABLED: bool(true),
});

// DEFAULT_MODEL fills in requests that name no model, so it must be allowed itself.
const checkedEnvSchema = envSchema.superRefine((e, ctx) => {
  if (e.MODEL_ALLOWLIST && !allowsModel(e.MODEL_ALLOWLIST, e.DEFAULT_MODEL)) {
    ctx.addIssue({
      code: 'custom',
      path: ['DEFAULT_MODEL'],
      message: `${JSON.stringify(e.DEFAULT_MODEL)} is not in MODEL_ALLOWLIST (${e.MODEL_ALLOWLIST.join(',')}): add it there or set DEFAULT_MODEL to an allowed model`,
    });
  }
  // One kind of key, so the accepted algorithms follow from it: a server that took both would
  // have to guess from the token's own header which key to use, the HS/RS confusion attack.
  if (e.AUTH_JWT_SECRET && e.AUTH_JWKS_URL) {
    ctx.addIssue({
      code: 'custom',
      path: ['AUTH_JWT_SECRET'],
      message: 'AUTH_JWT_SECRET and AUTH_JWKS_URL are both set: pick one (AUTH_JWT_SECRET for HS256 tokens signed with a shared secret, AUTH_JWKS_URL for an identity provider that publishes its public keys)',
    });
  }
  if (e.AUTH_JWT_ALGORITHMS && e.AUTH_JWT_SECRET) {
    ctx.addIssue({
      code: 'custom',
      path: ['AUTH_JWT_ALGORITHMS'],
      message: 'applies to AUTH_JWKS_URL only: with AUTH_JWT_SECRET tokens are HS256; leave it unset',
    });
  }
});
/** Every variable the server reads (README's table and .env.example list them all). */
export const ENV_VARIABLES = Object.keys(envSchema.shape);

export interface Config {
  upstream: { baseUrl: string | undefined; apiKey: string | undefined; defaultModel: string; timeoutMs: number };
  port: number;
  host: string;
  allowedOrigins: string[];
  /** Requests per window per session or user (`max`) and per client address (`maxPerAddress`); 0 = that count off. */
  rateLimit: { windowSec: number; max: number; maxPerAddress: number; redisPrefix: string };
  /** When set, rate-limit counters live in this Redis and are shared by every process using it. */
  redisUrl: string | undefined;
  persist: boolean;
  db: DbTarget;
  /** Postgres: connections this process opens at most (LISTEN takes one more). */
  dbPoolMax: number;
  /** Idle conversations are deleted after `days` (0 = never) unless pinned; soft-deleted ones after `deletedDays`. */
  retention: { days: number; deletedDays: number; batchSize: number };
  privacy: { consentRequired: boolean; notice: string };
  limits: {
    conversationsPerSession: number;
    messagesPerConversation: number;
    /** Bytes of stored message text (content, parts, tool calls) per session's live conversations. */
    bytesPerSession: number;
    /** Nesting depth of any JSON request body. */
    jsonDepth: number;
    /** A conversation's metadata: nesting depth and serialised size. */
    metadataDepth: number;
    metadataBytes: number;
  };
  /**
   * Anonymous sessions: ids are minted and signed with `secret` (when unset, one kept in the
   * database); `allowClientIds` also accepts ids the client made up, as the first version did.
   */
  session: { secret: string | undefined; allowClientIds: boolean };
  /** Delta write batching, and how long failed writes are retried before text is given up. */
  flush: { ms: number; chars: number; retryMs: number };
  redactSystemPrompts: boolean;
  bodyLimitBytes: number;
  /** POST /v1/responses: input items per request (item references included). */
  responses: { maxInputItems: number };
  /**
   * POST /v1/conversations/import: the body, read as a stream, in bytes (BODY_LIMIT_BYTES does
   * not apply to it), and one line of an export file.
   */
  imports: { maxBytes: number; maxLineBytes: number };
  /** Characters a token estimate counts at most; beyond, it samples and extrapolates. */
  tokenEstimateMaxChars: number;
  /**
   * Crash recovery: lease on in-flight messages, how often orphans are swept, shutdown grace.
   * What a client leaving does to its answer by default (`continue`: recorded to its end, for at
   * most `detachedMaxMs` after it left), and how many watchers one answer may have per process.
   */
  streams: {
    leaseMs: number;
    sweepMs: number;
    shutdownGraceMs: number;
    onDisconnect: 'abort' | 'continue';
    detachedMaxMs: number;
    maxWatchers: number;
  };
  ipHashSalt: string | undefined;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
  /**
   * What one chat request may spend on the operator's key: allowed models (null = any), the
   * output-token cap (0 = none) and the field that carries it when the request sets none, `n`.
   */
  chatLimits: {
    modelAllowlist: string[] | null;
    maxOutputTokens: number;
    maxOutputTokensField: 'max_tokens' | 'max_completion_tokens';
    maxChoices: number;
  };
  /** Chat completions running at once (streamed or not) per session or user, per client address, per process; 0 = no cap. */
  concurrency: { perCaller: number; perAddress: number; total: number };
  /** Behind a reverse proxy: the client address is X-Forwarded-For's last hop, the scheme X-Forwarded-Proto's. */
  trustProxy: boolean;
  /** `json` lines (production, tests) or `pretty` human-readable lines (npm run dev's default). */
  logFormat: 'json' | 'pretty';
  /** When set, /metrics needs it as a bearer token and /healthz shows only its status without it. */
  metricsToken: string | undefined;
  /**
   * Who may call: anonymous sessions (`anonymousAccess`), the operator with `adminApiKey`, and
   * users signed in by JWT (`jwt`, null when neither AUTH_JWT_SECRET nor AUTH_JWKS_URL is set).
   */
  auth: { anonymousAccess: boolean; adminApiKey: string | undefined; jwt: JwtConfig | null };
  /** The web page at `/` (assets under `/ui/`); off, both answer 404. */
  ui: { enabled: boolean };
}

/**
 * How JWTs are verified: with a shared secret (HS256 only) or an identity provider's published
 * key set (the listed asymmetric algorithms only). `issuer` and `audience` are checked when set;
 * `exp` and `nbf` with `clockToleranceSec` of leeway.
 */
export type JwtConfig = { issuer: string | undefined; audience: string | undefined; clockToleranceSec: number } & (
  | { kind: 'secret'; secret: string; algorithms: ['HS256'] }
  | {
      kind: 'jwks';
      url: string;
      algorithms: JwksAlgorithm[];
      /** Least time between refetches of the key set when a token names a key id it lacks. */
      cooldownMs: number;
      timeoutMs: number;
    }
);

/** `http://LOCALHOST:3000/` → `http://localhost:3000`; null when it is not an origin. */
function normalizeOrigin(raw: string): string | null {
  if (!URL.canParse(raw)) return null;
  const url = new URL(raw);
  if (!url.host || (url.pathname !== '/' && url.pathname !== '') || url.search || url.hash || url.username) return null;
  // Schemes without an origin of their own (chrome-extension://…) are kept as written.
  return url.origin === 'null' ? raw.replace(/\/+$/, '') : url.origin;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment once at start; any bad value stops start-up naming the variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  // An empty variable (FOO= in a .env file) means "not set", so the default applies.
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = checkedEnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? 'environment');
      // Echo the bad value to help, except where it may be a secret.
      const value = cleaned[name]
        ?.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@')
        .replace(/([?&](?:key|api[_-]?key|token|access[_-]?token|secret|sig|signature|password)=)[^&#]*/gi, '$1***');
      const shown = value !== undefined && !/(KEY|SECRET|SALT|_TOKEN)$/.test(name) ? ` (got ${JSON.stringify(value)})` : '';
      return `  ${name}${shown}: ${i.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  return {
    upstream: {
      baseUrl: e.OPENAI_BASE_URL,
      apiKey: e.OPENAI_API_KEY,
      defaultModel: e.DEFAULT_MODEL,
      timeoutMs: e.UPSTREAM_TIMEOUT_MS,
    },
    port: e.PORT,
    host: e.HOST,
    allowedOrigins: e.ALLOWED_ORIGIN,
    rateLimit: {
      windowSec: e.RATE_LIMIT_WINDOW_SEC,
      max: e.RATE_LIMIT_MAX,
      // Several people can share an address (NAT, an office): a few sessions' worth by default.
      maxPerAddress: e.RATE_LIMIT_MAX_PER_ADDRESS ?? 4 * e.RATE_LIMIT_MAX,
      redisPrefix: e.RATE_LIMIT_REDIS_PREFIX,
    },
    redisUrl: e.REDIS_URL,
    persist: e.PERSIST_TRANSCRIPTS,
    db: e.DB_URL,
    dbPoolMax: e.DB_POOL_MAX,
    retention: { days: e.RETENTION_DAYS, deletedDays: e.DELETED_RETENTION_DAYS, batchSize: e.RETENTION_BATCH_SIZE },
    privacy: { consentRequired: e.CONSENT_REQUIRED, notice: e.PRIVACY_NOTICE },
    limits: {
      conversationsPerSession: e.MAX_CONVERSATIONS_PER_SESSION,
      messagesPerConversation: e.MAX_MESSAGES_PER_CONVERSATION,
      bytesPerSession: e.MAX_BYTES_PER_SESSION,
      jsonDepth: e.JSON_MAX_DEPTH,
      metadataDepth: e.METADATA_MAX_DEPTH,
      metadataBytes: e.METADATA_MAX_BYTES,
    },
    session: { secret: e.SESSION_SECRET, allowClientIds: e.ALLOW_CLIENT_SESSION_IDS },
    flush: { ms: e.HISTORY_BATCH_FLUSH_MS, chars: e.HISTORY_BATCH_FLUSH_CHARS, retryMs: e.HISTORY_RETRY_MS },
    redactSystemPrompts: e.REDACT_SYSTEM_PROMPTS,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    responses: { maxInputItems: e.RESPONSES_MAX_INPUT_ITEMS },
    imports: { maxBytes: e.IMPORT_MAX_BYTES, maxLineBytes: Math.min(e.IMPORT_MAX_LINE_BYTES, e.IMPORT_MAX_BYTES) },
    tokenEstimateMaxChars: e.TOKEN_ESTIMATE_MAX_CHARS,
    streams: {
      leaseMs: e.STREAM_LEASE_MS,
      sweepMs: e.ORPHAN_SWEEP_INTERVAL_MS,
      shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
      onDisconnect: e.STREAM_ON_DISCONNECT,
      detachedMaxMs: e.STREAM_DETACHED_MAX_MS,
      maxWatchers: e.STREAM_MAX_WATCHERS,
    },
    ipHashSalt: e.IP_HASH_SALT,
    logLevel: e.LOG_LEVEL,
    chatLimits: {
      modelAllowlist: e.MODEL_ALLOWLIST ?? null,
      maxOutputTokens: e.MAX_OUTPUT_TOKENS,
      maxOutputTokensField: e.MAX_OUTPUT_TOKENS_FIELD,
      maxChoices: e.MAX_CHOICES,
    },
    concurrency: {
      perCaller: e.MAX_STREAMS_PER_CALLER,
      perAddress: e.MAX_STREAMS_PER_ADDRESS ?? 4 * e.MAX_STREAMS_PER_CALLER,
      total: e.MAX_STREAMS,
    },
    trustProxy: e.TRUST_PROXY,
    logFormat: e.LOG_FORMAT,
    metricsToken: e.METRICS_TOKEN,
    auth: { anonymousAccess: e.ANONYMOUS_ACCESS, adminApiKey: e.ADMIN_API_KEY, jwt: jwtConfig(e) },
    ui: { enabled: e.UI_ENABLED },
  };
}

function jwtConfig(e: z.infer<typeof envSchema>): JwtConfig | null {
  const claims = { issuer: e.AUTH_JWT_ISSUER, audience: e.AUTH_JWT_AUDIENCE, clockToleranceSec: e.AUTH_JWT_CLOCK_TOLERANCE_SEC };
  if (e.AUTH_JWT_SECRET) return { ...claims, kind: 'secret', secret: e.AUTH_JWT_SECRET, algorithms: ['HS256'] };
  if (e.AUTH_JWKS_URL) {
    return {
      ...claims,
      kind: 'jwks',
      url: e.AUTH_JWKS_URL,
      algorithms: e.AUTH_JWT_ALGORITHMS ?? ['RS256', 'ES256'],
      cooldownMs: e.AUTH_JWKS_COOLDOWN_MS,
      timeoutMs: e.AUTH_JWKS_TIMEOUT_MS,
    };
  }
  return null;
}
