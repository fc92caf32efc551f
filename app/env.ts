import { z } from 'zod';
import { parseDbUrl, type DbTarget } from '../db/url.js';

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

const httpUrl = z
  .string()
  .trim()
  .refine((v) => /^https?:\/\/[^\s]+$/.test(v) && URL.canParse(v), {
    message: 'must be an http:// or https:// URL, e.g. https://api.openai.com/v1',
  })
  .transform((v) => v.replace(/\/+$/, ''));

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
    .transform((v) => v.split(',').map((o) => o.trim()).filter(Boolean)),
  RATE_LIMIT_WINDOW_SEC: int(60, 1, 86_400),
  RATE_LIMIT_MAX: int(50, 0),
  RATE_LIMIT_REDIS_PREFIX: z.string().regex(/^\S{1,100}$/, 'must be 1 to 100 characters without spaces').default('ratelimit:'),
  REDIS_URL: redisUrl.optional(),
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
  HISTORY_BATCH_FLUSH_MS: int(250, 1, 60_000),
  HISTORY_BATCH_FLUSH_CHARS: int(512, 1),
  HISTORY_RETRY_MS: int(30_000, 0, 3_600_000),
  REDACT_SYSTEM_PROMPTS: bool(false),
  UPSTREAM_TIMEOUT_MS: int(120_000, 1),
  BODY_LIMIT_BYTES: int(1_048_576, 1),
  TOKEN_ESTIMATE_MAX_CHARS: int(65_536, 1_024, 16_777_216),
  STREAM_LEASE_MS: int(15_000, 100, 600_000),
  ORPHAN_SWEEP_INTERVAL_MS: int(5_000, 50, 600_000),
  SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),
  IP_HASH_SALT: z.string().min(16, 'must be at least 16 characters').optional(),
  LOG_LEVEL: z.enum(['debug', 'info', 'warn', 'error', 'silent']).default('info'),
});

export interface Config {
  upstream: { baseUrl: string | undefined; apiKey: string | undefined; defaultModel: string; timeoutMs: number };
  port: number;
  host: string;
  allowedOrigins: string[];
  /** `max` 0 = rate limiting off. */
  rateLimit: { windowSec: number; max: number; redisPrefix: string };
  /** When set, rate-limit counters live in this Redis and are shared by every process using it. */
  redisUrl: string | undefined;
  persist: boolean;
  db: DbTarget;
  /** Idle conversations are deleted after `days` (0 = never) unless pinned; soft-deleted ones after `deletedDays`. */
  retention: { days: number; deletedDays: number; batchSize: number };
  privacy: { consentRequired: boolean; notice: string };
  limits: { conversationsPerSession: number; messagesPerConversation: number };
  /** Delta write batching, and how long failed writes are retried before text is given up. */
  flush: { ms: number; chars: number; retryMs: number };
  redactSystemPrompts: boolean;
  bodyLimitBytes: number;
  /** Characters a token estimate counts at most; beyond, it samples and extrapolates. */
  tokenEstimateMaxChars: number;
  /** Crash recovery: lease on in-flight messages, how often orphans are swept, shutdown grace. */
  streams: { leaseMs: number; sweepMs: number; shutdownGraceMs: number };
  ipHashSalt: string | undefined;
  logLevel: 'debug' | 'info' | 'warn' | 'error' | 'silent';
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment once at start; any bad value stops start-up naming the variable. */
export function loadConfig(source: Record<string, string | undefined> = process.env): Config {
  // An empty variable (FOO= in a .env file) means "not set", so the default applies.
  const cleaned = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = envSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => {
      const name = String(i.path[0] ?? 'environment');
      // Echo the bad value to help, except where it may be a secret.
      const value = cleaned[name]?.replace(/\/\/([^:/@]*):[^@]*@/, '//$1:***@');
      const shown = value !== undefined && !/KEY|SECRET|SALT/.test(name) ? ` (got ${JSON.stringify(value)})` : '';
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
    rateLimit: { windowSec: e.RATE_LIMIT_WINDOW_SEC, max: e.RATE_LIMIT_MAX, redisPrefix: e.RATE_LIMIT_REDIS_PREFIX },
    redisUrl: e.REDIS_URL,
    persist: e.PERSIST_TRANSCRIPTS,
    db: e.DB_URL,
    retention: { days: e.RETENTION_DAYS, deletedDays: e.DELETED_RETENTION_DAYS, batchSize: e.RETENTION_BATCH_SIZE },
    privacy: { consentRequired: e.CONSENT_REQUIRED, notice: e.PRIVACY_NOTICE },
    limits: {
      conversationsPerSession: e.MAX_CONVERSATIONS_PER_SESSION,
      messagesPerConversation: e.MAX_MESSAGES_PER_CONVERSATION,
    },
    flush: { ms: e.HISTORY_BATCH_FLUSH_MS, chars: e.HISTORY_BATCH_FLUSH_CHARS, retryMs: e.HISTORY_RETRY_MS },
    redactSystemPrompts: e.REDACT_SYSTEM_PROMPTS,
    bodyLimitBytes: e.BODY_LIMIT_BYTES,
    tokenEstimateMaxChars: e.TOKEN_ESTIMATE_MAX_CHARS,
    streams: { leaseMs: e.STREAM_LEASE_MS, sweepMs: e.ORPHAN_SWEEP_INTERVAL_MS, shutdownGraceMs: e.SHUTDOWN_GRACE_MS },
    ipHashSalt: e.IP_HASH_SALT,
    logLevel: e.LOG_LEVEL,
  };
}
