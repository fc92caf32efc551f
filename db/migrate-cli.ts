// `npm run db:migrate`: applies the committed migrations to DB_URL's database and exits.
// It reads DB_URL alone, with the server's default, and needs nothing else of the server's.
import { explainDbFailure } from './explain-failure.js';
import { createStore, describeDbTarget, parseDbUrl, type DbTarget } from './index.js';

let target: DbTarget;
try {
  target = parseDbUrl(process.env.DB_URL || 'file:./data/dev.db');
} catch (err) {
  console.error(`Invalid configuration:\n  DB_URL: ${(err as Error).message}`);
  process.exit(1);
}
let store: ReturnType<typeof createStore> | undefined;
try {
  store = createStore(target);
  await store.migrate();
  console.log(`migrated ${describeDbTarget(target)}`);
} catch (err) {
  // The same explanation as at start-up (which variable, what failed, the fix), without a stack.
  console.error(explainDbFailure(err, target, 'Cannot migrate'));
  process.exitCode = 1;
} finally {
  await store?.close().catch(() => {});
}
