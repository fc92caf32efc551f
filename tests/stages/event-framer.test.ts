import { describe, expect, it } from 'vitest';
import { eventFramer } from '../../app/streaming/stages/event-framer.js';
import { endsEvent, eventEnds, lastEventEnd, readEvents, type SseEvent } from '../../app/streaming/stages/sse.js';
import { through } from './helpers.js';

const enc = new TextEncoder();
const b = (s: string) => enc.encode(s);

describe('where an event ends (every line end the SSE spec allows)', () => {
  it.each([
    ['LF LF', 'data: a\n\n', [9]],
    ['CR LF CR LF', 'data: a\r\n\r\n', [11]],
    ['CR CR', 'data: a\r\r', [9]],
    ['CR LF LF', 'data: a\r\n\n', [10]],
    ['LF CR LF', 'data: a\n\r\n', [10]],
    ['LF CR (a CR LF may follow)', 'data: a\n\r', [9]],
    ['two events', 'data: a\n\ndata: b\r\r', [9, 18]],
    ['no empty line yet', 'data: a\ndata: b\n', []],
    ['a lone CR LF', 'data: a\r\n', []],
    ['nothing', '', []],
  ])('%s', (_, text, ends) => {
    expect(eventEnds(b(text))).toEqual(ends);
    expect(lastEventEnd(b(text))).toBe(ends.at(-1) ?? 0);
    expect(endsEvent(b(text))).toBe(ends.at(-1) === b(text).length);
  });
});

describe('reading whole events', () => {
  const read = (text: string, complete = true) => {
    const events: SseEvent[] = [];
    readEvents(text, (e) => events.push(e), { complete });
    return events;
  };
  it.each([
    ['one data line', 'data: {"a":1}\n\n', [{ event: '', data: '{"a":1}' }]],
    ['no space after the colon', 'data:x\n\n', [{ event: '', data: 'x' }]],
    ['only the first space is dropped', 'data:  x\n\n', [{ event: '', data: ' x' }]],
    ['several data lines, joined by LF', 'data: a\ndata: b\n\n', [{ event: '', data: 'a\nb' }]],
    ['CR line ends', 'data: a\rdata: b\r\rdata: c\r\r', [{ event: '', data: 'a\nb' }, { event: '', data: 'c' }]],
    ['CR LF line ends', 'data: a\r\n\r\ndata: [DONE]\r\n\r\n', [{ event: '', data: 'a' }, { event: '', data: '[DONE]' }]],
    ['comments, id and retry skipped', ': keep-alive\nid: 7\nretry: 10\ndata: a\n\n', [{ event: '', data: 'a' }]],
    ['an event name', 'event: error\ndata: x\n\n', [{ event: 'error', data: 'x' }]],
    ['an event with no data is not dispatched', 'event: ping\n\n', []],
    ['a field without a colon', 'data\n\n', [{ event: '', data: '' }]],
    ['a tail without its empty line, when complete', 'data: a\n\ndata: b', [{ event: '', data: 'a' }, { event: '', data: 'b' }]],
  ])('%s', (_, text, events) => {
    expect(read(text)).toEqual(events);
  });
  it('tells of lines with a field SSE does not have, and ignores them', () => {
    let unknown = 0;
    const events: SseEvent[] = [];
    readEvents('id: 1\nretry: 5\nsaid the model\nfoo: bar\ndata: a\n\n', (e) => events.push(e), { onUnknownField: () => unknown++ });
    expect(events).toEqual([{ event: '', data: 'a' }]);
    expect(unknown).toBe(2);
  });

  it('drops a tail without its empty line when the stream was cut', () => {
    expect(read('data: a\n\ndata: b', false)).toEqual([{ event: '', data: 'a' }]);
  });
});

describe('the event framer stage', () => {
  it('passes a chunk that ends an event through as the very same chunk', async () => {
    const chunk = b('data: a\n\ndata: b\r\r');
    const { out } = await through(eventFramer(), [chunk]);
    expect(out).toEqual([chunk]);
    expect(out[0]).toBe(chunk);
  });

  const event = 'data: {"x":"héllo 👋"}\r\n\r\n';
  it.each([...Array(Buffer.byteLength(event) - 1).keys()].map((k) => k + 1))(
    'holds a partial event split at byte %i until its empty line, and passes only whole events',
    async (k) => {
      const bytes = b(event + event);
      const { out } = await through(eventFramer(), [bytes.slice(0, k), bytes.slice(k)]);
      expect(Buffer.concat(out).equals(Buffer.from(bytes))).toBe(true);
      for (const c of out) expect(endsEvent(c)).toBe(true);
    },
  );

  it('ends an event at CR CR at once, as the reader of events does', async () => {
    const { text } = await through(eventFramer(), ['data: a\r\rdata: b', '\r\r']);
    expect(text).toEqual(['data: a\r\r', 'data: b\r\r']);
  });

  it('sends what it holds when the upstream ends, and drops it when the upstream fails', async () => {
    expect((await through(eventFramer(), ['data: a\n\ndata: b'])).text).toEqual(['data: a\n\n', 'data: b']);
    let pulls = 0;
    const failing = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (pulls++ === 0) controller.enqueue(b('data: a\n\ndata: half'));
          else controller.error(new Error('dropped'));
        },
      },
      { highWaterMark: 0 },
    );
    const reader = failing.pipeThrough(eventFramer()).getReader();
    expect(Buffer.from((await reader.read()).value!).toString()).toBe('data: a\n\n');
    await expect(reader.read()).rejects.toThrow('dropped');
  });

  it('does not hold bytes that never frame as SSE past maxHeld', async () => {
    const { text } = await through(eventFramer(16), ['0123456789', '0123456789', 'abc']);
    expect(text).toEqual(['01234567890123456789', 'abc']);
  });
});
