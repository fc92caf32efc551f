import type { Json, Message, Principal, Store } from '../../db/store.js';
import type { ChatMessage, ChatRequest } from '../chat/schemas.js';
import type { Config } from '../env.js';
import { ApiError } from '../errors.js';
import { parseItemId } from '../routes/conversations/items.js';
import { callsOf } from './object.js';
import type { CreateResponseRequest, InputItem } from './schemas.js';

/*
 * A Responses request as one chat-completions request: the history (a previous response's path,
 * or a conversation's active branch), then the new input, each input item made a chat message.
 * Consecutive assistant pieces (text, function calls) are one assistant message, as a chat
 * upstream expects them.
 */

/** One input item as a chat message is built from it. */
type Piece =
  | { kind: 'message'; role: 'user' | 'assistant' | 'system' | 'developer'; content: string | Json[] }
  | { kind: 'call'; callId: string; name: string; arguments: string }
  | { kind: 'output'; callId: string; output: string };

const str = (v: unknown) => (typeof v === 'string' ? v : '');

/** An input part as a chat-completions part. */
function chatPart(part: Extract<InputItem, { type: 'message' }>['content'][number] & object): Json {
  if (part.type === 'input_image') return { type: 'image_url', image_url: { url: part.image_url, detail: part.detail ?? 'auto' } };
  return { type: 'text', text: part.text };
}

function pieceOfItem(item: Exclude<InputItem, { type: 'item_reference' }>): Piece {
  switch (item.type) {
    case 'message': {
      if (typeof item.content === 'string') return { kind: 'message', role: item.role, content: item.content };
      // An assistant's text is plain text to a chat upstream.
      if (item.role === 'assistant') return { kind: 'message', role: 'assistant', content: item.content.map((p) => ('text' in p ? p.text : '')).join('') };
      return { kind: 'message', role: item.role, content: item.content.map(chatPart) };
    }
    case 'function_call':
      return { kind: 'call', callId: item.call_id, name: item.name, arguments: item.arguments };
    case 'function_call_output':
      return { kind: 'output', callId: item.call_id, output: typeof item.output === 'string' ? item.output : item.output.map((p) => p.text).join('') };
  }
}

/** A stored message's pieces: all of it, or the one item `n` names (0: its text, k: its k-th call). */
function piecesOfMessage(m: Message, n: number | null): Piece[] {
  if (m.role === 'tool') return [{ kind: 'output', callId: str((m.contentJson as { tool_call_id?: unknown } | null)?.tool_call_id), output: m.content }];
  if (m.role !== 'assistant') return [{ kind: 'message', role: m.role, content: Array.isArray(m.contentJson) ? m.contentJson : m.content }];
  const pieces: Piece[] = [];
  if ((n === null || n === 0) && m.content !== '') pieces.push({ kind: 'message', role: 'assistant', content: m.content });
  callsOf(m).forEach((c, k) => {
    if (n === null || n === k + 1) pieces.push({ kind: 'call', callId: str(c.id), name: str(c.function?.name), arguments: str(c.function?.arguments) });
  });
  return pieces;
}

/**
 * The request's input as pieces, item references looked up: each must name an item of a
 * conversation the caller may read (else 400 naming it, as OpenAI answers an unknown one).
 */
export async function resolveInput(request: CreateResponseRequest, store: Store | null, reader: Principal, maxItems: number): Promise<Piece[]> {
  const items: InputItem[] = request.input;
  if (items.length > maxItems) {
    throw new ApiError(400, 'invalid_request_error', `Invalid body 'input': at most ${maxItems} items per request (RESPONSES_MAX_INPUT_ITEMS); send fewer, or continue with previous_response_id.`, 'invalid_value', 'input');
  }
  const pieces: Piece[] = [];
  for (const [i, item] of items.entries()) {
    if (item.type !== 'item_reference') {
      pieces.push(pieceOfItem(item));
      continue;
    }
    const { messageId, n } = parseItemId(item.id);
    const message = store ? await store.getMessage(messageId) : null;
    const readable = message && (await store!.getConversation(reader, message.conversationId));
    const found = readable ? piecesOfMessage(message, n) : [];
    if (!found.length) {
      throw new ApiError(400, 'invalid_request_error', `Invalid body 'input.${i}.id': no item '${item.id}' in any of your conversations or responses.`, 'item_not_found', `input.${i}.id`);
    }
    pieces.push(...found);
  }
  return pieces;
}

