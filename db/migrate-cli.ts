// `npm run db:migrate`: applies the committed migrations to DB_URL's database and exits.
import { ConfigError, loadConfig } from '../app/env.js';
import { databaseStartupError } from '../app/startup-error.js';
import { createStore, describeDbTarget } from './index.js';

let config;
try {
  config = loadConfig();
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
let store: ReturnType<typeof createStore> | undefined;
try {
  store = createStore(config.db);
  await store.migrate();
  console.log(`migrated ${describeDbTarget(config.db)}`);
} catch (err) {
  // The same explanation as at start-up (which variable, what failed, the fix), without a stack.
  console.error(databaseStartupError(err, config.db, 'Cannot migrate').message);
  process.exitCode = 1;
} finally {
  await store?.close().catch(() => {});
}
