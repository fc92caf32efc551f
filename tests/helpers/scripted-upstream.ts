import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * What a scripted upstream answers to one request: a fixed body written in two pieces, cut at
 * byte `at`, then either the rest (after a pause), a dropped connection, or silence.
 */
export interface Script {
  status?: number;
  contentType: string;
  body: Buffer;
  /** Byte position of the cut, 0..body.length. */
  at: number;
  then: 'rest' | 'drop' | 'hang';
  /** Pause between the two writes so they leave as separate packets (default 5 ms). */
  pauseMs?: number;
}

export interface ScriptedUpstream {
  /** Base URL to use as OPENAI_BASE_URL. */
  url: string;
  close(): Promise<void>;
}

/**
 * A tiny OpenAI-ish upstream whose every byte is decided by the test: `plan` receives the request
 * body (as the proxy forwarded it, so a test can pass the script's parameters in an extra field)
 * and returns the script. Bodies are sent chunked, without content-length, like a streaming
 * provider; a drop is a socket destroy after the first piece has been flushed.
 */
export async function startScriptedUpstream(plan: (request: any) => Script): Promise<ScriptedUpstream> {
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const server = http.createServer({ noDelay: true }, (req, res) => {
    req.on('error', () => {});
    res.on('error', () => {});
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      let request: any = null;
      try {
        request = JSON.parse(Buffer.concat(parts).toString('utf8'));
      } catch {
        // the plan decides what an unreadable request gets
      }
      const script = plan(request);
      const head = script.body.subarray(0, script.at);
      const rest = script.body.subarray(script.at);
      res.writeHead(script.status ?? 200, { 'content-type': script.contentType, 'cache-control': 'no-cache' });
      res.flushHeaders();
      const later = (fn: () => void) => {
        const t = setTimeout(() => {
          timers.delete(t);
          fn();
        }, script.pauseMs ?? 5);
        timers.add(t);
      };
      const afterHead = () => {
        if (script.then === 'hang') return;
        if (script.then === 'drop') {
          later(() => req.socket.destroy());
          return;
        }
        later(() => res.end(rest));
      };
      if (head.length) res.write(head, afterHead);
      else afterHead();
    });
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** Runs `task` over `items` with at most `width` in flight, keeping results in order. */
export async function inBatches<T, R>(items: readonly T[], width: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await task(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  return out;
}
