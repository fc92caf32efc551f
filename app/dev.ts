import { startMockUpstream } from '../mock/upstream.js';
import { ConfigError, loadConfig } from './env.js';
import { createLogger } from './logger.js';
import { exitOnUncaughtErrors } from './process-errors.js';
import { startServer } from './server.js';
import { StartupError } from './startup-error.js';

// `npm run dev`: persistence on (SQLite by default) and, when no real upstream is configured,
// the bundled mock upstream, so the whole flow works on a fresh machine with no keys.
// Logs are human-readable here (LOG_FORMAT=json gives npm start's JSON lines).
const env: Record<string, string | undefined> = { PERSIST_TRANSCRIPTS: 'true', LOG_FORMAT: 'pretty', ...process.env };
let mock: Awaited<ReturnType<typeof startMockUpstream>> | undefined;
if (!env.OPENAI_BASE_URL) {
  mock = await startMockUpstream({ port: Number(env.MOCK_PORT ?? 0), record: false });
  env.OPENAI_BASE_URL = mock.url;
  env.OPENAI_API_KEY ??= 'mock-key';
  env.DEFAULT_MODEL ??= 'mock-model';
  console.log(`No OPENAI_BASE_URL set: using the bundled MOCK upstream at ${mock.url} (answers are generated text, not a model).`);
}

let config;
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
// Named as the README and the default ALLOWED_ORIGIN name it: localhost (a cookie set for
// 127.0.0.1 is not sent to localhost, and the reverse).
const shownUrl = ['0.0.0.0', '::', '127.0.0.1'].includes(config.host) ? server.url.replace('//127.0.0.1:', '//localhost:') : server.url;
console.log(`Chat proxy ready at ${shownUrl} (persistence: ${config.persist ? config.db.dialect : 'off'})`);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => {
    void server
      .close()
      .then(() => mock?.close())
      .then(() => process.exit(0));
  });
}
