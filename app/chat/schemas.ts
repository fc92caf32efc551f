import { z } from 'zod';

// Only what this server itself reads is checked; every other field is the upstream's business
// and passes through untouched.
const part = z.object({ type: z.string() }).loose();
export const chatMessageSchema = z
  .object({
    role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function'], {
      error: "must be one of 'system', 'developer', 'user', 'assistant', 'tool', 'function'",
    }),
    content: z.union([z.string(), z.array(part), z.null()]).optional(),
    // The client's own id for the message: matched against what is stored, never sent upstream.
    id: z.string().min(1, 'must not be empty').max(128, 'must be at most 128 characters').optional(),
  })
  .loose();

/** OpenAI's limits on metadata: at most 16 keys of at most 64 characters, string values of at most 512. */
export const METADATA_LIMITS = { keys: 16, keyChars: 64, valueChars: 512 } as const;
export const openAiMetadataSchema = z
  .record(
    z.string().max(METADATA_LIMITS.keyChars, `keys must be at most ${METADATA_LIMITS.keyChars} characters`),
    z.string({ error: 'values must be strings' }).max(METADATA_LIMITS.valueChars, `values must be at most ${METADATA_LIMITS.valueChars} characters`),
  )
  .refine((m) => Object.keys(m).length <= METADATA_LIMITS.keys, `must have at most ${METADATA_LIMITS.keys} keys`)
  .meta({ maxProperties: METADATA_LIMITS.keys, description: 'Up to 16 string pairs kept with the object, as OpenAI takes them.' });

export const chatRequestSchema = z
  .object({
    model: z.string().min(1, 'must not be empty').optional(),
    messages: z.array(chatMessageSchema).min(1, 'must contain at least one message'),
    stream: z.boolean().optional(),
    conversation_id: z.string().min(1).max(128).optional().describe('This server: the conversation to record the exchange in (or the x-conversation-id header).'),
    store: z.boolean().nullable().optional().describe('false: proxied, not recorded (as x-persist: off). Not sent upstream.'),
    metadata: openAiMetadataSchema.nullable().optional().describe('Kept with the stored completion. Not sent upstream.'),
  })
  .loose();

export type ChatMessage = z.infer<typeof chatMessageSchema>;
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** Fields this server consumes; they never reach the upstream. */
export const LOCAL_FIELDS = ['conversation_id', 'store', 'metadata'] as const;
/** Fields of a message this server consumes (the client's message id). */
export const LOCAL_MESSAGE_FIELDS = ['id'] as const;

/**
 * Headers the proxy reads (and never sends upstream). `x-on-disconnect`: what the client leaving
 * does to an answer that is recorded — `abort` the upstream, or `continue` it to its end (within
 * STREAM_DETACHED_MAX_MS); absent, STREAM_ON_DISCONNECT decides.
 */
export const chatHeadersSchema = z.looseObject({
  'x-on-disconnect': z
    .string()
    .transform((v) => v.trim().toLowerCase())
    .pipe(z.enum(['abort', 'continue'], { error: 'must be abort or continue' }))
    .optional(),
});
