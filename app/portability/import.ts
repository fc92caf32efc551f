import { z } from 'zod';
import { storedBytesOf } from '../../db/shared.js';
import {
  LimitExceededError,
  messageRoles,
  messageStatuses,
  type ImportedConversation,
  type ImportedMessage,
  type Json,
  type Principal,
  type SessionInfo,
  type Store,
} from '../../db/store.js';
import type { Config } from '../env.js';
import { ApiError } from '../errors.js';
import { jsonDepth } from '../middleware/json-depth.js';
import { metadataSchema } from '../routes/conversations/schemas.js';
import { EXPORT_FORMAT, EXPORT_VERSION } from './format.js';
import type { Line } from './lines.js';

/**
 * What an importer hands on, conversation by conversation: one ready to write, or one that
 * cannot be (with the line that says why). `line` is where the conversation starts: a line of
 * an export file, or a ChatGPT conversation's place in its array.
 */
export type ImportItem =
  | { line: number; sourceId: string; conversation: ImportedConversation }
  | { line: number; sourceId: string | null; error: string };

/** The file cannot be imported at all (not this format, another version): a 400 before anything is written. */
export class ImportFormatError extends Error {
  override name = 'ImportFormatError';
}

/** Words that follow /v1/conversations/ in the API's own paths: a conversation with such an id could not be reached. */
const RESERVED_IDS = new Set(['export', 'import', 'search']);
// Ids become path segments (/v1/conversations/:id) and keys: kept to what every id so far is.
export const importIdSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/, 'must be 1 to 200 letters, digits, or _ . : - (starting with a letter or digit)')
  .refine((id) => !RESERVED_IDS.has(id.toLowerCase()), 'is a word the API uses in its paths (/v1/conversations/export, /import, /search)');
const INT32 = 2_147_483_647;
const count = z.number().int().min(0).max(INT32).nullable().default(null);
/** ISO-8601 with a time and an offset (Z or ±hh:mm), years 0001 to 9999. */
const time = z.string().transform((v, ctx) => {
  const d = new Date(v);
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(v) || Number.isNaN(d.getTime()) || d.getUTCFullYear() < 1) {
    ctx.addIssue({ code: 'custom', message: 'must be an ISO-8601 date-time with an offset, e.g. 2025-01-31T12:00:00.000Z' });
    return z.NEVER;
  }
  return d;
});
// Values of JSON.parse are JSON by construction; nested ones are only bounded in depth (below).
const anyJson = z.custom<Json>((v) => v !== undefined).nullable().default(null);

const headerSchema = z.object({ type: z.literal('export'), format: z.string(), version: z.unknown() });

const conversationSchema = z.object({
  type: z.literal('conversation'),
  id: importIdSchema,
  title: z.string().max(500, 'must be at most 500 characters').nullable().default(null),
  model: z.string().min(1).max(200).nullable().default(null),
  metadata: metadataSchema.default({}),
  created_at: time,
  updated_at: time.optional(),
  deleted_at: time.nullable().default(null),
  import_source_id: importIdSchema.nullable().default(null),
  // Files from before branches have none: the last message is then the active leaf.
  active_message_id: importIdSchema.nullable().default(null),
});

const messageSchema = z.object({
  type: z.literal('message'),
  id: importIdSchema,
  conversation_id: z.string(),
  seq: z.number().int().min(1).max(INT32),
  role: z.enum(messageRoles),
  status: z.enum(messageStatuses),
  content: z.string(),
  content_json: anyJson,
  parent_message_id: z.string().max(200).nullable().default(null),
  client_id: z.string().max(128).nullable().default(null),
  tokens_in: count,
  tokens_out: count,
  tokens_source: z.enum(['provider', 'estimated']).nullable().default(null),
  finish_reason: z.string().max(200).nullable().default(null),
  tool_calls: anyJson,
  function_call: anyJson,
  created_at: time,
  updated_at: time.optional(),
});

