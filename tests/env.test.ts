import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../app/env.js';
import { parseDbUrl } from '../db/url.js';

describe('configuration', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 3001,
      allowedOrigins: ['http://localhost:3000'],
      rateLimit: { windowSec: 60, max: 50 },
      persist: false,
      db: { dialect: 'sqlite', path: './data/dev.db' },
      retention: { days: 30, deletedDays: 7, batchSize: 500 },
      privacy: { consentRequired: false },
      limits: { conversationsPerSession: 100, messagesPerConversation: 1000 },
      flush: { ms: 250, chars: 512 },
      redactSystemPrompts: false,
      bodyLimitBytes: 1_048_576,
      upstream: { defaultModel: 'gpt-4.1-mini', timeoutMs: 120_000, baseUrl: undefined },
    });
  });

  it('parses lists, booleans and trims the upstream URL', () => {
    const c = loadConfig({
      ALLOWED_ORIGIN: 'http://a.test, http://b.test',
      PERSIST_TRANSCRIPTS: 'true',
      OPENAI_BASE_URL: 'http://127.0.0.1:9/v1/',
      DB_URL: 'postgresql://u:p@h:5432/db',
    });
    expect(c.allowedOrigins).toEqual(['http://a.test', 'http://b.test']);
    expect(c.persist).toBe(true);
    expect(c.upstream.baseUrl).toBe('http://127.0.0.1:9/v1');
    expect(c.db).toEqual({ dialect: 'postgres', url: 'postgresql://u:p@h:5432/db' });
  });

  it.each([
    ['PORT', 'abc', /PORT \(got "abc"\): must be a whole number from 0 to 65535/],
    ['PORT', '70000', /PORT/],
    ['PERSIST_TRANSCRIPTS', 'maybe', /PERSIST_TRANSCRIPTS .*must be one of true, false/],
    ['DB_URL', 'mysql://x', /DB_URL .*must start with file:/],
    ['OPENAI_BASE_URL', 'api.openai.com', /OPENAI_BASE_URL .*http:\/\/ or https:\/\//],
    ['HISTORY_BATCH_FLUSH_MS', '0', /HISTORY_BATCH_FLUSH_MS/],
    ['BODY_LIMIT_BYTES', '1.5', /BODY_LIMIT_BYTES .*whole number/],
  ])('stops on a bad %s naming the variable', (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  it('never echoes a password from DB_URL or an API key', () => {
    try {
      loadConfig({ DB_URL: 'mysql://user:hunter2@db/x' });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2');
      expect((err as Error).message).toContain('user:***@');
    }
  });
});

describe('DB_URL', () => {
  it.each([
    ['file:./data/dev.db', { dialect: 'sqlite', path: './data/dev.db' }],
    ['file:/abs/x.db', { dialect: 'sqlite', path: '/abs/x.db' }],
    ['file::memory:', { dialect: 'sqlite', path: ':memory:' }],
    ['postgres://postgres@127.0.0.1:5432/test', { dialect: 'postgres', url: 'postgres://postgres@127.0.0.1:5432/test' }],
  ])('parses %s', (raw, target) => {
    expect(parseDbUrl(raw)).toEqual(target);
  });

  it.each(['', 'file:', 'sqlite://x.db', 'mysql://h/db', 'postgres://'])('refuses %j', (raw) => {
    expect(() => parseDbUrl(raw)).toThrow();
  });
});
