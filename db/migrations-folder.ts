import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The committed migrations of a dialect: the first `drizzle/<dialect>` up the tree from here, so
 * the sources (db/) and the compiled server (dist/db/) find the same folder.
 */
export function migrationsFolder(dialect: 'sqlite' | 'pg'): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'drizzle', dialect);
    if (existsSync(join(candidate, 'meta', '_journal.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`The ${dialect} migrations (drizzle/${dialect}) were not found above ${fileURLToPath(import.meta.url)}.`);
  }
}
