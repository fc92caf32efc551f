import { describe, expect, it } from 'vitest';
import { tap } from '../../app/streaming/stages/tap.js';
import { through } from './helpers.js';

const enc = new TextEncoder();

describe('the tap stage', () => {
  it.each([
    [['data: a\n\n']],
    [['data: a\n\n', 'data: b\n\n', 'data: [DONE]\n\n']],
    [[]],
  ])('passes %j on untouched and shows each chunk to the observer, in order', async (chunks) => {
    const seen: string[] = [];
    const input = chunks.map((c) => enc.encode(c));
    const { out } = await through(tap({ push: (b) => seen.push(Buffer.from(b).toString()) }), input);
    expect(out).toEqual(input);
    out.forEach((c, i) => expect(c).toBe(input[i]));
    expect(seen).toEqual(chunks);
  });

  it('passes on and shows no zero-length chunk', async () => {
    const seen: Uint8Array[] = [];
    const { out } = await through(tap({ push: (b) => seen.push(b) }), [new Uint8Array(0), enc.encode('x')]);
    expect(out.map((c) => c.byteLength)).toEqual([1]);
    expect(seen.map((c) => c.byteLength)).toEqual([1]);
  });

  it('shows a chunk only once it is queued for the reader', async () => {
    const stage = tap({ push: () => order.push('observed') });
    const order: string[] = [];
    const reader = stage.readable.getReader();
    const writer = stage.writable.getWriter();
    const reading = reader.read().then(() => order.push('read'));
    await writer.write(enc.encode('x'));
    await reading;
    expect(order).toEqual(['observed', 'read']);
  });

  it('tells the observer when the reader goes away', async () => {
    let reason: unknown = null;
    const stage = tap({ push() {}, cancel: (r) => (reason = r) });
    await stage.readable.cancel('client left');
    expect(reason).toBe('client left');
  });
});
