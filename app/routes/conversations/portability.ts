import { Hono, type Context } from 'hono';
import { z } from 'zod';
import type { Store } from '../../../db/store.js';
import { assertAllowed } from '../../access.js';
import { ApiError, notFound } from '../../errors.js';
import { requirePersistence, requireStorable } from '../../middleware/persistence.js';
import { sessionInfo } from '../../middleware/session.js';
import { chatgptItems, readChatgptExport } from '../../portability/chatgpt.js';
import { EXPORT_PAGE, exportErrorLine, markdownLines, ndjsonLines, pullStream, type ExportSource } from '../../portability/export.js';
import { NDJSON } from '../../portability/format.js';
import { ImportFormatError, ImportInterruptedError, exportFileItems, formatError, parseLimits, runImport, type ImportItem } from '../../portability/import.js';
import { BodyTooLargeError, readLines } from '../../portability/lines.js';
import type { AppEnv } from '../../types.js';
import { route } from '../../openapi/registry.js';
import { validate } from '../../validate.js';

type Env = AppEnv & { Variables: { store: Store } };

const flag = z.enum(['1', '0', 'true', 'false']).transform((v) => v === '1' || v === 'true');
const exportAllQuery = z.object({ include_deleted: flag.default(false) });
const exportOneQuery = z.object({ format: z.enum(['jsonl', 'markdown'], { error: "must be 'jsonl' or 'markdown'" }).default('jsonl') });
const importQuery = z.object({
  source: z.enum(['chat-proxy', 'chatgpt'], { error: "must be 'chat-proxy' (this server's export, the default) or 'chatgpt'" }).default('chat-proxy'),
  dry_run: flag.default(false),
});

/** Media types each source is read from; `application/jsonl` and friends are other names for JSON lines. */
const MEDIA_TYPES = {
  'chat-proxy': [NDJSON, 'application/jsonl', 'application/x-jsonlines', 'application/jsonlines'],
  chatgpt: ['application/json'],
} as const;

