// Standalone mock upstream for `npm run dev` and manual poking: MOCK_PORT (default 4010).
import { startMockUpstream } from './upstream.js';

const mock = await startMockUpstream({ port: Number(process.env.MOCK_PORT ?? 4010) });
console.log(`mock upstream listening on ${mock.url}`);

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