/** "field 'role': …" for the first issue of a failed parse. */
function describe(error: z.ZodError): string {
  const issue = error.issues[0]!;
  const field = issue.path.map(String).join('.');
  return field ? `field '${field}' ${issue.message}` : issue.message;
}

/**
 * A message that was still being written when it was exported will never be finished: it comes
 * in closed, as an error interrupted, its text kept (as the orphan sweep closes one here).
 */
export function closedMessage(m: Omit<ImportedMessage, 'status'> & { status: ImportedMessage['status'] | 'draft' | 'streaming' }): ImportedMessage {
  if (m.status === 'final' || m.status === 'error') return m as ImportedMessage;
  return { ...m, status: 'error', finishReason: 'interrupted' };
}

export interface ParseLimits {
  /** A conversation with more messages, or more bytes of them, is refused before it is held whole. */
  maxMessages: number;
  maxBytes: number;
  jsonDepth: number;
  metadataDepth: number;
  metadataBytes: number;
  /**
   * REDACT_SYSTEM_PROMPTS: system messages are not held nor counted toward the limits (the
   * store drops them anyway; checked, they would fail conversations that fit once redacted).
   */
  dropSystem: boolean;
}

/** ParseLimits from the server's configuration. */
export const parseLimits = (config: Pick<Config, 'limits' | 'redactSystemPrompts'>): ParseLimits => ({
  maxMessages: config.limits.messagesPerConversation,
  maxBytes: config.limits.bytesPerSession,
  jsonDepth: config.limits.jsonDepth,
  metadataDepth: config.limits.metadataDepth,
  metadataBytes: config.limits.metadataBytes,
  dropSystem: config.redactSystemPrompts,
});

interface Group {
  line: number;
  sourceId: string | null;
  conversation: ImportedConversation | null;
  bytes: number;
  seq: number;
  ids: Set<string>;
  error: string | null;
}

/**
 * The conversations of an export file (format.ts), from its lines. The first line must be the
 * header of this format and version, or the whole file is refused (ImportFormatError), before
 * anything is written. After it, a line that cannot be read or is not what it should be fails
 * its conversation (the one it follows, or the one it starts) and no other: reading resumes at
 * the next conversation line. A line too long to hold is told apart by its first bytes.
 */
