import { z } from 'zod';
import { openAiMetadataSchema } from '../chat/schemas.js';
import { afterParam, limitParam, orderParam } from '../openai/lists.js';

/*
 * POST /v1/responses as this server takes it: OpenAI's request body, every field it supports
 * checked, every other one refused by name (a field silently dropped would change the answer
 * without the client knowing). What is supported is what a chat-completions upstream can do:
 * text and images in, text and function calls out.
 */

/** OpenAI's own caps: 128 tools, 64-character function names. */
export const MAX_TOOLS = 128;
const ID = z.string().min(1, 'must not be empty').max(256, 'must be at most 256 characters');

const unsupported = (what: string, takes: string) => (iss: { code?: string; input?: unknown }) =>
  iss.code === 'invalid_union'
    ? `${what} of type ${JSON.stringify((iss.input as { type?: unknown } | undefined)?.type ?? null)} is not supported by this server; it takes ${takes}`
    : undefined;

// Content parts of an input message.
const inputText = z.strictObject({ type: z.literal('input_text'), text: z.string() });
const outputText = z.strictObject({
  type: z.literal('output_text'),
  text: z.string(),
  annotations: z.array(z.unknown()).max(0, 'annotations are not supported').optional(),
  logprobs: z.array(z.unknown()).optional(),
});
const inputImage = z.strictObject({
  type: z.literal('input_image'),
  image_url: z.string().max(16 * 1024 * 1024).describe('A URL or a data: URL; file ids are not supported'),
  detail: z.enum(['low', 'high', 'auto']).nullable().optional(),
});
const contentPart = z.discriminatedUnion('type', [inputText, outputText, inputImage], {
  error: unsupported('A content part', "'input_text', 'output_text' and 'input_image' parts (with an image_url)"),
});

const messageItem = z.strictObject({
  type: z.literal('message'),
  role: z.enum(['user', 'assistant', 'system', 'developer'], { error: "must be 'user', 'assistant', 'system' or 'developer'" }),
  content: z.union([z.string(), z.array(contentPart).min(1, 'must hold at least one part')], {
    // A list that fails says why (its part's type), not only that it is not a string.
    error: (iss) => (Array.isArray(iss.input) ? ((iss as { errors?: { message: string }[][] }).errors?.[1]?.[0]?.message ?? undefined) : 'must be a string or a list of parts'),
  }),
  id: ID.optional().describe('Ignored: a message given in full is stored as a new item'),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});
const functionCallItem = z.strictObject({
  type: z.literal('function_call'),
  call_id: ID,
  name: z.string().min(1).max(256),
  arguments: z.string(),
  id: ID.optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});
const functionCallOutputItem = z.strictObject({
  type: z.literal('function_call_output'),
  call_id: ID,
  output: z.union([z.string(), z.array(inputText)]),
  id: ID.optional(),
  status: z.enum(['in_progress', 'completed', 'incomplete']).optional(),
});
const itemReference = z.strictObject({
  type: z.literal('item_reference'),
  id: ID.describe('An item of a response or conversation the caller may read'),
});

/** One input item; a message may leave out `type`, as OpenAI's easy input messages do. */
export const inputItemSchema = z.preprocess(
  (v) => (v && typeof v === 'object' && !Array.isArray(v) && !('type' in v) ? { ...v, type: 'message' } : v),
  z.discriminatedUnion('type', [messageItem, functionCallItem, functionCallOutputItem, itemReference], {
    error: unsupported('An input item', "'message', 'function_call', 'function_call_output' and 'item_reference' items"),
  }),
);
export type InputItem = z.infer<typeof inputItemSchema>;

const functionTool = z.strictObject({
  type: z.literal('function'),
  name: z.string().min(1).max(64, 'must be at most 64 characters'),
  description: z.string().max(65_536).nullable().optional(),
  parameters: z.record(z.string(), z.unknown()).nullable().optional(),
  strict: z.boolean().nullable().optional(),
});
const toolSchema = z.discriminatedUnion('type', [functionTool], {
  error: unsupported('A tool', "only 'function' tools (hosted tools such as web_search or file_search need OpenAI itself)"),
});
export type FunctionTool = z.infer<typeof functionTool>;

const toolChoiceSchema = z.union([
  z.enum(['none', 'auto', 'required']),
  z.strictObject({ type: z.literal('function'), name: z.string().min(1).max(64) }),
], { error: "must be 'none', 'auto', 'required' or {type: 'function', name}" });

const textFormat = z.discriminatedUnion(
  'type',
  [
    z.strictObject({ type: z.literal('text') }),
    z.strictObject({ type: z.literal('json_object') }),
    z.strictObject({
      type: z.literal('json_schema'),
      name: z.string().min(1).max(64),
      schema: z.record(z.string(), z.unknown()),
      description: z.string().optional(),
      strict: z.boolean().nullable().optional(),
    }),
  ],
  { error: unsupported('A text format', "'text', 'json_object' and 'json_schema'") },
);

