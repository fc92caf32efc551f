import { z } from 'zod';
import type { Json, Message, StoredChatCompletion } from '../../db/store.js';

/*
 * Stored chat completions as OpenAI shapes them, built from what was recorded: the completion
 * record (our id, the upstream's model, metadata) and its answer, the assistant message.
 */

/** OpenAI's finish reasons; an answer that did not finish keeps ours (client_abort, upstream_error…). */
const runningStatuses = new Set(['draft', 'streaming']);

const usageOf = (m: Message) =>
  m.tokensIn != null && m.tokensOut != null ? { prompt_tokens: m.tokensIn, completion_tokens: m.tokensOut, total_tokens: m.tokensIn + m.tokensOut } : null;

const toolCallsOf = (m: Message): Json[] | null => (Array.isArray(m.toolCalls) && m.toolCalls.length ? m.toolCalls : null);

/** An assistant message's text as OpenAI gives it: null for an answer that only called tools. */
const answerText = (m: Message) => (m.content === '' && (toolCallsOf(m) || m.functionCall) ? null : m.content);

/** `chat.completion`, as it stands: a running stream shows the text so far and no finish_reason. */
export function completionJson({ record, message }: StoredChatCompletion) {
  const toolCalls = toolCallsOf(message);
  return {
    id: record.id,
    object: 'chat.completion' as const,
    created: Math.floor(record.createdAt.getTime() / 1000),
    model: record.model ?? '',
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant' as const,
          content: answerText(message),
          refusal: null,
          ...(toolCalls && { tool_calls: toolCalls }),
          ...(message.functionCall != null && { function_call: message.functionCall }),
          annotations: [],
        },
        finish_reason: runningStatuses.has(message.status) ? null : message.finishReason,
        logprobs: null,
      },
    ],
    usage: usageOf(message),
    metadata: record.metadata,
  };
}

/**
 * A message that led to a completion, as OpenAI's `messages.list` gives it (a
 * ChatCompletionStoreMessage): the text in `content`, multimodal parts in `content_parts`.
 */
export function storeMessageJson(m: Message) {
  const parts = Array.isArray(m.contentJson) ? m.contentJson : null;
  const base = { id: m.id, role: m.role, content: m.content as string | null, name: null, content_parts: parts };
  if (m.role === 'assistant') {
    const toolCalls = toolCallsOf(m);
    return {
      ...base,
      content: answerText(m),
      refusal: null,
      ...(toolCalls && { tool_calls: toolCalls }),
      ...(m.functionCall != null && { function_call: m.functionCall }),
    };
  }
  if (m.role === 'tool') {
    const callId = (m.contentJson as { tool_call_id?: unknown } | null)?.tool_call_id;
    return { ...base, tool_call_id: typeof callId === 'string' ? callId : null };
  }
  return base;
}

// The shapes, for the API reference and the tests that hold the answers to them.
const toolCallSchema = z.object({ id: z.string(), type: z.literal('function'), function: z.object({ name: z.string(), arguments: z.string() }) }).loose();
const functionCallSchema = z.object({ name: z.string(), arguments: z.string() }).loose();

export const chatCompletionSchema = z
  .object({
    id: z.string().describe("Ours (chatcmpl-…); the upstream's id finds it too on GET"),
    object: z.literal('chat.completion'),
    created: z.number().int().describe('Unix seconds'),
    model: z.string(),
    choices: z.array(
      z.object({
        index: z.number().int(),
        message: z.object({
          role: z.literal('assistant'),
          content: z.string().nullable(),
          refusal: z.null(),
          tool_calls: z.array(toolCallSchema).optional(),
          function_call: functionCallSchema.optional(),
          annotations: z.array(z.unknown()),
        }),
        finish_reason: z
          .string()
          .nullable()
          .describe("OpenAI's (stop, length, tool_calls, content_filter, function_call); null while streaming; ours when the answer did not finish"),
        logprobs: z.null(),
      }),
    ),
    usage: z.object({ prompt_tokens: z.number().int(), completion_tokens: z.number().int(), total_tokens: z.number().int() }).nullable(),
    metadata: z.record(z.string(), z.string()),
  })
  .meta({ id: 'StoredChatCompletion' });

export const storeMessageSchema = z
  .object({
    id: z.string(),
    role: z.enum(['system', 'user', 'assistant', 'tool']),
    content: z.string().nullable(),
    name: z.null(),
    content_parts: z.array(z.object({ type: z.string() }).loose()).nullable(),
    refusal: z.null().optional(),
    tool_calls: z.array(toolCallSchema).optional(),
    function_call: functionCallSchema.optional(),
    tool_call_id: z.string().nullable().optional(),
  })
  .meta({ id: 'ChatCompletionStoreMessage' });
