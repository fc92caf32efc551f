// IPC protocol between bench/run.ts and its measured child processes.
import type { ChildProcess } from 'node:child_process';

export type ToChild = { type: 'stats' } | { type: 'stop' };
export type FromChild =
  | { type: 'ready'; endpoint: string; baseUrl: string }
  | { type: 'failed'; message: string }
  | { type: 'stats'; cpuUs: number; maxRssKb: number };

export interface Stats {
  cpuUs: number;
  maxRssKb: number;
}

/**
 * Child side: start the server, announce it, answer stats requests, stop on request.
 * Exits when the parent goes away so no orphan keeps a port or a database open.
 */
export async function runChild(start: () => Promise<{ endpoint: string; baseUrl: string; close(): Promise<void> }>): Promise<void> {
  const send = (m: FromChild) => process.send?.(m);
  process.on('disconnect', () => process.exit(0));
  let server: Awaited<ReturnType<typeof start>>;
  try {
    server = await start();
  } catch (err) {
    send({ type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    process.exit(1);
  }
  process.on('message', (m: ToChild) => {
    if (m.type === 'stats') {
      const cpu = process.cpuUsage();
      send({ type: 'stats', cpuUs: cpu.user + cpu.system, maxRssKb: process.resourceUsage().maxRSS });
    } else if (m.type === 'stop') {
      // Bounded: a server that will not close in time is simply exited.
      const force = setTimeout(() => process.exit(0), 3000);
      server.close().finally(() => {
        clearTimeout(force);
        process.exit(0);
      });
    }
  });
  send({ type: 'ready', endpoint: server.endpoint, baseUrl: server.baseUrl });
}

/** Parent side: wait for one message of a type, failing on exit, a `failed` message or timeout. */
export function nextMessage<T extends FromChild['type']>(
  child: ChildProcess,
  type: T,
  timeoutMs: number,
): Promise<Extract<FromChild, { type: T }>> {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    const onMessage = (m: FromChild) => {
      if (m.type === type) {
        cleanup();
        resolve(m as Extract<FromChild, { type: T }>);
      } else if (m.type === 'failed') {
        cleanup();
        reject(new Error(`child failed to start:\n${m.message}`));
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      cleanup();
      reject(new Error(`child exited (code ${code}, signal ${signal}) while waiting for '${type}'`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child did not send '${type}' within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}
