import { z } from 'zod';
import type { Json, Message, MessageStatus, NewMessage } from '../../../db/store.js';
import { toNewMessage } from '../../messages.js';

/*
 * A conversation's messages as OpenAI's conversation items: a message is a `message` item, an
 * assistant's tool calls are `function_call` items (after its text, when it has some), a tool
 * result is a `function_call_output` item. Item ids are the message's id, and
 * `fc_<message id>_<n>` for its n-th call, so every item is found again from its id alone.
 */

type Status = 'completed' | 'in_progress' | 'incomplete';
const statusOf = (s: MessageStatus): Status => (s === 'final' ? 'completed' : s === 'error' ? 'incomplete' : 'in_progress');

interface ToolCallJson {
  id?: unknown;
  function?: { name?: unknown; arguments?: unknown };
}
const text = (v: unknown) => (typeof v === 'string' ? v : '');
const toolCallsOf = (m: Message): ToolCallJson[] => (Array.isArray(m.toolCalls) ? (m.toolCalls.filter((c) => c && typeof c === 'object') as ToolCallJson[]) : []);

/** A stored content part as an OpenAI input part; parts it has no form for are left out. */
function inputPart(part: Json) {
  const p = part as { type?: unknown; text?: unknown; image_url?: { url?: unknown; detail?: unknown } };
  if (p?.type === 'text') return { type: 'input_text' as const, text: text(p.text) };
  if (p?.type === 'image_url') {
    const detail = p.image_url?.detail;
    return { type: 'input_image' as const, image_url: text(p.image_url?.url) || null, file_id: null, detail: detail === 'low' || detail === 'high' ? detail : 'auto' };
  }
  return null;
}

function messageItem(m: Message) {
  const content =
    m.role === 'assistant'
      ? [{ type: 'output_text' as const, text: m.content, annotations: [] }]
      : Array.isArray(m.contentJson)
        ? m.contentJson.map(inputPart).filter((p) => p !== null)
        : [{ type: 'input_text' as const, text: m.content }];
  return { type: 'message' as const, id: m.id, role: m.role as 'system' | 'user' | 'assistant', status: statusOf(m.status), content };
}

export type ConversationItem =
  | ReturnType<typeof messageItem>
  | ReturnType<typeof functionCallItem>
  | { type: 'function_call_output'; id: string; call_id: string; output: string; status: Status };

/** An item and its place in the conversation: its message's seq, then its rank in the message. */
export interface PlacedItem {
  item: ConversationItem;
  place: readonly [number, number];
}

/** A message's items, in order. */
export function itemsOf(m: Message): PlacedItem[] {
  const status = statusOf(m.status);
  if (m.role === 'tool') {
    const callId = (m.contentJson as { tool_call_id?: unknown } | null)?.tool_call_id;
    return [{ item: { type: 'function_call_output', id: m.id, call_id: text(callId), output: m.content, status }, place: [m.seq, 0] }];
  }
  const calls = [...toolCallsOf(m).map((c) => ({ callId: text(c.id), fn: c.function })), ...(m.functionCall ? [{ callId: '', fn: m.functionCall as ToolCallJson['function'] }] : [])];
  const items: PlacedItem[] = [];
  // An answer that only called tools has no message item; any other message always has one.
  if (m.role !== 'assistant' || m.content !== '' || calls.length === 0) items.push({ item: messageItem(m), place: [m.seq, 0] });
  calls.forEach((c, n) => items.push({ item: functionCallItem(m, n, c.callId, c.fn, status), place: [m.seq, n + 1] }));
  return items;
}

function functionCallItem(m: Message, n: number, callId: string, fn: ToolCallJson['function'], status: Status) {
  return { type: 'function_call' as const, id: `fc_${m.id}_${n}`, call_id: callId, name: text(fn?.name), arguments: text(fn?.arguments), status };
}

/** Which message an item id names, and its place among the message's items. */
export function parseItemId(id: string): { messageId: string; n: number } {
  const call = /^fc_(.+)_(\d{1,4})$/.exec(id);
  return call ? { messageId: call[1]!, n: Number(call[2]) + 1 } : { messageId: id, n: 0 };
}

