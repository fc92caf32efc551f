import type { Message } from '../../db/store.js';
import { errorBody } from '../errors.js';

/**
 * A recorded answer given again, for a retried chat completion (Idempotency-Key): as OpenAI's
 * JSON, or as a stream of chunks, built from the stored message. The upstream's own chunk ids and
 * timings are not stored: the replay carries `chatcmpl-<message id>` and the answer's time.
 */

export interface ReplayOptions {
  model: string;
  /** The request asked for usage in the stream (`stream_options.include_usage`). */
  includeUsage: boolean;
}

const toolCallsOf = (m: Message) => (Array.isArray(m.toolCalls) && m.toolCalls.length ? m.toolCalls : null);

function usageOf(m: Message) {
  if (m.tokensIn == null && m.tokensOut == null) return null;
  return { prompt_tokens: m.tokensIn ?? 0, completion_tokens: m.tokensOut ?? 0, total_tokens: (m.tokensIn ?? 0) + (m.tokensOut ?? 0) };
}

/** A non-streaming answer, as `chat.completion` JSON. */
export function completionJson(m: Message, { model }: Pick<ReplayOptions, 'model'>) {
  const toolCalls = toolCallsOf(m);
  return {
    id: `chatcmpl-${m.id}`,
    object: 'chat.completion' as const,
    created: Math.floor(m.createdAt.getTime() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant' as const,
          content: toolCalls && !m.content ? null : m.content,
          refusal: null,
          ...(toolCalls && { tool_calls: toolCalls }),
          ...(m.functionCall != null && { function_call: m.functionCall }),
        },
        finish_reason: m.finishReason,
      },
    ],
    usage: usageOf(m),
  };
}

/**
 * A streamed answer as SSE: the role, the text in one chunk, the tool calls, the finish reason,
 * the usage when asked for, then `[DONE]`. An answer that ended in error (the upstream failed,
 * the first client went away) ends with an error event instead, as the first stream did.
 */
export function completionSse(m: Message, { model, includeUsage }: ReplayOptions): string {
  const base = { id: `chatcmpl-${m.id}`, object: 'chat.completion.chunk', created: Math.floor(m.createdAt.getTime() / 1000), model };
  const chunk = (delta: object, finishReason: string | null = null) => `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta, finish_reason: finishReason }] })}\n\n`;
  let out = chunk({ role: 'assistant', content: '' });
  if (m.content) out += chunk({ content: m.content });
  const toolCalls = toolCallsOf(m);
  if (toolCalls) out += chunk({ tool_calls: toolCalls.map((call, index) => ({ index, ...(call as object) })) });
  if (m.status === 'error') {
    const message = `The first request with this Idempotency-Key ended before its answer was complete (${m.finishReason ?? 'error'}).`;
    return out + `data: ${JSON.stringify(errorBody(message, 'upstream_error', m.finishReason ?? 'upstream_error'))}\n\n`;
  }
  out += chunk({}, m.finishReason);
  const usage = usageOf(m);
  if (includeUsage && usage) out += `data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`;
  return out + 'data: [DONE]\n\n';
}
