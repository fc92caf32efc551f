// The mock upstream in its own process: the shared upstream for the proxies, and the `direct` target.
import { startMockUpstream, type MockOptions } from '../mock/upstream.js';
import { runChild } from './ipc.js';

const defaults = JSON.parse(process.argv[2] ?? '{}') as MockOptions;

await runChild(async () => {
  // record:false so the mock does not accumulate requests (it would inflate its RSS).
  const mock = await startMockUpstream({ port: 0, host: '127.0.0.1', record: false, defaults });
  return { endpoint: `${mock.url}/chat/completions`, baseUrl: mock.url, close: () => mock.close() };
});