/** Pieces as chat messages: an assistant's text and calls that follow each other make one message. */
export function chatMessagesOf(pieces: Piece[]): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const piece of pieces) {
    const last = out.at(-1);
    const open = last?.role === 'assistant' ? last : null;
    if (piece.kind === 'output') out.push({ role: 'tool', tool_call_id: piece.callId, content: piece.output });
    else if (piece.kind === 'call') {
      const call = { id: piece.callId, type: 'function', function: { name: piece.name, arguments: piece.arguments } };
      if (open) open.tool_calls = [...((open.tool_calls as unknown[] | undefined) ?? []), call];
      else out.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (piece.role === 'assistant' && open && !open.tool_calls) {
      open.content = `${str(open.content)}${str(piece.content)}`;
    } else out.push({ role: piece.role, content: piece.content as ChatMessage['content'] });
  }
  return out;
}

/** A stored path as the chat messages a continuation sends; answers that said nothing (failed at once) are left out. */
export function historyOf(path: Message[]): ChatMessage[] {
  const usable = path.filter((m) => !(m.role === 'assistant' && m.content === '' && callsOf(m).length === 0));
  return chatMessagesOf(usable.flatMap((m) => piecesOfMessage(m, null)));
}

/** The chat-completions request for a Responses request: history and input as messages, its parameters translated. */
export function chatRequestOf(request: CreateResponseRequest, messages: ChatMessage[], config: Config, { stream }: { stream: boolean }): ChatRequest {
  const chat: ChatRequest = {
    model: request.model ?? config.upstream.defaultModel,
    messages: request.instructions ? [{ role: 'system', content: request.instructions }, ...messages] : messages,
  };
  if (stream) Object.assign(chat, { stream: true, stream_options: { include_usage: true } });
  if (request.tools?.length) {
    chat.tools = request.tools.map((t) => ({
      type: 'function',
      function: { name: t.name, ...(t.description != null && { description: t.description }), ...(t.parameters != null && { parameters: t.parameters }), ...(t.strict != null && { strict: t.strict }) },
    }));
  }
  const choice = request.tool_choice;
  if (choice !== undefined) chat.tool_choice = typeof choice === 'string' ? choice : { type: 'function', function: { name: choice.name } };
  const copy = (from: keyof CreateResponseRequest, to: string = from) => {
    if (request[from] != null) chat[to] = request[from];
  };
  copy('parallel_tool_calls');
  copy('temperature');
  copy('top_p');
  copy('user');
  copy('safety_identifier');
  copy('prompt_cache_key');
  copy('service_tier');
  if (request.max_output_tokens != null) chat[config.chatLimits.maxOutputTokensField] = request.max_output_tokens;
  if (request.reasoning?.effort != null) chat.reasoning_effort = request.reasoning.effort;
  const format = request.text?.format;
  if (format?.type === 'json_object') chat.response_format = { type: 'json_object' };
  if (format?.type === 'json_schema') {
    chat.response_format = {
      type: 'json_schema',
      json_schema: { name: format.name, schema: format.schema, ...(format.description && { description: format.description }), ...(format.strict != null && { strict: format.strict }) },
    };
  }
  return chat;
}

/** The first user text of the input, for a new conversation's title. */
export function firstUserText(messages: ChatMessage[]): string | null {
  const first = messages.find((m) => m.role === 'user');
  if (!first) return null;
  const text = typeof first.content === 'string' ? first.content : (first.content ?? []).map((p) => str((p as { text?: unknown }).text)).join(' ');
  const clean = text.trim().replace(/\s+/g, ' ');
  if (!clean) return null;
  const chars = Array.from(clean);
  return chars.length > 80 ? `${chars.slice(0, 79).join('')}…` : clean;
}
