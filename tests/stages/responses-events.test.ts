import { describe, expect, it } from 'vitest';
import { asStream } from '../../app/streaming/stages/stage.js';
import { ResponsesEventsStage } from '../../app/streaming/stages/responses-events.js';
import { responseJson, type ResponseBase } from '../../app/responses/object.js';
import { through } from './helpers.js';

const base: ResponseBase = { id: 'resp_x', model: 'm', instructions: null, previousResponseId: null, params: {}, metadata: {}, background: false, createdAt: new Date(0), store: false };
const chunk = (delta: object, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const parse = (text: string) =>
  text
    .split('\n\n')
    .filter(Boolean)
    .map((b) => JSON.parse(b.split('\n')[1]!.slice(6)) as { type: string; sequence_number: number; delta?: string; item?: { id: string } });

/** Events for these upstream chunks, begin to finish, as the client gets them. */
async function run(chunks: string[], how: 'completed' | 'upstream_error' = 'completed') {
  const stage = new ResponsesEventsStage({ itemId: 'm1' });
  const begun = new TextDecoder().decode(stage.begin(responseJson(base, null)));
  const { text } = await through(asStream(stage), chunks);
  const answer = stage.answer(how);
  const end = new TextDecoder().decode(stage.finish(responseJson(base, answer)));
  return parse(begun + text.join('') + end);
}

describe('the Responses events stage', () => {
  it('turns text deltas into one message item, numbered from 0, in OpenAI order', async () => {
    const events = await run([chunk({ role: 'assistant', content: '' }), chunk({ content: 'Hel' }) + chunk({ content: 'lo' }), chunk({}, 'stop'), 'data: [DONE]\n\n']);
    expect(events.map((e) => e.type)).toEqual([
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.filter((e) => e.delta).map((e) => e.delta)).toEqual(['Hel', 'lo']);
  });

  it('closes the text before a function call, and names the call item after the answer', async () => {
    const call = (args: string, first = false) => chunk({ tool_calls: [{ index: 0, ...(first && { id: 'call_1', type: 'function' }), function: { ...(first && { name: 'f' }), arguments: args } }] });
    const events = await run([chunk({ content: 'Let me look.' }), call('', true), call('{"a"'), call(':1}'), chunk({}, 'tool_calls')]);
    expect(events.map((e) => e.type).slice(2)).toEqual([
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.delta',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ]);
    expect(events.filter((e) => e.type === 'response.output_item.done').map((e) => e.item!.id)).toEqual(['m1', 'fc_m1_0']);
  });

  it('ends with response.failed when the stream ends in error, and an empty good answer still has its message item', async () => {
    const failed = await run([chunk({ content: 'par' }), 'data: {"error":{"message":"boom"}}\n\n'], 'upstream_error');
    expect(failed.at(-1)!.type).toBe('response.failed');
    const empty = await run([chunk({}, 'stop')]);
    expect(empty.map((e) => e.type).slice(2)).toEqual([
      'response.output_item.added',
      'response.content_part.added',
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
  });
});
