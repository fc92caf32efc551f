import { accumulate, emptyStreamState, outcomeOf, parseChatChunk, toolCallsJson, type ChatEvent, type ChatStreamState } from '../../chat/stream.js';
import type { ResponseEvent } from '../../../db/store.js';
import { callItemId, callOutputItem, messageOutputItem, type AnswerView, type OutputItem, type ResponseJson, type ResponseStatus } from '../../responses/object.js';
import type { StreamEnd } from '../relay.js';
import { readEvents } from './sse.js';
import type { Stage, StageOutput } from './stage.js';

/*
 * Chat-completion chunks in, Responses API events out, in the order OpenAI sends them (and the
 * openai SDK's accumulator insists on): response.created and response.in_progress first
 * (begin), then per output item output_item.added, for text content_part.added, deltas,
 * output_text.done, content_part.done, output_item.done, for a function call its
 * function_call_arguments deltas and .done, and last the response's end (finish). One item is
 * open at a time: a function call closes the text before it. Each event has its
 * sequence_number, from 0.
 */

const encoder = new TextEncoder();

interface OpenItem {
  kind: 'message' | 'call';
  id: string;
  outputIndex: number;
  /** For a call: its index among the upstream's tool calls. */
  callIndex: number;
  text: string;
  done: boolean;
}

export interface ResponsesEventsOptions {
  /** The answer's id: its message item's id, and the stem of its function call items' ids. */
  itemId: string;
  /** Hears every event as it is made (the background event log). */
  onEvent?(event: ResponseEvent): void;
}

/** The event a response ends with, by its status. */
const terminalType = (status: ResponseStatus) =>
  status === 'completed' ? 'response.completed' : status === 'incomplete' ? 'response.incomplete' : 'response.failed';

export const isTerminalEvent = (type: string) => type === 'response.completed' || type === 'response.incomplete' || type === 'response.failed';

export class ResponsesEventsStage implements Stage {
  private seq = 0;
  private state: ChatStreamState = emptyStreamState;
  private readonly items: OpenItem[] = [];
  private current: OpenItem | null = null;
  private readonly decoder = new TextDecoder();
  private pending = '';

  constructor(private readonly options: ResponsesEventsOptions) {}

  /** The first two events: the response as it starts. */
  begin(response: ResponseJson): Uint8Array {
    this.emit('response.created', { response });
    this.emit('response.in_progress', { response: { ...response, status: 'in_progress' } });
    return this.take();
  }

  transform(chunk: Uint8Array, out: StageOutput): void {
    // The relay hands over whole events: their boundaries are ASCII, so no character is split.
    readEvents(this.decoder.decode(chunk), ({ data }) => this.read(parseChatChunk(data)));
    if (this.pending) out.enqueue(this.take());
  }

  /** What the upstream said, for an answer that is not recorded: as the recorder would record it. */
  answer(how: StreamEnd): AnswerView {
    const outcome = outcomeOf(how, this.state);
    const usage = this.state.usage;
    return {
      id: this.options.itemId,
      status: outcome.status,
      content: this.state.text,
      toolCalls: toolCallsJson(this.state.toolCalls),
      finishReason: outcome.finishReason,
      tokensIn: usage?.prompt_tokens ?? null,
      tokensOut: usage?.completion_tokens ?? null,
      updatedAt: new Date(),
    };
  }

  /** The output items as they were sent, for a response that is not recorded. */
  output(status: ResponseStatus): OutputItem[] {
    const itemStatus = status === 'completed' ? 'completed' : 'incomplete';
    return this.items.map((item) => this.itemJson(item, itemStatus));
  }

  /**
   * The last events: the open item closed, then the response's end. An answer that ended well
   * with nothing said still has its (empty) message item, as its stored form does.
   */
  finish(response: ResponseJson): Uint8Array {
    const ok = response.status === 'completed' || response.status === 'incomplete';
    if (ok && this.items.length === 0) this.openMessage();
    this.close(response.status === 'completed' ? 'completed' : 'incomplete');
    this.emit(terminalType(response.status), { response });
    return this.take();
  }

