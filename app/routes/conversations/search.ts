import { createHash } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import { parseSearchQuery, SearchQueryError } from '../../../db/search-query.js';
import type { SearchHit, SearchPosition, SearchQuery, Store } from '../../../db/store.js';
import { route } from '../../openapi/registry.js';
import { snippetMaker } from '../../search/snippet.js';
import type { AppEnv } from '../../types.js';
import { validate } from '../../validate.js';
import { intParam } from './schemas.js';

type Env = AppEnv & { Variables: { store: Store } };

/** Longest `q` accepted, in UTF-16 units; db/search-query.ts bounds its words. */
export const MAX_QUERY_CHARS = 200;

/** Which search a cursor continues: a page of one query is no position in another's order. */
const queryKey = (query: SearchQuery) => createHash('sha256').update(JSON.stringify(query.terms)).digest('base64url').slice(0, 12);

/**
 * The search cursor is opaque to clients: base64url of [score, created_at ms, id, query key] of
 * the last hit of the page. The score is the engine's, as a JSON number (exact for a double).
 */
function encodeCursor(hit: SearchHit, query: SearchQuery): string {
  return Buffer.from(JSON.stringify([hit.score, hit.createdAt.getTime(), hit.messageId ?? hit.conversationId, queryKey(query)])).toString('base64url');
}

// Timestamps between 1970 and year 9999, as the list cursor takes them.
const MAX_TIME = 253_402_300_799_999;
function decodeCursor(raw: string): (SearchPosition & { key: string }) | null {
  try {
    const value: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (!Array.isArray(value) || value.length !== 4) return null;
    const [score, ms, id, key] = value as unknown[];
    if (typeof score !== 'number' || !Number.isFinite(score)) return null;
    if (!Number.isSafeInteger(ms) || (ms as number) < 0 || (ms as number) > MAX_TIME) return null;
    if (typeof id !== 'string' || id.length > 200 || !(id as unknown as { isWellFormed(): boolean }).isWellFormed() || id.includes('\u0000')) return null;
    if (typeof key !== 'string') return null;
    return { score, createdAt: new Date(ms as number), id, key };
  } catch {
    return null;
  }
}

const searchQuerySchema = z
  .object({
    q: z
      .string({ error: 'is required: the words to search for' })
      .trim()
      .min(1, 'must not be empty: give the words to search for')
      .max(MAX_QUERY_CHARS, `must be at most ${MAX_QUERY_CHARS} characters`),
    limit: intParam(1, 50).default(20),
    cursor: z.string().max(1000).optional(),
  })
  .transform((input, ctx) => {
    let query: SearchQuery;
    try {
      query = parseSearchQuery(input.q);
    } catch (err) {
      if (!(err instanceof SearchQueryError)) throw err;
      ctx.addIssue({ code: 'custom', path: ['q'], message: err.message });
      return z.NEVER;
    }
    let after: SearchPosition | null = null;
    if (input.cursor !== undefined) {
      const position = decodeCursor(input.cursor);
      if (!position) {
        ctx.addIssue({ code: 'custom', path: ['cursor'], message: 'is not a cursor this server issued; pass next_cursor from a previous page' });
        return z.NEVER;
      }
      if (position.key !== queryKey(query)) {
        ctx.addIssue({ code: 'custom', path: ['cursor'], message: 'continues another search; pass it with the same q as the page it came from' });
        return z.NEVER;
      }
      after = { score: position.score, createdAt: position.createdAt, id: position.id };
    }
    return { query, limit: input.limit, after };
  });

/**
 * GET /v1/conversations/search: messages and titles of the conversations the caller may read,
 * best match first. A title match is an item with message_id, seq and role null.
 */
export const search = new Hono<Env>().get('/search', validate('query', searchQuerySchema), async (c) => {
  const { query, limit, after } = c.req.valid('query');
  const page = await c.get('store').search(c.get('principal'), { query, limit, after });
  const snippetOf = snippetMaker(query);
  const last = page.items.at(-1);
  return c.json({
    object: 'list',
    data: page.items.map((hit) => ({
      object: 'conversation.search_result' as const,
      conversation_id: hit.conversationId,
      conversation_title: hit.conversationTitle,
      message_id: hit.messageId,
      seq: hit.seq,
      role: hit.role,
      ...snippetOf(hit.text),
      created_at: hit.createdAt.toISOString(),
    })),
    next_cursor: page.hasMore && last ? encodeCursor(last, query) : null,
  });
});

const searchResultSchema = z.object({
  object: z.literal('conversation.search_result'),
  conversation_id: z.string(),
  conversation_title: z.string().nullable(),
  message_id: z.string().nullable().describe('null when the title matched'),
  seq: z.number().int().nullable(),
  role: z.string().nullable(),
  snippet: z.string().describe('Plain text, at most 200 characters around a match'),
  highlights: z.array(z.tuple([z.number().int(), z.number().int()])).describe('[start, end) UTF-16 ranges in snippet'),
  created_at: z.string(),
});
export const searchDocs = [
  route({
    method: 'get',
    path: '/v1/conversations/search',
    tag: 'Search',
    summary: 'Search the messages and titles of every conversation the caller may read',
    description: 'Words, "quoted phrases" and prefix* match; anything else is searched literally. Best match first, then newest.',
    query: searchQuerySchema,
    responses: { 200: { description: 'A page of matches', schema: z.object({ object: z.literal('list'), data: z.array(searchResultSchema), next_cursor: z.string().nullable() }) } },
    persistence: true,
  }),
];
