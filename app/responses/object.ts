import type { Json, JsonObject, Message, ResponseRecord, StringMap } from '../../db/store.js';
import { errorEventData } from '../streaming/relay.js';
import type { CreateResponseRequest } from './schemas.js';

/*
 * The response object (OpenAI's `Response`), built from what was recorded: the response record
 * (the request's parameters) and its answer, the assistant message. Status, output and usage are
 * read from the answer, so a response is `completed` exactly when its answer's end is committed,
 * and a crash (the answer closed as `interrupted` by the sweep) reads as `failed`.
 */

export type ResponseStatus = 'queued' | 'in_progress' | 'completed' | 'incomplete' | 'failed' | 'cancelled';

/** What a response object says of its answer; a stored Message has it all. */
export type AnswerView = Pick<Message, 'id' | 'status' | 'content' | 'toolCalls' | 'finishReason' | 'tokensIn' | 'tokensOut' | 'updatedAt'>;

/** The request's side of a response: the record, or the same built for a response not stored. */
export type ResponseBase = Pick<ResponseRecord, 'id' | 'model' | 'instructions' | 'previousResponseId' | 'params' | 'metadata' | 'background' | 'createdAt'> & {
  store: boolean;
};

interface ToolCallJson {
  id?: unknown;
  function?: { name?: unknown; arguments?: unknown };
}
const str = (v: unknown) => (typeof v === 'string' ? v : '');
const seconds = (d: Date) => Math.floor(d.getTime() / 1000);

/** The function calls of an answer, as stored (holes left out). */
export const callsOf = (answer: Pick<Message, 'toolCalls'>): ToolCallJson[] =>
  Array.isArray(answer.toolCalls) ? (answer.toolCalls.filter((c) => c && typeof c === 'object') as ToolCallJson[]) : [];

/** The id of an answer's n-th function call item: the conversation items' form (app/routes/conversations/items.ts). */
export const callItemId = (messageId: string, n: number) => `fc_${messageId}_${n}`;

/** How a response stands, from its answer's status and finish reason. */
export function statusOf(answer: AnswerView | null, background: boolean): {
  status: ResponseStatus;
  error: { code: string; message: string } | null;
  incomplete: { reason: 'max_output_tokens' | 'content_filter' } | null;
} {
  if (!answer || answer.status === 'draft' || answer.status === 'streaming') {
    return { status: !answer && background ? 'queued' : 'in_progress', error: null, incomplete: null };
  }
  if (answer.status === 'final') {
    if (answer.finishReason === 'length') return { status: 'incomplete', error: null, incomplete: { reason: 'max_output_tokens' } };
    if (answer.finishReason === 'content_filter') return { status: 'incomplete', error: null, incomplete: { reason: 'content_filter' } };
    return { status: 'completed', error: null, incomplete: null };
  }
  if (answer.finishReason === 'cancelled') return { status: 'cancelled', error: null, incomplete: null };
  // The message the chat stream's client got for this end, as the response's error.
  const said = JSON.parse(errorEventData(answer.finishReason)) as { error: { message: string } };
  return { status: 'failed', error: { code: 'server_error', message: said.error.message }, incomplete: null };
}

/** The status an output item has while its response stands so. */
const itemStatus = (status: ResponseStatus) => (status === 'completed' ? 'completed' : status === 'in_progress' || status === 'queued' ? 'in_progress' : 'incomplete');

export function messageOutputItem(id: string, text: string, status: 'in_progress' | 'completed' | 'incomplete') {
  return {
    type: 'message' as const,
    id,
    status,
    role: 'assistant' as const,
    content: [{ type: 'output_text' as const, text, annotations: [] as Json[], logprobs: [] as Json[] }],
  };
}

export function callOutputItem(id: string, callId: string, name: string, args: string, status: 'in_progress' | 'completed' | 'incomplete') {
  return { type: 'function_call' as const, id, call_id: callId, name, arguments: args, status };
}

export type OutputItem = ReturnType<typeof messageOutputItem> | ReturnType<typeof callOutputItem>;

/**
 * An answer's output items: its text as a message item (none for an answer that only called
 * tools, or that has said nothing, unless it ended well), then one function_call item per call.
 */