// What may be added: messages, function calls and their outputs, as the Responses API writes them.
const textPart = z.object({ type: z.enum(['input_text', 'output_text']), text: z.string() }).loose();
const imagePart = z
  .object({ type: z.literal('input_image'), image_url: z.string().max(65_536).nullable().optional(), detail: z.enum(['low', 'high', 'auto']).optional() })
  .loose();
const messageInput = z.object({
  type: z.literal('message'),
  role: z.enum(['user', 'assistant', 'system', 'developer'], { error: "must be 'user', 'assistant', 'system' or 'developer'" }),
  content: z.union([z.string(), z.array(z.discriminatedUnion('type', [textPart, imagePart])).min(1)]),
});
const functionCallInput = z.object({
  type: z.literal('function_call'),
  call_id: z.string().min(1).max(256),
  name: z.string().min(1).max(256),
  arguments: z.string(),
});
const functionCallOutputInput = z.object({
  type: z.literal('function_call_output'),
  call_id: z.string().min(1).max(256),
  output: z.union([z.string(), z.array(textPart)]),
});

/** One input item; a message may leave out `type`, as OpenAI's easy input messages do. */
export const itemInputSchema = z.preprocess(
  (v) => (v && typeof v === 'object' && !Array.isArray(v) && !('type' in v) ? { ...v, type: 'message' } : v),
  z.discriminatedUnion('type', [messageInput, functionCallInput, functionCallOutputInput], {
    error: "must be an item of type 'message', 'function_call' or 'function_call_output'",
  }),
);
export const ITEMS_PER_REQUEST = 20;
export const itemInputsSchema = z.array(itemInputSchema).min(1, 'must hold at least one item').max(ITEMS_PER_REQUEST, `must hold at most ${ITEMS_PER_REQUEST} items`);
export type ItemInput = z.infer<typeof itemInputSchema>;

/** The message an input item is stored as. */
export function itemToMessage(item: ItemInput): NewMessage {
  switch (item.type) {
    case 'function_call':
      return { role: 'assistant', status: 'final', content: '', toolCalls: [{ id: item.call_id, type: 'function', function: { name: item.name, arguments: item.arguments } }] };
    case 'function_call_output': {
      const output = typeof item.output === 'string' ? item.output : item.output.map((p) => p.text).join('');
      return toNewMessage('tool', output, { contentJson: { tool_call_id: item.call_id } });
    }
    case 'message': {
      const role = item.role === 'developer' ? 'system' : item.role;
      if (typeof item.content === 'string') return toNewMessage(role, item.content);
      // Kept as chat completion parts, as the proxy keeps them: one form for every reader.
      const parts = item.content.map((p) =>
        p.type === 'input_image' ? { type: 'image_url', image_url: { url: p.image_url ?? '', detail: p.detail ?? 'auto' } } : { type: 'text', text: p.text },
      );
      return role === 'assistant' ? toNewMessage(role, parts.map((p) => ('text' in p ? p.text : '')).join('')) : toNewMessage(role, parts);
    }
  }
}

// The shapes, for the API reference and the tests that hold the answers to them.
const statusSchema = z.enum(['completed', 'in_progress', 'incomplete']);
export const conversationItemSchema = z
  .discriminatedUnion('type', [
    z.object({
      type: z.literal('message'),
      id: z.string(),
      role: z.enum(['system', 'user', 'assistant']),
      status: statusSchema,
      content: z.array(
        z.union([
          z.object({ type: z.literal('input_text'), text: z.string() }),
          z.object({ type: z.literal('output_text'), text: z.string(), annotations: z.array(z.unknown()) }),
          z.object({ type: z.literal('input_image'), image_url: z.string().nullable(), file_id: z.null(), detail: z.enum(['low', 'high', 'auto']) }),
        ]),
      ),
    }),
    z.object({ type: z.literal('function_call'), id: z.string(), call_id: z.string(), name: z.string(), arguments: z.string(), status: statusSchema }),
    z.object({ type: z.literal('function_call_output'), id: z.string(), call_id: z.string(), output: z.string(), status: statusSchema }),
  ])
  .meta({ id: 'ConversationItem' });
