import { z } from 'zod';
import { shareRoles, type Json, type JsonObject, type ListPosition } from '../../../db/store.js';
import type { Config } from '../../env.js';
import { ApiError } from '../../errors.js';
import { jsonDepth } from '../../middleware/json-depth.js';
import { afterParam, foldQuery, limitParam, orderParam } from '../../openai/lists.js';
import { ITEMS_PER_REQUEST, itemInputsSchema } from './items.js';
import { intParam } from '../../validate.js';

const json: z.ZodType<Json> = z
  .lazy(() => z.union([z.string(), z.number(), z.boolean(), z.null(), z.array(json), z.record(z.string(), json)]))
  .meta({ id: 'JsonValue' });
export const metadataSchema: z.ZodType<JsonObject> = z.record(z.string(), json);

/**
 * Metadata is stored and read back whole with every conversation, so it is kept small and flat
 * (METADATA_MAX_DEPTH, METADATA_MAX_BYTES): a deep or large blob would cost every reader.
 */
export function assertMetadataFits(metadata: JsonObject | null | undefined, limits: Config['limits']): void {
  if (metadata == null) return;
  if (jsonDepth(metadata, limits.metadataDepth) > limits.metadataDepth) {
    throw new ApiError(400, 'invalid_request_error', `Invalid body 'metadata': nests more than ${limits.metadataDepth} levels deep (METADATA_MAX_DEPTH).`, 'invalid_value', 'metadata');
  }
  const bytes = Buffer.byteLength(JSON.stringify(metadata));
  if (bytes > limits.metadataBytes) {
    throw new ApiError(
      400,
      'invalid_request_error',
      `Invalid body 'metadata': ${bytes} bytes as JSON, more than the ${limits.metadataBytes} this server accepts (METADATA_MAX_BYTES).`,
      'invalid_value',
      'metadata',
    );
  }
}

const title = z.string().max(500, 'must be at most 500 characters').nullable();

export const createConversationSchema = z.strictObject({
  title: title.optional(),
  model: z.string().min(1).max(200).nullable().optional(),
  // null as OpenAI's SDKs may send it: no metadata.
  metadata: metadataSchema.nullable().optional(),
  items: itemInputsSchema.optional().describe(`OpenAI's initial items (at most ${ITEMS_PER_REQUEST}), stored as the first messages`),
});

export const patchConversationSchema = z.strictObject({
  title: title.optional(),
  metadata: metadataSchema.optional(),
});

/** `POST /v1/conversations/:id`, OpenAI's update: as PATCH, with `metadata: null` clearing it. */
export const updateConversationSchema = z.strictObject({
  title: title.optional(),
  metadata: metadataSchema.nullable().optional(),
});

export const createItemsSchema = z.strictObject({ items: itemInputsSchema });

/** `include` names what OpenAI can add to items; none of it exists here, so it is accepted and changes nothing. */
const includeSchema = z
  .array(
    z.enum([
      'file_search_call.results',
      'web_search_call.results',
      'web_search_call.action.sources',
      'message.input_image.image_url',
      'computer_call_output.output.image_url',
      'code_interpreter_call.outputs',
      'reasoning.encrypted_content',
      'message.output_text.logprobs',
    ]),
  )
  .max(16)
  .optional()
  .describe('include[]=…: accepted as OpenAI takes it; nothing here has more to include');

export const listItemsQuerySchema = z.preprocess(
  foldQuery,
  z.object({ after: afterParam, limit: limitParam, order: orderParam('desc'), include: includeSchema }),
);
export const itemQuerySchema = z.preprocess(foldQuery, z.object({ include: includeSchema }));

const flag = z.enum(['1', '0', 'true', 'false']).transform((v) => v === '1' || v === 'true');
export { intParam } from '../../validate.js';

/** The list cursor is opaque to clients: base64url of [created_at ms, id] of the last item. */
export function encodeCursor(position: ListPosition): string {
  return Buffer.from(JSON.stringify([position.createdAt.getTime(), position.id])).toString('base64url');
}

// Timestamps between 1970 and year 9999 (Postgres cannot parse the extended-year ISO form).
const MAX_TIME = 253_402_300_799_999;
/** Reads back what encodeCursor made; anything else is a 400 naming the parameter. */
export const cursorSchema = z.string().transform((raw, ctx): ListPosition => {
  try {
    const value: unknown = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      Number.isSafeInteger(value[0]) &&
      value[0] >= 0 &&
      value[0] <= MAX_TIME &&
      typeof value[1] === 'string' &&
      !value[1].includes('\u0000')
    ) {
      return { createdAt: new Date(value[0]), id: value[1] };
    }
  } catch {
    // fall through to the issue below
  }
  ctx.addIssue({ code: 'custom', message: 'is not a cursor this server issued; pass next_cursor from a previous page' });
  return z.NEVER;
});

export const listQuerySchema = z.object({
  cursor: cursorSchema.optional(),
  scope: z.enum(['owned', 'shared', 'all'], { error: "must be 'owned', 'shared' or 'all'" }).default('all'),
  limit: intParam(1, 100).default(20),
  include_deleted: flag.default(false),
});

export const getQuerySchema = z.object({
  // Seqs are 32-bit integers: anything beyond is simply past the end.
  after_seq: intParam(0, Number.MAX_SAFE_INTEGER)
    .default(0)
    .transform((n) => Math.min(n, 2_147_483_647)),
  limit: intParam(1, 200).default(100),
});

/** GET /v1/conversations/:id: the active path (the conversation as it stands) or every message. */
export const conversationQuerySchema = getQuerySchema.extend({
  view: z.enum(['active', 'tree'], { error: "must be 'active' or 'tree'" }).default('active'),
});

const messageId = z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters');

/** POST …/active and …/fork: the message whose branch to show, or where to fork. */
export const messageIdSchema = z.strictObject({ message_id: messageId });

const textPart = z.object({ type: z.literal('text'), text: z.string() }).loose();
const otherPart = z.object({ type: z.string().min(1) }).loose();
export const contentSchema = z.union([z.string(), z.array(z.union([textPart, otherPart])).min(1)]);

export const createMessageSchema = z.strictObject({
  role: z.enum(['user', 'system'], { error: "must be 'user' or 'system'" }),
  content: contentSchema,
  // The message it follows; left out, the active leaf; null, none (a new first message).
  parent_message_id: messageId.nullable().optional(),
});

export const shareSchema = z.strictObject({
  role: z.enum(shareRoles, { error: "must be 'viewer' or 'editor'" }),
});
