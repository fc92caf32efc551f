// `npm run retention`: one retention sweep of DB_URL's database, as the server runs hourly.
import { ConfigError, loadConfig } from '../app/env.js';
import { createLogger } from '../app/logger.js';
import { sweepRetention } from '../app/privacy/retention.js';
import { createStore, describeDbTarget } from '../db/index.js';

try {
  const config = loadConfig();
  const store = createStore(config.db);
  await store.migrate();
  const deleted = await sweepRetention(store, config.retention, createLogger(config.logLevel, undefined, config.logFormat));
  await store.close();
  console.log(`retention: deleted ${deleted} conversation(s) from ${describeDbTarget(config.db)}`);
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
