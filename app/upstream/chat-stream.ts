import { createParser } from 'eventsource-parser';
import type { Json } from '../../db/store.js';

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

/** What has been learned from a chat-completion stream so far (choice 0 only). */
export interface ChatStreamState {
  id: string | null;
  model: string | null;
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

export interface ChatStreamReader {
  readonly state: ChatStreamState;
  /** Feed raw bytes exactly as they arrived; splits anywhere (mid-event, mid-UTF-8) are fine. */
  push(bytes: Uint8Array): void;
  /**
   * No more bytes. `complete`: the upstream finished, so a last event missing its blank line
   * still counts (the client gets those bytes too). Otherwise the stream was cut, and a half
   * event, which the client never sees, is dropped.
   */
  end(complete: boolean): void;
}

export interface ChatStreamCallbacks {
  /** Content text of choice 0, in order. */
  onText?(text: string): void;
  /** An event that could not be read; the stream goes on regardless. */
  onSkipped?(reason: string, data: string): void;
}

/**
 * Reads an OpenAI chat-completion SSE stream on the side: the bytes themselves are never
 * changed here. Event framing is eventsource-parser's job; this only interprets the events.
 */
export function createChatStreamReader(callbacks: ChatStreamCallbacks = {}): ChatStreamReader {
  const state: ChatStreamState = {
    id: null,
    model: null,
    finishReason: null,
    usage: null,
    toolCalls: [],
    done: false,
    error: null,
    skipped: 0,
  };
  const decoder = new TextDecoder();
  const skip = (reason: string, data: string) => {
    state.skipped++;
    callbacks.onSkipped?.(reason, data);
  };

  const parser = createParser({
    onEvent(event) {
      const data = event.data;
      if (data === '[DONE]') {
        state.done = true;
        return;
      }
      let chunk: any;
      try {
        chunk = JSON.parse(data);
      } catch {
        skip('not JSON', data);
        return;
      }
      if (!chunk || typeof chunk !== 'object') return skip('not an object', data);
      if (chunk.error) {
        state.error = { message: String(chunk.error.message ?? 'upstream error') };
        return;
      }
      if (typeof chunk.id === 'string') state.id ??= chunk.id;
      if (typeof chunk.model === 'string') state.model ??= chunk.model;
      if (chunk.usage && typeof chunk.usage === 'object') state.usage = chunk.usage;
      const choices = chunk.choices;
      if (!Array.isArray(choices)) return chunk.usage ? undefined : skip('no choices', data);
      for (const choice of choices) {
        if (!choice || (choice.index ?? 0) !== 0) continue;
        if (typeof choice.finish_reason === 'string') state.finishReason = choice.finish_reason;
        const delta = choice.delta;
        if (!delta) continue;
        if (typeof delta.content === 'string' && delta.content) {
          callbacks.onText?.(delta.content);
        }
        if (Array.isArray(delta.tool_calls)) mergeToolCalls(state.toolCalls, delta.tool_calls);
      }
    },
    onError(err) {
      // The parser's message quotes the start of the line, which may be the answer's text.
      skip(`unreadable line (${err.type})`, '');
    },
  });

  return {
    state,
    push(bytes) {
      parser.feed(decoder.decode(bytes, { stream: true }));
    },
    end(complete) {
      const rest = decoder.decode();
      if (!complete) return parser.reset();
      if (rest) parser.feed(rest);
      parser.feed('\n\n');
    },
  };
}

/** Tool-call deltas arrive in pieces keyed by index; arguments are concatenated. */
function mergeToolCalls(into: ToolCall[], deltas: any[]): void {
  for (const d of deltas) {
    const index = typeof d?.index === 'number' ? d.index : into.length;
    const call = (into[index] ??= { function: { name: '', arguments: '' } });
    if (typeof d.id === 'string') call.id = d.id;
    if (typeof d.type === 'string') call.type = d.type;
    if (typeof d.function?.name === 'string') call.function.name += d.function.name;
    if (typeof d.function?.arguments === 'string') call.function.arguments += d.function.arguments;
  }
}

export function toolCallsJson(calls: ToolCall[]): Json | null {
  const present = calls.filter(Boolean);
  return present.length ? (present as unknown as Json) : null;
}
