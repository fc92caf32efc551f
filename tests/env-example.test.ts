import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES, loadConfig } from '../app/env.js';

/*
 * .env.example is what a newcomer copies: it must list every setting, and as copied it must
 * give what plain `npm run dev` gives (persistence on, SQLite, the mock upstream), not fight it.
 */

const root = resolve(import.meta.dirname, '..');
const example = readFileSync(resolve(root, '.env.example'), 'utf8');
const readme = readFileSync(resolve(root, 'README.md'), 'utf8');
// MOCK_PORT is read by npm run dev itself, before the configuration.
const variables = [...ENV_VARIABLES, 'MOCK_PORT'];

/** What `set -a; . ./.env; set +a` exports from it (the file uses no quotes or expansions). */
function sourced(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (m) vars[m[1]!] = m[2]!;
  }
  return vars;
}

describe('.env.example', () => {
  it.each(variables)('lists %s, and so does the README', (name) => {
    expect(example).toMatch(new RegExp(`^(# )?${name}=`, 'm'));
    expect(readme).toContain(`\`${name}\``);
  });

  it('is plain NAME=value lines a shell sources as written', () => {
    for (const line of example.split('\n').filter((l) => l && !l.startsWith('#'))) expect(line).toMatch(/^[A-Z_][A-Z0-9_]*=[^'"$`\s]*$/);
  });

  it('as copied, configures what npm run dev does by default', () => {
    const vars = sourced(example);
    // npm run dev starts its mock only when OPENAI_BASE_URL is unset or empty.
    expect(vars.OPENAI_BASE_URL ?? '').toBe('');
    expect(loadConfig(vars)).toEqual(loadConfig({ PERSIST_TRANSCRIPTS: 'true' }));
    expect(loadConfig(vars)).toMatchObject({ persist: true, db: { dialect: 'sqlite', path: './data/dev.db' }, logFormat: 'json' });
  });
});