  private read(event: ChatEvent): void {
    this.state = accumulate(this.state, event);
    if (event.kind !== 'chunk') return;
    if (event.content) {
      if (this.current?.kind !== 'message') this.openMessage();
      const item = this.current!;
      item.text += event.content;
      this.emit('response.output_text.delta', { item_id: item.id, output_index: item.outputIndex, content_index: 0, delta: event.content, logprobs: [] });
    }
    for (const delta of (event.toolCalls ?? []) as { index?: unknown; id?: unknown; function?: { name?: unknown; arguments?: unknown } }[]) {
      const callIndex = typeof delta?.index === 'number' ? delta.index : this.items.filter((i) => i.kind === 'call').length;
      let item = this.items.find((i) => i.kind === 'call' && i.callIndex === callIndex);
      if (!item) item = this.openCall(callIndex, typeof delta?.id === 'string' ? delta.id : '', typeof delta?.function?.name === 'string' ? delta.function.name : '');
      const args = delta?.function?.arguments;
      if (typeof args === 'string' && args) {
        item.text += args;
        this.emit('response.function_call_arguments.delta', { item_id: item.id, output_index: item.outputIndex, delta: args });
      }
    }
  }

  private openMessage(): void {
    this.close('completed');
    const item: OpenItem = { kind: 'message', id: this.options.itemId, outputIndex: this.items.length, callIndex: -1, text: '', done: false };
    this.items.push(item);
    this.current = item;
    this.emit('response.output_item.added', { output_index: item.outputIndex, item: messageOutputItem(item.id, '', 'in_progress') });
    const part = messageOutputItem(item.id, '', 'in_progress').content[0];
    this.emit('response.content_part.added', { item_id: item.id, output_index: item.outputIndex, content_index: 0, part });
  }

  private openCall(callIndex: number, callId: string, name: string): OpenItem {
    this.close('completed');
    const item: OpenItem = { kind: 'call', id: callItemId(this.options.itemId, callIndex), outputIndex: this.items.length, callIndex, text: '', done: false };
    this.items.push(item);
    this.current = item;
    this.emit('response.output_item.added', { output_index: item.outputIndex, item: callOutputItem(item.id, callId, name, '', 'in_progress') });
    return item;
  }

  private itemJson(item: OpenItem, status: 'completed' | 'incomplete'): OutputItem {
    if (item.kind === 'message') return messageOutputItem(item.id, item.text, status);
    const call = this.state.toolCalls[item.callIndex];
    return callOutputItem(item.id, call?.id ?? '', call?.function.name ?? '', item.text, status);
  }

  private close(status: 'completed' | 'incomplete'): void {
    const item = this.current;
    this.current = null;
    if (!item || item.done) return;
    item.done = true;
    const json = this.itemJson(item, status);
    const at = { item_id: item.id, output_index: item.outputIndex };
    if (json.type === 'message') {
      this.emit('response.output_text.done', { ...at, content_index: 0, text: item.text, logprobs: [] });
      this.emit('response.content_part.done', { ...at, content_index: 0, part: json.content[0] });
    } else {
      this.emit('response.function_call_arguments.done', { ...at, name: json.name, arguments: item.text });
    }
    this.emit('response.output_item.done', { output_index: item.outputIndex, item: json });
  }

  private emit(type: string, body: Record<string, unknown>): void {
    const seq = this.seq++;
    const data = JSON.stringify({ type, sequence_number: seq, ...body });
    this.options.onEvent?.({ seq, data });
    this.pending += `event: ${type}\ndata: ${data}\n\n`;
  }

  private take(): Uint8Array {
    const bytes = encoder.encode(this.pending);
    this.pending = '';
    return bytes;
  }
}