export async function* exportFileItems(lines: AsyncIterable<Line>, limits: ParseLimits): AsyncGenerator<ImportItem> {
  let headerSeen = false;
  let group: Group | null = null;

  const fail = (g: Group, line: number, why: string) => {
    if (g.error) return;
    g.error = `line ${line}: ${why}`;
    // Nothing of it will be written: let go of what was read.
    g.conversation = null;
  };
  function* close(): Generator<ImportItem> {
    const g = group;
    group = null;
    if (!g) return;
    if (g.error || !g.conversation) yield { line: g.line, sourceId: g.sourceId, error: g.error ?? `line ${g.line}: no conversation` };
    else yield { line: g.line, sourceId: g.sourceId!, conversation: g.conversation };
  }
  /** A line that belongs to no readable conversation: it fails the current one, or stands as a failure of its own. */
  const stray = (line: number, why: string) => {
    group ??= { line, sourceId: null, conversation: null, bytes: 0, seq: 0, ids: new Set(), error: null };
    fail(group, line, why);
  };

  for await (const line of lines) {
    if ('text' in line && !line.text.trim()) continue;
    let value: unknown;
    let kind: string | null = null;
    let unreadable: string | null = null;
    if ('tooLong' in line) {
      kind = /^\s*\{\s*"type"\s*:\s*"(\w+)"/.exec(line.head)?.[1] ?? null;
      unreadable = `the line is ${line.bytes} bytes, longer than this server reads (IMPORT_MAX_LINE_BYTES)`;
    } else if ('notUtf8' in line) {
      unreadable = 'the line is not UTF-8 text';
    } else {
      try {
        value = JSON.parse(line.text);
        kind = value && typeof value === 'object' && !Array.isArray(value) && typeof (value as { type?: unknown }).type === 'string' ? (value as { type: string }).type : null;
        if (jsonDepth(value, limits.jsonDepth) > limits.jsonDepth) unreadable = `the line nests JSON more than ${limits.jsonDepth} levels deep (JSON_MAX_DEPTH)`;
      } catch {
        unreadable = 'the line is not JSON';
      }
    }

    if (!headerSeen) {
      const header = unreadable ? null : headerSchema.safeParse(value);
      if (!header?.success) {
        const start = 'text' in line ? line.text.trimStart()[0] : undefined;
        throw new ImportFormatError(
          start === '['
            ? 'This looks like a JSON array, such as ChatGPT\'s conversations.json: import it with ?source=chatgpt and Content-Type: application/json.'
            : `Line ${line.number} is not the header of a ${EXPORT_FORMAT} export (${unreadable ?? 'expected {"type":"export","format":"chat-proxy","version":1,…}'}). Export files start with it: GET /v1/conversations/export makes them.`,
        );
      }
      checkHeader(header.data, line.number);
      headerSeen = true;
      continue;
    }

    if (kind === 'conversation') {
      yield* close();
      const id = value && typeof value === 'object' ? (value as { id?: unknown }).id : undefined;
      group = { line: line.number, sourceId: typeof id === 'string' ? id : null, conversation: null, bytes: 0, seq: 0, ids: new Set(), error: null };
      if (unreadable) {
        fail(group, line.number, unreadable);
        continue;
      }
      const parsed = conversationSchema.safeParse(value);
      if (!parsed.success) {
        fail(group, line.number, describe(parsed.error));
        continue;
      }
      const c = parsed.data;
      const metadataProblem = metadataFits(c.metadata, limits);
      if (metadataProblem) {
        fail(group, line.number, metadataProblem);
        continue;
      }
      group.conversation = {
        id: c.id,
        sourceId: c.import_source_id,
        activeMessageId: c.active_message_id,
        title: c.title,
        model: c.model,
        metadata: c.metadata,
        createdAt: c.created_at,
        updatedAt: c.updated_at ?? c.created_at,
        deletedAt: c.deleted_at,
        messages: [],
      };
      continue;
    }

    if (unreadable) {
      stray(line.number, unreadable);
      continue;
    }
    if (kind === 'export') {
      // Files joined with cat: a header of this format and version between them is fine.
      try {
        checkHeader(headerSchema.parse(value), line.number);
        yield* close();
      } catch (err) {
        stray(line.number, (err as Error).message);
      }
      continue;
    }
    if (kind === 'error') {
      const message = (value as { error?: { message?: unknown } }).error?.message;
      stray(line.number, `the export was cut short here${typeof message === 'string' ? `: ${message.slice(0, 300)}` : ''}`);
      continue;
    }
    if (kind !== 'message') {
      stray(line.number, kind === null ? "the line has no \"type\" (expected 'conversation' or 'message')" : `unknown line type '${kind.slice(0, 50)}'`);
      continue;
    }
    if (!group) {
      stray(line.number, 'a message before any conversation line');
      continue;
    }
    if (group.error) continue;
    const parsed = messageSchema.safeParse(value);
    if (!parsed.success) {
      fail(group, line.number, describe(parsed.error));
      continue;
    }
    const m = parsed.data;
    const conversation = group.conversation!;
    if (m.conversation_id !== conversation.id) {
      fail(group, line.number, `a message of conversation '${m.conversation_id.slice(0, 200)}' under conversation '${conversation.id}'`);
      continue;
    }
    if (m.seq <= group.seq) {
      fail(group, line.number, `seq ${m.seq} after seq ${group.seq}: messages come in seq order`);
      continue;
    }
    if (group.ids.has(m.id)) {
      fail(group, line.number, `message id '${m.id}' appears twice`);
      continue;
    }
    const message = closedMessage({
      id: m.id,
      role: m.role,
      status: m.status,
      content: m.content,
      contentJson: m.content_json,
      parentMessageId: m.parent_message_id,
      clientId: m.client_id,
      tokensIn: m.tokens_in,
      tokensOut: m.tokens_out,
      tokensSource: m.tokens_source,
      finishReason: m.finish_reason,
      toolCalls: m.tool_calls,
      functionCall: m.function_call,
      createdAt: m.created_at,
      updatedAt: m.updated_at ?? m.created_at,
    });
    group.seq = m.seq;
    group.ids.add(m.id);
    if (limits.dropSystem && message.role === 'system') continue;
    // Checked as it grows, so a conversation that could never be stored is not held whole.
    group.bytes += storedBytesOf([{ ...message, status: 'final' }]);
    if (conversation.messages.length + 1 > limits.maxMessages) {
      fail(group, line.number, new LimitExceededError('messages_per_conversation', limits.maxMessages).message);
      continue;
    }
    if (group.bytes > limits.maxBytes) {
      fail(group, line.number, new LimitExceededError('bytes_per_session', limits.maxBytes).message);
      continue;
    }
    conversation.messages.push(message);
  }
  if (!headerSeen) throw new ImportFormatError(`The body is empty: an export file starts with its header line ({"type":"export","format":"${EXPORT_FORMAT}","version":${EXPORT_VERSION},…}).`);
  yield* close();
}

function checkHeader(header: z.infer<typeof headerSchema>, line: number): void {
  if (header.format !== EXPORT_FORMAT) {
    throw new ImportFormatError(`Line ${line}: this is a '${String(header.format).slice(0, 50)}' export; this server reads '${EXPORT_FORMAT}' exports.`);
  }
  if (header.version !== EXPORT_VERSION) {
    throw new ImportFormatError(`Line ${line}: export format version ${JSON.stringify(header.version)?.slice(0, 20)} is not one this server reads (it reads version ${EXPORT_VERSION}).`);
  }
}

/** Why metadata cannot be stored (as PATCH would refuse it), or null. */
export function metadataFits(metadata: Record<string, Json>, limits: Pick<ParseLimits, 'metadataDepth' | 'metadataBytes'>): string | null {
  if (jsonDepth(metadata, limits.metadataDepth) > limits.metadataDepth) return `metadata nests more than ${limits.metadataDepth} levels deep (METADATA_MAX_DEPTH)`;
  const bytes = Buffer.byteLength(JSON.stringify(metadata));
  if (bytes > limits.metadataBytes) return `metadata is ${bytes} bytes as JSON, more than the ${limits.metadataBytes} this server accepts (METADATA_MAX_BYTES)`;
  return null;
}

export interface ImportResult {
  object: 'import.result';
  dry_run: boolean;
  imported: number;
  skipped: number;
  failed: { line: number | null; source_id: string | null; error: string }[];
  conversations: { id: string | null; source_id: string | null; status: 'imported' | 'skipped' | 'failed' }[];
  warnings: string[];
}

/** Failures listed one by one; past this many, one more entry counts the rest. */
const MAX_FAILURES_LISTED = 1_000;

export interface ImportOptions {
  owner: Principal;
  session?: SessionInfo;
  dryRun: boolean;
  limits: Config['limits'];
  retention: Config['retention'];
  /** Called after each conversation with the result so far (the shell's progress line). */
  onProgress?: (result: ImportResult) => void;
}

/** Where an import stopped when its body passed IMPORT_MAX_BYTES: what it had done by then. */
export class ImportInterruptedError extends Error {
  override name = 'ImportInterruptedError';
  constructor(
    readonly result: ImportResult,
    override readonly cause: unknown,
  ) {
    super('The import stopped before the end of its body.');
  }
}

/**
 * Writes each conversation the importer gives, one transaction each, under the owner's limits,
 * and tells what became of each. A conversation the store refuses for a limit fails alone; a
 * database failure stops the import (what was written stays; importing again skips it).
 */
export async function runImport(store: Store, items: AsyncIterable<ImportItem> | Iterable<ImportItem>, options: ImportOptions): Promise<ImportResult> {
  const result: ImportResult = { object: 'import.result', dry_run: options.dryRun, imported: 0, skipped: 0, failed: [], conversations: [], warnings: [] };
  let unlisted = 0;
  const failed = (line: number | null, sourceId: string | null, error: string) => {
    result.conversations.push({ id: null, source_id: sourceId, status: 'failed' });
    if (result.failed.length < MAX_FAILURES_LISTED) result.failed.push({ line, source_id: sourceId, error });
    else unlisted += 1;
  };
  const expiry = retentionCheck(options.retention);
  const { limits } = options;
  try {
    for await (const item of items) {
      if ('error' in item) {
        failed(item.line, item.sourceId, item.error);
        options.onProgress?.(result);
        continue;
      }
      let outcome;
      try {
        outcome = await store.importConversation(options.owner, item.conversation, {
          maxPerSession: limits.conversationsPerSession,
          maxMessages: limits.messagesPerConversation,
          maxBytes: limits.bytesPerSession,
          session: options.session,
          dryRun: options.dryRun,
        });
      } catch (err) {
        if (!(err instanceof LimitExceededError)) throw err;
        failed(item.line, item.sourceId, `line ${item.line}: ${err.message}`);
        options.onProgress?.(result);
        continue;
      }
      result[outcome.status] += 1;
      result.conversations.push({ id: outcome.id, source_id: item.sourceId, status: outcome.status });
      if (outcome.status === 'imported') expiry.count(item.conversation);
      options.onProgress?.(result);
    }
  } catch (err) {
    if (err instanceof ImportFormatError) throw err;
    throw new ImportInterruptedError(finish(), err);
  }
  return finish();

  function finish(): ImportResult {
    if (unlisted) result.failed.push({ line: null, source_id: null, error: `${unlisted} more conversations failed (the first ${MAX_FAILURES_LISTED} are listed)` });
    result.warnings.push(...expiry.warnings());
    return result;
  }
}

/**
 * Imported conversations keep their times, so retention treats them as any other: say how many
 * the next sweep will delete, so nobody learns it an hour later.
 */
function retentionCheck(retention: Config['retention']) {
  const now = Date.now();
  const day = 86_400_000;
  let idle = 0;
  let purged = 0;
  return {
    count(c: ImportedConversation) {
      if (c.deletedAt) {
        if (c.deletedAt.getTime() < now - retention.deletedDays * day) purged += 1;
      } else if (retention.days > 0 && c.updatedAt.getTime() < now - retention.days * day && c.metadata.pinned !== true) {
        idle += 1;
      }
    },
    warnings() {
      const out: string[] = [];
      if (idle) {
        out.push(
          `${idle} imported conversation${idle === 1 ? ' has' : 's have'} been idle longer than this server keeps conversations (RETENTION_DAYS=${retention.days}): the next retention sweep deletes ${idle === 1 ? 'it' : 'them'} unless pinned (metadata.pinned: true).`,
        );
      }
      if (purged) {
        out.push(`${purged} imported conversation${purged === 1 ? ' was' : 's were'} deleted more than DELETED_RETENTION_DAYS (${retention.deletedDays}) ago: the next retention sweep purges ${purged === 1 ? 'it' : 'them'}.`);
      }
      return out;
    },
  };
}

/** 400 for a file that is not an export of this format, as the API says it. */
export const formatError = (err: ImportFormatError) => new ApiError(400, 'invalid_request_error', err.message, 'invalid_import_file');
