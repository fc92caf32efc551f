// One measured proxy in its own process, so its CPU and peak RSS are its own.
// argv: <target> <upstream base URL (…/v1)> [JSON env for our server]
import { runChild } from './ipc.js';

const [target, upstream, envJson] = process.argv.slice(2);
if (!target || !upstream) throw new Error('usage: target-child.ts <target> <upstream> [env JSON]');

await runChild(async () => {
  // Dynamic imports: each process loads only its own target's code, so peak RSS is its own.
  if (target === 'node-pipe' || target === 'bare' || target === 'floor') {
    const { startBare, startFloor, startNodePipe } = await import('./baselines.js');
    const s = await (target === 'floor' ? startFloor : target === 'bare' ? startBare : startNodePipe)(upstream);
    return { endpoint: `${s.baseUrl}/v1/chat/completions`, baseUrl: s.baseUrl, close: () => s.close() };
  }
  const [{ loadConfig }, { createLogger }, { startServer }] = await Promise.all([
    import('../app/env.js'),
    import('../app/logger.js'),
    import('../app/server.js'),
  ]);
  const env = JSON.parse(envJson ?? '{}') as Record<string, string>;
  // BENCH_SERVER_LOG=error shows why requests fail; silent by default so logging costs nothing.
  const level = process.env.BENCH_SERVER_LOG ?? 'silent';
  const server = await startServer(loadConfig({ ...env, LOG_LEVEL: level }), { logger: createLogger(level) });
  return { endpoint: `${server.url}/v1/chat/completions`, baseUrl: server.url, close: () => server.close() };
});
