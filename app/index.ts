import { ConfigError, loadConfig } from './env.js';
import { createLogger } from './logger.js';
import { exitOnUncaughtErrors } from './process-errors.js';
import { startServer } from './server.js';
import { StartupError } from './startup-error.js';

// `npm start`: everything comes from the environment; a bad value stops start-up here.
let config;
try {
  config = loadConfig();
} catch (err) {
  if (!(err instanceof ConfigError)) throw err;
  console.error(err.message);
  process.exit(1);
}

const logger = createLogger(config.logLevel, undefined, config.logFormat);
// From here on, an error nothing handled is logged before the process exits non-zero.
exitOnUncaughtErrors(logger);
const server = await startServer(config, { logger }).catch((err: unknown) => {
  // Explained failures (DB_URL, PORT) are printed as they are; anything else keeps its stack.
  if (!(err instanceof StartupError)) throw err;
  console.error(err.message);
  process.exit(1);
});
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