export const createResponseSchema = z.strictObject(
  {
    model: z.string().min(1, 'must not be empty').max(256).optional().describe('DEFAULT_MODEL when left out'),
    // A string is one user message: read as such, so an item's error is named in full.
    input: z.preprocess(
      (v) => (typeof v === 'string' ? [{ type: 'message', role: 'user', content: v }] : v),
      z.array(inputItemSchema, { error: 'must be a string or a list of input items' }).min(1, 'must hold at least one item'),
    ),
    instructions: z.string().nullable().optional().describe('Sent first, as a system message; not carried over to a response that follows this one'),
    tools: z.array(toolSchema).max(MAX_TOOLS, `must hold at most ${MAX_TOOLS} tools`).optional(),
    tool_choice: toolChoiceSchema.optional(),
    parallel_tool_calls: z.boolean().nullable().optional(),
    temperature: z.number().min(0).max(2).nullable().optional(),
    top_p: z.number().min(0).max(1).nullable().optional(),
    max_output_tokens: z.number().int('must be a whole number').min(1).nullable().optional(),
    text: z.strictObject({ format: textFormat.optional() }).nullable().optional(),
    reasoning: z.strictObject({ effort: z.enum(['none', 'minimal', 'low', 'medium', 'high', 'xhigh']).nullable().optional() }).nullable().optional(),
    truncation: z.enum(['disabled'], { error: "only 'disabled' is supported: this server never drops input to fit a context window" }).nullable().optional(),
    include: z
      .array(z.enum(['reasoning.encrypted_content'], { error: "only 'reasoning.encrypted_content' is accepted (and has nothing to add: no reasoning items are made)" }))
      .nullable()
      .optional(),
    metadata: openAiMetadataSchema.nullable().optional(),
    store: z.boolean().nullable().optional().describe('Default true; false: nothing is recorded and the response cannot be read back'),
    previous_response_id: ID.nullable().optional(),
    conversation: z
      .union([ID, z.strictObject({ id: ID })], { error: 'must be a conversation id or {id}' })
      .nullable()
      .optional()
      .describe('One of your conversations (GET /v1/conversations): the response continues its active branch'),
    stream: z.boolean().nullable().optional(),
    stream_options: z.strictObject({ include_obfuscation: z.boolean().optional() }).nullable().optional(),
    background: z.boolean().nullable().optional(),
    user: z.string().max(256).optional(),
    safety_identifier: z.string().max(256).optional(),
    prompt_cache_key: z.string().max(256).optional(),
    service_tier: z.enum(['auto', 'default', 'flex', 'scale', 'priority']).nullable().optional(),
  },
  {
    error: (iss) =>
      iss.code === 'unrecognized_keys'
        ? `${(iss as { keys: string[] }).keys.map((k) => `'${k}'`).join(', ')} ${(iss as { keys: string[] }).keys.length > 1 ? 'are' : 'is'} not supported by this server's Responses API; remove ${(iss as { keys: string[] }).keys.length > 1 ? 'them' : 'it'}`
        : undefined,
  },
);
export type CreateResponseRequest = z.infer<typeof createResponseSchema>;

export const retrieveQuerySchema = z.object({
  stream: z.enum(['true', 'false'], { error: "must be 'true' or 'false'" }).optional().describe('true: the events of a background response, replayed then followed'),
  starting_after: z
    .string()
    .regex(/^\d{1,9}$/, 'must be a whole number')
    .transform(Number)
    .optional()
    .describe('With stream=true: only events after this sequence_number'),
  include: z.unknown().optional().describe('Accepted and ignored (nothing extra to include)'),
  'include[]': z.unknown().optional(),
});

export const inputItemsQuerySchema = z.object({ after: afterParam, limit: limitParam, order: orderParam('desc') });

// The shapes, for the API reference and the tests that hold the answers to them.
const itemStatus = z.enum(['in_progress', 'completed', 'incomplete']);
export const outputItemSchema = z
  .discriminatedUnion('type', [
    z.object({
      type: z.literal('message'),
      id: z.string(),
      role: z.literal('assistant'),
      status: itemStatus,
      content: z.array(z.object({ type: z.literal('output_text'), text: z.string(), annotations: z.array(z.unknown()), logprobs: z.array(z.unknown()) })),
    }),
    z.object({ type: z.literal('function_call'), id: z.string(), call_id: z.string(), name: z.string(), arguments: z.string(), status: itemStatus }),
  ])
  .meta({ id: 'ResponseOutputItem' });

export const responseObjectSchema = z
  .object({
    id: z.string().describe('resp_…'),
    object: z.literal('response'),
    created_at: z.number().int().describe('Unix seconds'),
    completed_at: z.number().int().nullable(),
    status: z.enum(['queued', 'in_progress', 'completed', 'incomplete', 'failed', 'cancelled']),
    background: z.boolean(),
    model: z.string(),
    instructions: z.string().nullable(),
    output: z.array(outputItemSchema),
    error: z.object({ code: z.string(), message: z.string() }).nullable(),
    incomplete_details: z.object({ reason: z.enum(['max_output_tokens', 'content_filter']) }).nullable(),
    previous_response_id: z.string().nullable(),
    conversation: z.object({ id: z.string() }).nullable(),
    usage: z
      .object({
        input_tokens: z.number().int(),
        input_tokens_details: z.object({ cached_tokens: z.number().int() }),
        output_tokens: z.number().int(),
        output_tokens_details: z.object({ reasoning_tokens: z.number().int() }),
        total_tokens: z.number().int(),
      })
      .nullable(),
    metadata: z.record(z.string(), z.string()),
    tools: z.array(z.unknown()),
    tool_choice: z.unknown(),
    parallel_tool_calls: z.boolean(),
    temperature: z.number().nullable(),
    top_p: z.number().nullable(),
    max_output_tokens: z.number().int().nullable(),
    store: z.boolean(),
    text: z.object({ format: z.object({ type: z.string() }).loose() }),
    truncation: z.literal('disabled'),
    reasoning: z.object({ effort: z.string().nullable(), summary: z.null() }),
    service_tier: z.string().nullable(),
    user: z.string().nullable(),
  })
  .loose()
  .meta({ id: 'Response' });
