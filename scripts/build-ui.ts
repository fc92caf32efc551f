import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { projectRoot } from '../app/ui/bundle.js';

/*
 * The web page at `/`: ui/*.ts and ui/styles.css bundled by esbuild into dist/ui/ (well under a
 * second), with content-hashed names so the server can let browsers keep them for a year, and
 * dist/ui/index.html naming them. `npm run dev`, `npm run build` (so `npm start`) and the test
 * suite's global setup run it; the server builds it itself when it finds none.
 */

const root = projectRoot();

export interface UiBuild {
  dir: string;
  /** Each file written, with its size and gzipped size in bytes. */
  files: { name: string; bytes: number; gzipBytes: number }[];
  ms: number;
}

/** Builds the page into `outDir` (dist/ui), replacing what was there in one rename. */
export async function buildUi(outDir = join(root, 'dist', 'ui')): Promise<UiBuild> {
  const started = performance.now();
  const result = await build({
    entryPoints: { app: join(root, 'ui', 'main.ts'), styles: join(root, 'ui', 'styles.css') },
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['chrome110', 'firefox115', 'safari16'],
    entryNames: '[name]-[hash]',
    outdir: outDir,
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const outputs = result.outputFiles.map((f) => ({ name: basename(f.path), contents: f.contents }));
  const script = outputs.find((f) => /^app-.*\.js$/.test(f.name))?.name;
  const style = outputs.find((f) => /^styles-.*\.css$/.test(f.name))?.name;
  if (!script || !style) throw new Error(`the UI build made no script or stylesheet: ${outputs.map((f) => f.name).join(', ')}`);
  const page = readFileSync(join(root, 'ui', 'index.html'), 'utf8').replaceAll('{{script}}', `/ui/${script}`).replaceAll('{{style}}', `/ui/${style}`);
  outputs.push({ name: 'index.html', contents: new TextEncoder().encode(page) });

  // Written beside the old bundle, then swapped in: a server reading dist/ui never sees half of one.
  const staging = `${outDir}.${process.pid}-${randomBytes(4).toString('hex')}`;
  mkdirSync(staging, { recursive: true });
  for (const f of outputs) writeFileSync(join(staging, f.name), f.contents);
  const old = `${staging}.old`;
  try {
    renameSync(outDir, old);
  } catch {
    // nothing there yet
  }
  try {
    renameSync(staging, outDir);
  } catch (err) {
    // Another build swapped its own in meanwhile: the same sources, so the same files.
    if (!existsSync(join(outDir, 'index.html'))) throw err;
    rmSync(staging, { recursive: true, force: true });
  }
  rmSync(old, { recursive: true, force: true });
  return {
    dir: outDir,
    files: outputs.map((f) => ({ name: f.name, bytes: f.contents.byteLength, gzipBytes: gzipSync(f.contents).byteLength })),
    ms: performance.now() - started,
  };
}

/** True when dist/ui holds a build at least as new as every file of ui/. */
export function uiBuildIsCurrent(outDir = join(root, 'dist', 'ui')): boolean {
  const page = join(outDir, 'index.html');
  if (!existsSync(page)) return false;
  const built = statSync(page).mtimeMs;
  return readdirSync(join(root, 'ui')).every((name) => statSync(join(root, 'ui', name)).mtimeMs <= built);
}

if (process.argv[1] && resolve(process.argv[1]).replace(/\.[jt]s$/, '') === fileURLToPath(import.meta.url).replace(/\.[jt]s$/, '')) {
  const built = await buildUi();
  const kb = (n: number) => `${(n / 1024).toFixed(1)} KB`;
  const total = built.files.filter((f) => f.name !== 'index.html').reduce((s, f) => s + f.gzipBytes, 0);
  console.log(`web page built in ${Math.round(built.ms)} ms: ${built.files.map((f) => `${f.name} ${kb(f.bytes)} (${kb(f.gzipBytes)} gzipped)`).join(', ')}; ${kb(total)} gzipped in all`);
}
