import { ConfigError, loadConfig } from './env.js';
import { createLogger } from './logger.js';
import { exitOnUncaughtErrors } from './process-errors.js';
import { startServer } from './server.js';

// `npm start`: everything comes from the environment; a bad value stops start-up here.
let config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  process.exit(1);
}

const logger = createLogger(config.logLevel);
// From here on, an error nothing handled is logged as JSON before the process exits non-zero.
exitOnUncaughtErrors(logger);
const server = await startServer(config, { logger });
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    server.close().then(
      () => process.exit(0),
      (err) => {
        console.error('shutdown failed', err);
        process.exit(1);
      },
    );
  });
}
