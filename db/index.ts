import { createPgStore, type PgStoreOptions } from './pg/store.js';
import { createSqliteStore } from './sqlite/store.js';
import type { Store } from './store.js';
import type { DbTarget } from './url.js';

export type { Store } from './store.js';
export { parseDbUrl, describeDbTarget, type DbTarget } from './url.js';

/** Picks the dialect once, from the parsed DB_URL. */
export function createStore(target: DbTarget, options: PgStoreOptions = {}): Store {
  return target.dialect === 'sqlite' ? createSqliteStore(target.path) : createPgStore(target.url, options);
}
