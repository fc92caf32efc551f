import { describe, expect, it } from 'vitest';
import { accumulate, emptyStreamState, outcomeOf, parseChatChunk, type ChatEvent, type ChatStreamState } from '../app/chat/stream.js';

const chunk = (delta: object, extra: object = {}) => JSON.stringify({ id: 'c1', model: 'm', choices: [{ index: 0, delta, finish_reason: null }], ...extra });

describe('parseChatChunk', () => {
  it.each<[string, string, ChatEvent]>([
    ['[DONE]', '[DONE]', { kind: 'done' }],
    ['content', chunk({ content: 'hé' }), { kind: 'chunk', id: 'c1', model: 'm', content: 'hé' }],
    ['an empty delta', chunk({}), { kind: 'chunk', id: 'c1', model: 'm' }],
    ['finish_reason', JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), { kind: 'chunk', finishReason: 'stop' }],
    ['a usage-only chunk', JSON.stringify({ choices: [], usage: { prompt_tokens: 3 } }), { kind: 'chunk', usage: { prompt_tokens: 3 } }],
    ['usage without choices', JSON.stringify({ usage: { completion_tokens: 1 } }), { kind: 'chunk', usage: { completion_tokens: 1 } }],
    ['other choices are ignored', JSON.stringify({ choices: [{ index: 1, delta: { content: 'x' } }] }), { kind: 'chunk' }],
    ['tool-call deltas', chunk({ tool_calls: [{ index: 0, id: 't', function: { name: 'f', arguments: '{' } }] }), { kind: 'chunk', id: 'c1', model: 'm', toolCalls: [{ index: 0, id: 't', function: { name: 'f', arguments: '{' } }] }],
    ['an error event', JSON.stringify({ error: { message: 'overloaded' } }), { kind: 'error', message: 'overloaded' }],
    ['not JSON', '{"choices":', { kind: 'skipped', reason: 'not JSON' }],
    ['not an object', '42', { kind: 'skipped', reason: 'not an object' }],
    ['no choices', JSON.stringify({ id: 'x' }), { kind: 'skipped', reason: 'no choices' }],
  ])('%s', (_, data, event) => {
    expect(parseChatChunk(data)).toEqual(event);
  });
});

describe('accumulate', () => {
  const fold = (events: ChatEvent[]) => events.reduce(accumulate, emptyStreamState);
  it.each<[string, ChatEvent[], Partial<ChatStreamState>]>([
    ['text in order', [{ kind: 'chunk', content: 'a' }, { kind: 'chunk', content: 'bc' }], { text: 'abc' }],
    ['the first id and model', [{ kind: 'chunk', id: '1', model: 'm1' }, { kind: 'chunk', id: '2', model: 'm2' }], { id: '1', model: 'm1' }],
    ['the last finish_reason and usage', [{ kind: 'chunk', finishReason: 'length' }, { kind: 'chunk', usage: { prompt_tokens: 1 } }], { finishReason: 'length', usage: { prompt_tokens: 1 } }],
    ['done', [{ kind: 'done' }], { done: true }],
    ['skips counted', [{ kind: 'skipped', reason: 'x' }, { kind: 'skipped', reason: 'y' }], { skipped: 2 }],
    ['an error kept', [{ kind: 'error', message: 'boom' }], { error: { message: 'boom' } }],
    [
      'tool calls assembled by index',
      [
        { kind: 'chunk', toolCalls: [{ index: 0, id: 'a', type: 'function', function: { name: 'get_', arguments: '{"ci' } }] },
        { kind: 'chunk', toolCalls: [{ index: 1, id: 'b', function: { name: 'other', arguments: '' } }, { index: 0, function: { name: 'weather', arguments: 'ty":1}' } }] },
      ],
      {
        toolCalls: [
          { id: 'a', type: 'function', function: { name: 'get_weather', arguments: '{"city":1}' } },
          { id: 'b', function: { name: 'other', arguments: '' } },
        ],
      },
    ],
  ])('%s', (_, events, expected) => {
    expect(fold(events)).toMatchObject(expected);
  });

  it('never changes the state it is given', () => {
    const before = accumulate(emptyStreamState, { kind: 'chunk', content: 'a', toolCalls: [{ index: 0, function: { name: 'f', arguments: '' } }] });
    const copy = structuredClone(before);
    accumulate(before, { kind: 'chunk', content: 'b', toolCalls: [{ index: 0, function: { arguments: 'x' } }] });
    expect(before).toEqual(copy);
  });
});

describe('outcomeOf', () => {
  const state = (s: Partial<ChatStreamState>) => ({ ...emptyStreamState, ...s });
  it.each<[string, Parameters<typeof outcomeOf>[0], Partial<ChatStreamState>, object]>([
    ['completed with [DONE]', 'completed', { done: true, finishReason: 'stop' }, { status: 'final', finishReason: 'stop' }],
    ['completed with a finish_reason but no [DONE]', 'completed', { finishReason: 'length' }, { status: 'final', finishReason: 'length' }],
    ['completed with neither', 'completed', { text: 'half' }, { status: 'error', finishReason: 'upstream_incomplete' }],
    ['completed after an error event', 'completed', { done: true, error: { message: 'x' } }, { status: 'error', finishReason: 'upstream_error' }],
    ['client abort', 'client_abort', { done: true }, { status: 'error', finishReason: 'client_abort' }],
    ['upstream timeout', 'upstream_timeout', {}, { status: 'error', finishReason: 'upstream_timeout' }],
    ['interrupted', 'interrupted', {}, { status: 'error', finishReason: 'interrupted' }],
  ])('%s', (_, end, s, expected) => {
    expect(outcomeOf(end, state(s))).toMatchObject(expected);
  });

  it('keeps the tool calls whatever the ending', () => {
    const calls = [{ id: 'a', function: { name: 'f', arguments: '{}' } }];
    expect(outcomeOf('client_abort', state({ toolCalls: calls })).toolCalls).toEqual(calls);
    expect(outcomeOf('completed', state({ done: true })).toolCalls).toBeNull();
  });
});
