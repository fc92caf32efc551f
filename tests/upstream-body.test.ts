import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { UpstreamResponse } from '../app/upstream/client.js';

const bytes = (s: string) => Buffer.from(s);
const settle = () => new Promise((r) => setImmediate(r));

/** The upstream's body as the relay reads it: a web stream over undici's Node stream. */
describe('UpstreamResponse.body', () => {
  it('carries every chunk in order, then ends', async () => {
    const node = new PassThrough();
    const res = new UpstreamResponse(200, { 'content-type': 'text/event-stream' }, node);
    node.write(bytes('a'));
    node.write(bytes('b'));
    node.end(bytes('c'));
    expect(await new Response(res.body).text()).toBe('abc');
    expect(res.headers.get('Content-Type')).toBe('text/event-stream');
    expect(res.ok).toBe(true);
  });

  it('holds back while nobody reads (backpressure) and goes on when read', async () => {
    const node = new PassThrough({ highWaterMark: 4 });
    const res = new UpstreamResponse(200, {}, node);
    const reader = res.body.getReader();
    let accepted = 0;
    while (node.write(bytes('xxxx')) && accepted < 1000) accepted++;
    expect(accepted).toBeLessThan(1000);
    await reader.read();
    node.end();
    for (;;) if ((await reader.read()).done) break;
  });

  it('takes no chunk after the reader cancelled, and destroys the Node stream (no uncaught ERR_INVALID_STATE)', async () => {
    const node = new PassThrough();
    const res = new UpstreamResponse(200, {}, node);
    const reader = res.body.getReader();
    node.write(bytes('first'));
    await reader.read();
    await reader.cancel(new Error('client left'));
    expect(node.destroyed).toBe(true);
    // Whatever the Node side still emits is dropped.
    node.emit('data', bytes('late'));
    node.emit('end');
    await settle();
  });

  it('fails the web stream when the Node stream fails or closes before its end', async () => {
    const failing = new PassThrough();
    const failed = new UpstreamResponse(200, {}, failing);
    const reading = new Response(failed.body).text();
    failing.write(bytes('part'));
    failing.destroy(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
    await expect(reading).rejects.toThrow('socket hang up');

    const closing = new PassThrough();
    const closed = new UpstreamResponse(200, {}, closing);
    const reading2 = new Response(closed.body).text();
    closing.destroy();
    await expect(reading2).rejects.toThrow(/closed before the end/);
  });
});
