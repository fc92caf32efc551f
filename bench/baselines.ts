// Reference proxies for the benchmark, none with any of our features: the physical floor
// (node:http pipe), the floor of our design (`floor`: Hono + @hono/node-server + undici.request +
// one identity TransformStream; the ratios' base), and the same with the global fetch (`bare`).
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Baseline {
  baseUrl: string;
  close(): Promise<void>;
}

const listenUrl = (server: http.Server) => `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

function closeServer(server: http.Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** `node-pipe`: http.createServer piping to http.request and back; nothing parsed, nothing buffered. */
export async function startNodePipe(upstreamBase: string): Promise<Baseline> {
  const target = new URL(`${upstreamBase}/chat/completions`);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const server = http.createServer((req, res) => {
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json', authorization: 'Bearer k' };
    if (req.headers['content-length']) headers['content-length'] = req.headers['content-length'];
    const up = http.request(target, { method: 'POST', agent, headers }, (ur) => {
      res.writeHead(ur.statusCode ?? 502, { 'content-type': ur.headers['content-type'] ?? 'application/json' });
      ur.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    baseUrl: listenUrl(server),
    close: async () => {
      await closeServer(server);
      agent.destroy();
    },
  };
}

/** `bare`: what our server is built from, with none of its middleware, validation or persistence. */
export async function startBare(upstreamBase: string): Promise<Baseline> {
  // Loaded here, not at the top, so the node-pipe process never holds Hono in its RSS.
  const [{ Hono }, { serve }] = await Promise.all([import('hono'), import('@hono/node-server')]);
  const target = `${upstreamBase}/chat/completions`;
  const app = new Hono().post('/v1/chat/completions', async (c) => {
    const upstream = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
      body: await c.req.text(),
      signal: c.req.raw.signal,
    });
    return new Response(upstream.body!.pipeThrough(new TransformStream()), {
      status: upstream.status,
      headers: { 'content-type': upstream.headers.get('content-type') ?? 'application/json' },
    });
  });
  const server = await new Promise<http.Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as http.Server));
  });
  return { baseUrl: listenUrl(server), close: () => closeServer(server) };
}

/**
 * `floor`: the strongest proxy our design allows, the base every ratio is taken against. Hono
 * receives, `undici.request` (no WHATWG Request/Response on the upstream side, unlike fetch)
 * calls the upstream, and one identity TransformStream carries the body back.
 */
export async function startFloor(upstreamBase: string): Promise<Baseline> {
  const [{ Hono }, { serve }, { Agent, request }, { Readable }] = await Promise.all([
    import('hono'),
    import('@hono/node-server'),
    import('undici'),
    import('node:stream'),
  ]);
  const target = `${upstreamBase}/chat/completions`;
  const dispatcher = new Agent({ connections: null, pipelining: 1 });
  const app = new Hono().post('/v1/chat/completions', async (c) => {
    const upstream = await request(target, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer k' },
      body: await c.req.text(),
      signal: c.req.raw.signal,
      dispatcher,
    });
    const body = (Readable.toWeb(upstream.body) as ReadableStream<Uint8Array>).pipeThrough(new TransformStream());
    const type = upstream.headers['content-type'];
    return new Response(body, { status: upstream.statusCode, headers: { 'content-type': (Array.isArray(type) ? type[0] : type) ?? 'application/json' } });
  });
  const server = await new Promise<http.Server>((resolve) => {
    const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s as http.Server));
  });
  return {
    baseUrl: listenUrl(server),
    close: async () => {
      await closeServer(server);
      await dispatcher.close();
    },
  };
}
