import { ConfigError, loadConfig, type Config } from './env.js';
import { createLogger } from './logger.js';
import { exitOnUncaughtErrors } from './process-errors.js';
import { startServer, type RunningServer } from './server.js';
import { StartupError } from './startup-error.js';

/**
 * What `npm start` and `npm run dev` share: parse the environment (a bad value stops start-up
 * naming the variable), log what nothing handled before exiting, start the server (a failure
 * explained by StartupError is printed without a stack), and stop gracefully on SIGTERM/SIGINT,
 * then run `afterStop`.
 */
export async function boot(
  env: Record<string, string | undefined>,
  { afterStop }: { afterStop?: () => Promise<void> } = {},
): Promise<{ config: Config; server: RunningServer }> {
  let config: Config;
  try {
    config = loadConfig(env);
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
      server
        .close()
        .then(() => afterStop?.())
        .then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
    });
  }
  return { config, server };
}
