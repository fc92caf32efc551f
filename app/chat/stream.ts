import type { Json } from '../../db/store.js';
import type { StreamEnd } from '../streaming/relay.js';
import type { TurnOutcome } from '../streaming/recorder.js';

/** Token usage as the upstream reports it. */
export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export interface ToolCall {
  id?: string;
  type?: string;
  function: { name: string; arguments: string };
}

/** What one SSE event's data says, read as a chat-completion chunk. */
export type ChatEvent =
  | { kind: 'done' }
  | { kind: 'error'; message: string }
  | { kind: 'skipped'; reason: string }
  | { kind: 'chunk'; id?: string; model?: string; usage?: Usage; finishReason?: string; content?: string; toolCalls?: unknown[] };

/** Reads one event's data. Choice 0 only: the one a conversation records. */
export function parseChatChunk(data: string): ChatEvent {
  if (data === '[DONE]') return { kind: 'done' };
  let chunk: any;
  try {
    chunk = JSON.parse(data);
  } catch {
    return { kind: 'skipped', reason: 'not JSON' };
  }
  if (!chunk || typeof chunk !== 'object') return { kind: 'skipped', reason: 'not an object' };
  if (chunk.error) return { kind: 'error', message: String(chunk.error.message ?? 'upstream error') };
  const event: ChatEvent & { kind: 'chunk' } = { kind: 'chunk' };
  if (typeof chunk.id === 'string') event.id = chunk.id;
  if (typeof chunk.model === 'string') event.model = chunk.model;
  if (chunk.usage && typeof chunk.usage === 'object') event.usage = chunk.usage;
  if (!Array.isArray(chunk.choices)) return event.usage ? event : { kind: 'skipped', reason: 'no choices' };
  for (const choice of chunk.choices) {
    if (!choice || (choice.index ?? 0) !== 0) continue;
    if (typeof choice.finish_reason === 'string') event.finishReason = choice.finish_reason;
    const delta = choice.delta;
    if (typeof delta?.content === 'string' && delta.content) event.content = (event.content ?? '') + delta.content;
    if (Array.isArray(delta?.tool_calls)) event.toolCalls = [...(event.toolCalls ?? []), ...delta.tool_calls];
  }
  return event;
}

/** What has been learned from a chat-completion stream so far (choice 0 only). */
export interface ChatStreamState {
  id: string | null;
  model: string | null;
  /** The answer's text so far. */
  text: string;
  finishReason: string | null;
  usage: Usage | null;
  toolCalls: ToolCall[];
  /** The upstream sent `data: [DONE]`. */
  done: boolean;
  /** An `{"error": …}` event the upstream sent inside the stream. */
  error: { message: string } | null;
  /** Events that were not JSON, or not a chat-completion chunk. */
  skipped: number;
}

export const emptyStreamState: ChatStreamState = Object.freeze({
  id: null,
  model: null,
  text: '',
  finishReason: null,
  usage: null,
  toolCalls: [],
  done: false,
  error: null,
  skipped: 0,
}) as ChatStreamState;

/** Folds one event into the state; the state given is never changed. */
export function accumulate(state: ChatStreamState, event: ChatEvent): ChatStreamState {
  switch (event.kind) {
    case 'done':
      return { ...state, done: true };
    case 'error':
      return { ...state, error: { message: event.message } };
    case 'skipped':
      return { ...state, skipped: state.skipped + 1 };
    case 'chunk':
      return {
        ...state,
        id: state.id ?? event.id ?? null,
        model: state.model ?? event.model ?? null,
        usage: event.usage ?? state.usage,
        finishReason: event.finishReason ?? state.finishReason,
        text: event.content ? state.text + event.content : state.text,
        toolCalls: event.toolCalls ? mergeToolCalls(state.toolCalls, event.toolCalls) : state.toolCalls,
      };
  }
}

/** Tool-call deltas arrive in pieces keyed by index; names and arguments are concatenated. */
function mergeToolCalls(calls: ToolCall[], deltas: any[]): ToolCall[] {
  const into = calls.slice();
  for (const d of deltas) {
    const index = typeof d?.index === 'number' ? d.index : into.length;
    const before = into[index];
    const call: ToolCall = before ? { ...before, function: { ...before.function } } : { function: { name: '', arguments: '' } };
    if (typeof d?.id === 'string') call.id = d.id;
    if (typeof d?.type === 'string') call.type = d.type;
    if (typeof d?.function?.name === 'string') call.function.name += d.function.name;
    if (typeof d?.function?.arguments === 'string') call.function.arguments += d.function.arguments;
    into[index] = call;
  }
  return into;
}

export function toolCallsJson(calls: ToolCall[]): Json | null {
  const present = calls.filter(Boolean);
  return present.length ? (present as unknown as Json) : null;
}

/**
 * How a relayed stream ends up recorded: `final` when the upstream finished properly ([DONE]
 * or a finish_reason, and no error event), an error naming why otherwise.
 */
export function outcomeOf(end: StreamEnd, state: ChatStreamState): Omit<TurnOutcome, 'tokensIn' | 'tokensOut' | 'tokensSource'> {
  const toolCalls = toolCallsJson(state.toolCalls);
  if (end !== 'completed') return { status: 'error', finishReason: end, toolCalls };
  if (state.error) return { status: 'error', finishReason: 'upstream_error', toolCalls };
  if (state.done || state.finishReason) return { status: 'final', finishReason: state.finishReason, toolCalls };
  return { status: 'error', finishReason: 'upstream_incomplete', toolCalls };
}
