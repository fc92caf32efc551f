import { loadConfig, type Config } from '../app/env.js';

/**
 * The configuration a shell command needs, from only the variables it reads: a bad value of a
 * setting it does not use (the server's PORT, say) does not stop it. Throws ConfigError.
 */
export function cliConfig(env: NodeJS.ProcessEnv, names: readonly string[]): Config {
  return loadConfig(Object.fromEntries(Object.entries(env).filter(([k]) => names.includes(k))));
}

/** Bad usage: said in one line, exit code 2. */
export class UsageError extends Error {}
