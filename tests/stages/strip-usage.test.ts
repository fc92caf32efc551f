import { describe, expect, it } from 'vitest';
import { eventFramer } from '../../app/streaming/stages/event-framer.js';
import { stripUsage, usageStripper } from '../../app/streaming/stages/strip-usage.js';
import { through } from './helpers.js';

const enc = new TextEncoder();
const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

describe('usage stripping', () => {
  it.each([
    ['OpenAI compact usage:null', 'data: {"choices":[{"delta":{"content":"é"}}],"usage":null}\n\n', 'data: {"choices":[{"delta":{"content":"é"}}]}\n\n'],
    ['the usage-only chunk', 'data: {"choices":[],"usage":{"total_tokens":3}}\n\n', ''],
    ['spaced usage: null', 'data: {"choices":[{"delta":{}}], "usage" : null}\r\n\r\n', 'data: {"choices":[{"delta":{}}]}\r\n\r\n'],
    ['usage: null first', 'data: {"usage":null,"choices":[{"delta":{}}]}\r\r', 'data: {"choices":[{"delta":{}}]}\r\r'],
    ['only the usage-only event goes', 'data: {"choices":[{"delta":{}}]}\r\rdata: {"choices":[],"usage":{"total_tokens":1}}\r\rdata: [DONE]\r\r', 'data: {"choices":[{"delta":{}}]}\r\rdata: [DONE]\r\r'],
    ['no usage at all', 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n', 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'],
  ])('%s', (_, input, output) => {
    expect(text(stripUsage(enc.encode(input)))).toBe(output);
  });

  it('keeps the very same bytes when no event mentions usage', () => {
    const plain = enc.encode('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
    expect(stripUsage(plain)).toBe(plain);
  });

  it('removes usage at every split position after the framer, including inside multi-byte characters', async () => {
    const stream = 'data: {"choices":[{"delta":{"content":"héllo 👋"}}],"usage":null}\n\ndata: {"choices":[],"usage":{"total_tokens":9}}\n\ndata: [DONE]\n\n';
    const bytes = enc.encode(stream);
    const want = 'data: {"choices":[{"delta":{"content":"héllo 👋"}}]}\n\ndata: [DONE]\n\n';
    for (let k = 1; k < bytes.length; k++) {
      const framed = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(bytes.slice(0, k));
          c.enqueue(bytes.slice(k));
          c.close();
        },
      }).pipeThrough(eventFramer());
      const { text: out } = await through(usageStripper(), await collect(framed));
      expect(out.join(''), `split at ${k}`).toBe(want);
    }
  });
});

async function collect(stream: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) out.push(c);
  return out;
}
