import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/*
 * The web page's built files (dist/ui, made by scripts/build-ui.ts from ui/), found from this
 * module whether it runs from source (app/ui) or compiled (dist/app/ui), and read once.
 */

/** The folder holding package.json above this module: the checkout. */
export function projectRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
  }
}

export const uiBundleDir = () => join(projectRoot(), 'dist', 'ui');

export interface UiFile {
  body: Uint8Array;
  type: string;
  etag: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** Every file of the bundle by name, or null when it was never built. */
export function readUiBundle(dir = uiBundleDir()): Map<string, UiFile> | null {
  if (!existsSync(join(dir, 'index.html'))) return null;
  const files = new Map<string, UiFile>();
  for (const name of readdirSync(dir)) {
    const type = TYPES[name.slice(name.lastIndexOf('.'))];
    if (!type) continue;
    const body = new Uint8Array(readFileSync(join(dir, name)));
    files.set(name, { body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
  }
  return files;
}

/**
 * At start-up, with the page on: builds it when it is missing (a checkout that never ran
 * `npm run build`), and says so. Returns a reason it cannot be served, or null.
 */
export async function ensureUiBundle(log: (message: string) => void): Promise<string | null> {
  if (existsSync(join(uiBundleDir(), 'index.html'))) return null;
  try {
    const { buildUi } = await import('../../scripts/build-ui.js');
    const built = await buildUi(uiBundleDir());
    log(`the web page was not built: built it into ${built.dir} (${Math.round(built.ms)} ms)`);
    return null;
  } catch (err) {
    return `The web page (UI_ENABLED) is not built and could not be built here (${(err as Error).message}): run \`npm run build\`, or set UI_ENABLED=false.`;
  }
}
