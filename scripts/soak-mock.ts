// Child process of `npm run soak`: the bundled mock upstream on 127.0.0.1, in its own process so
// it does not compete with the load generator for one event loop. Prints `{"url": …}` once
// listening; exits on SIGTERM/SIGINT or when its parent closes stdin (parent gone).
import { startMockUpstream } from '../mock/upstream.js';

const mock = await startMockUpstream({ host: '127.0.0.1', record: false });
process.stdout.write(`${JSON.stringify({ url: mock.url })}\n`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  mock.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