/** An export streamed page by page: the status and headers go first, then the rows as the client reads them. */
function download(c: Context<Env>, lines: AsyncGenerator<string>, contentType: string, filename: string, onError: (err: unknown) => string) {
  const body = pullStream(lines, (err) => {
    c.get('log').error({ err }, 'export failed after it started');
    return onError(err);
  });
  return c.body(body, 200, {
    'content-type': contentType,
    'content-disposition': `attachment; filename="${filename}"`,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
}

/** The store as one conversation's export reads it. */
const oneConversation = (store: Store, conversation: Awaited<ReturnType<Store['getConversation']>> & object): ExportSource => ({
  conversations: async () => ({ items: [conversation], hasMore: false }),
  messages: (id, afterSeq) => store.listMessages(id, { afterSeq, limit: EXPORT_PAGE.messages }),
});

/**
 * Moving conversations in and out: the export format of app/portability/format.ts, streamed out
 * page by page and read in line by line. Mounted before the conversations routes, so
 * `/export` and `/import` are not taken for conversation ids.
 */
export const portability = new Hono<Env>()
  .get('/export', requirePersistence(), validate('query', exportAllQuery), (c) => {
    const store = c.get('store');
    const principal = c.get('principal');
    const includeDeleted = c.req.valid('query').include_deleted;
    const now = new Date();
    const source: ExportSource = {
      conversations: (after) => store.listConversations(principal, { limit: EXPORT_PAGE.conversations, after, includeDeleted, scope: 'owned' }),
      messages: (id, afterSeq) => store.listMessages(id, { afterSeq, limit: EXPORT_PAGE.messages }),
    };
    return download(c, ndjsonLines(source, now), NDJSON, `conversations-${now.toISOString().slice(0, 10)}.jsonl`, exportErrorLine);
  })

  .get('/:id/export', requirePersistence(), validate('query', exportOneQuery), async (c) => {
    const id = c.req.param('id');
    const store = c.get('store');
    const conversation = await store.getConversation(c.get('principal'), id);
    if (!conversation) throw notFound('conversation', id);
    // Whoever may read it may take a copy: viewers too.
    assertAllowed(conversation.access, 'read', id);
    const source = oneConversation(store, conversation);
    if (c.req.valid('query').format === 'markdown') {
      return download(c, markdownLines(source), 'text/markdown; charset=utf-8', `conversation-${conversation.id}.md`, () => '\n\n**The transcript stopped early: the database failed while it was being read.**\n');
    }
    return download(c, ndjsonLines(source, new Date()), NDJSON, `conversation-${conversation.id}.jsonl`, exportErrorLine);
  })

  .post('/import', requirePersistence(), requireStorable(), validate('query', importQuery), async (c) => {
    const { source, dry_run } = c.req.valid('query');
    const { config } = c.get('services');
    const { maxBytes, maxLineBytes } = config.imports;
    // Checked here, not by jsonOnly (app.ts exempts this path): a form's media types, which a
    // page on another site can send without a CORS preflight, are refused like everywhere else.
    const mediaType = c.req.header('content-type')?.split(';')[0]!.trim().toLowerCase();
    const accepted: readonly string[] = MEDIA_TYPES[source];
    if (!mediaType || !accepted.includes(mediaType)) {
      throw new ApiError(
        415,
        'invalid_request_error',
        `An import ${source === 'chatgpt' ? "of ChatGPT's conversations.json" : 'of an export file'} takes Content-Type ${accepted[0]}; the request has ${mediaType ? `Content-Type ${JSON.stringify(mediaType.slice(0, 100))}` : 'none'}.`,
        'unsupported_media_type',
      );
    }
    const tooLarge = (imported?: number) =>
      new ApiError(
        413,
        'invalid_request_error',
        `The import is larger than this server reads (${maxBytes} bytes, IMPORT_MAX_BYTES).${
          imported ? ` ${imported} conversation${imported === 1 ? ' was' : 's were'} imported before that point and stay${imported === 1 ? 's' : ''}: importing the rest, or the same file again, skips ${imported === 1 ? 'it' : 'them'}.` : ' Nothing was imported.'
        } Split the file, or raise IMPORT_MAX_BYTES.`,
        'request_too_large',
      );
    const declared = Number(c.req.header('content-length'));
    if (declared > maxBytes) throw tooLarge();
    const body = c.req.raw.body;
    if (!body) throw new ApiError(400, 'invalid_request_error', 'The request has no body: send the file to import as the body.', 'invalid_import_file');

    const limits = parseLimits(config);
    let items: AsyncIterable<ImportItem> | Iterable<ImportItem>;
    try {
      if (source === 'chatgpt') {
        items = chatgptItems(await readChatgptExport(body, maxBytes), limits);
      } else {
        items = exportFileItems(readLines(body, { maxLineBytes, maxBytes }), limits);
      }
      const result = await runImport(c.get('store'), items, {
        owner: c.get('principal'),
        session: sessionInfo(c),
        dryRun: dry_run,
        limits: config.limits,
        retention: config.retention,
      });
      return c.json(result);
    } catch (err) {
      if (err instanceof ImportFormatError) throw formatError(err);
      if (err instanceof BodyTooLargeError) throw tooLarge();
      if (err instanceof ImportInterruptedError) {
        if (err.cause instanceof BodyTooLargeError) throw tooLarge(dry_run ? 0 : err.result.imported);
        throw err.cause;
      }
      throw err;
    }
  });

const tag = 'Moving your data';
const importResultSchema = z
  .object({
    object: z.literal('import.result'),
    dry_run: z.boolean(),
    imported: z.number().int(),
    skipped: z.number().int(),
    failed: z.array(z.object({ line: z.number().int(), source_id: z.string().nullable(), error: z.string() }).loose()),
    conversations: z.array(z.object({ id: z.string(), source_id: z.string().nullable(), status: z.string() }).loose()),
    warnings: z.array(z.unknown()),
  })
  .loose();
export const portabilityDocs = [
  route({
    method: 'get',
    path: '/v1/conversations/export',
    tag,
    summary: 'Export everything the caller owns',
    description: 'The versioned JSON-lines format (README, "Moving your data"), streamed from the database page by page.',
    query: exportAllQuery,
    responses: { 200: { description: 'The export file', mediaType: NDJSON } },
    persistence: true,
  }),
  route({
    method: 'get',
    path: '/v1/conversations/:id/export',
    tag,
    summary: 'Export one conversation',
    description: 'For anyone who may read it. `format=markdown` gives a readable transcript instead of JSON lines.',
    params: { id: 'The conversation id' },
    query: exportOneQuery,
    responses: { 200: { description: 'The conversation as JSON lines, or as Markdown', mediaType: `${NDJSON}, text/markdown` } },
    errors: [404],
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/conversations/import',
    tag,
    summary: 'Import an export file, or ChatGPT’s conversations.json',
    description:
      'Body: this server’s JSON lines (`application/x-ndjson`), or with `source=chatgpt` a ChatGPT `conversations.json` (`application/json`). Idempotent; each conversation all or nothing; read as a stream up to IMPORT_MAX_BYTES.',
    query: importQuery,
    responses: { 200: { description: 'What was imported, skipped and why anything failed', schema: importResultSchema } },
    errors: [403, 413, 415],
    persistence: true,
  }),
];