export function outputOf(answer: AnswerView | null, status: ResponseStatus): OutputItem[] {
  if (!answer) return [];
  const calls = callsOf(answer);
  const items: OutputItem[] = [];
  const itemsStatus = itemStatus(status);
  // A stream that ended well with nothing said still had its (empty) message item.
  if (answer.content !== '' || (calls.length === 0 && answer.status === 'final')) items.push(messageOutputItem(answer.id, answer.content, itemsStatus));
  calls.forEach((c, n) => items.push(callOutputItem(callItemId(answer.id, n), str(c.id), str(c.function?.name), str(c.function?.arguments), itemsStatus)));
  return items;
}

export function usageOf(answer: AnswerView | null) {
  if (!answer || answer.tokensIn == null || answer.tokensOut == null) return null;
  return {
    input_tokens: answer.tokensIn,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: answer.tokensOut,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: answer.tokensIn + answer.tokensOut,
  };
}

/** The response object as it stands. `output` may be given (a stream's items as they were sent). */
export function responseJson(base: ResponseBase, answer: AnswerView | null, options: { status?: ResponseStatus; output?: OutputItem[] } = {}) {
  const derived = statusOf(answer, base.background);
  const status = options.status ?? derived.status;
  const p = base.params as Record<string, Json>;
  const ended = !['queued', 'in_progress'].includes(status);
  return {
    id: base.id,
    object: 'response' as const,
    created_at: seconds(base.createdAt),
    completed_at: status === 'completed' && answer ? seconds(answer.updatedAt) : null,
    status,
    background: base.background,
    error: ended ? derived.error : null,
    incomplete_details: ended ? derived.incomplete : null,
    instructions: base.instructions,
    max_output_tokens: (p.max_output_tokens as number | null | undefined) ?? null,
    metadata: base.metadata,
    model: base.model,
    output: options.output ?? outputOf(answer, status),
    parallel_tool_calls: (p.parallel_tool_calls as boolean | null | undefined) ?? true,
    previous_response_id: base.previousResponseId,
    conversation: typeof p.conversation === 'string' ? { id: p.conversation } : null,
    reasoning: { effort: (p.reasoning_effort as string | null | undefined) ?? null, summary: null },
    service_tier: (p.service_tier as string | null | undefined) ?? null,
    store: base.store,
    temperature: (p.temperature as number | null | undefined) ?? null,
    text: { format: (p.text_format as JsonObject | undefined) ?? { type: 'text' } },
    tool_choice: p.tool_choice ?? 'auto',
    tools: (p.tools as Json[] | undefined) ?? [],
    top_p: (p.top_p as number | null | undefined) ?? null,
    truncation: 'disabled' as const,
    usage: ended ? usageOf(answer) : null,
    user: (p.user as string | undefined) ?? null,
    safety_identifier: (p.safety_identifier as string | undefined) ?? null,
    prompt_cache_key: (p.prompt_cache_key as string | undefined) ?? null,
  };
}

export type ResponseJson = ReturnType<typeof responseJson>;

/** What the response object echoes of a request, kept as the record's params. */
export function echoedParams(request: CreateResponseRequest, conversationId: string | null): JsonObject {
  const params: JsonObject = {};
  const set = (key: string, value: unknown) => {
    if (value !== undefined && value !== null) params[key] = value as Json;
  };
  set('tools', (request.tools ?? []).map((t) => ({ type: 'function', name: t.name, description: t.description ?? null, parameters: t.parameters ?? null, strict: t.strict ?? true })));
  set('tool_choice', request.tool_choice);
  set('parallel_tool_calls', request.parallel_tool_calls);
  set('temperature', request.temperature);
  set('top_p', request.top_p);
  set('max_output_tokens', request.max_output_tokens);
  set('text_format', request.text?.format);
  set('reasoning_effort', request.reasoning?.effort);
  set('service_tier', request.service_tier);
  set('user', request.user);
  set('safety_identifier', request.safety_identifier);
  set('prompt_cache_key', request.prompt_cache_key);
  set('conversation', conversationId);
  return params;
}

/** The base of a response, from its record. */
export const baseOf = (record: ResponseRecord): ResponseBase => ({ ...record, store: true });

export const metadataOf = (request: CreateResponseRequest): StringMap => request.metadata ?? {};
