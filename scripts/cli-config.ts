import { loadConfig, type Config } from '../app/env.js';
import { explainDbFailure } from '../db/explain-failure.js';
import { createStore } from '../db/index.js';
import type { Store } from '../db/store.js';

/**
 * The configuration a shell command needs, from only the variables it reads: a bad value of a
 * setting it does not use (the server's PORT, say) does not stop it. Throws ConfigError.
 */
export function cliConfig(env: NodeJS.ProcessEnv, names: readonly string[]): Config {
  return loadConfig(Object.fromEntries(Object.entries(env).filter(([k]) => names.includes(k))));
}

/** Bad usage: said in one line, exit code 2. */
export class UsageError extends Error {}

/**
 * The migrated store of the configured database, or null once the reason it cannot be opened
 * has been printed (the command then exits 1).
 */
export async function openStore(config: Config): Promise<Store | null> {
  let store: Store | undefined;
  try {
    store = createStore(config.db);
    await store.migrate();
    return store;
  } catch (err) {
    console.error(explainDbFailure(err, config.db, 'Cannot open the database'));
    await store?.close().catch(() => {});
    return null;
  }
}
