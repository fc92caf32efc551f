import { loadConfig } from '../../app/env.js';
import { startServer } from '../../app/server.js';

// One real server process for the multi-process rate-limit tests. Configured by its environment
// like `npm start`, it reports its URL over IPC once listening and stops when told to or when
// the parent goes away (so a crashed test run leaves no server behind).
const server = await startServer(loadConfig(process.env));
process.send!({ url: server.url });

const stop = () => void server.close().finally(() => process.exit(0));
process.on('message', (m) => {
  if (m === 'stop') stop();
});
process.on('disconnect', stop);
