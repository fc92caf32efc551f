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
  })
  .loose();

export const chatRequestSchema = z
  .object({
    model: z.string().min(1, 'must not be empty').optional(),
    messages: z.array(chatMessageSchema).min(1, 'must contain at least one message'),
    stream: z.boolean().optional(),
    conversation_id: z.string().min(1).max(128).optional(),
  })
  .loose();

export type ChatMessage = z.infer<typeof chatMessageSchema>;
export type ChatRequest = z.infer<typeof chatRequestSchema>;

/** Fields this server consumes; they never reach the upstream. */
export const LOCAL_FIELDS = ['conversation_id'] as const;

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
