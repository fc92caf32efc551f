// `npm run search:reindex`: rebuilds the SQLite search index of DB_URL's database from its
// messages and titles. Needed only after a copy that gave conversations new rowids (a `.dump`
// and reload, or a VACUUM where SQLite renumbers them); Postgres keeps each message's search
// vector on its own row and never needs it.
import Database from 'better-sqlite3';
import { ConfigError, loadConfig } from '../app/env.js';
import { createStore, describeDbTarget } from '../db/index.js';
import { rebuildSearchIndex } from '../db/sqlite/search-index.js';

try {
  const config = loadConfig();
  if (config.db.dialect !== 'sqlite' || config.db.path === ':memory:') {
    console.log(`search:reindex: nothing to do for ${describeDbTarget(config.db)} (only a SQLite file has an index to rebuild)`);
  } else {
    const store = createStore(config.db);
    await store.migrate();
    await store.close();
    const client = new Database(config.db.path);
    client.pragma('busy_timeout = 5000');
    const entries = rebuildSearchIndex(client);
    client.close();
    console.log(`search:reindex: ${entries} entries written to ${describeDbTarget(config.db)}`);
  }
} catch (err) {
  console.error(err instanceof ConfigError ? err.message : err);
  process.exit(1);
}
