// `npm run db:migrate`: applies the committed migrations to DB_URL's database and exits.
import { ConfigError, loadConfig } from '../app/env.js';
import { createStore, describeDbTarget } from './index.js';

try {
  const { db } = loadConfig();
  const store = createStore(db);
  await store.migrate();
  await store.close();
  console.log(`migrated ${describeDbTarget(db)}`);
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
