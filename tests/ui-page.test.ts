import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { readUiBundle } from '../app/ui/bundle.js';
import { buildUi } from '../scripts/build-ui.js';
import { call, testApp } from './helpers/app.js';

/*
 * How the web page is served (no browser needed): `/` and its files under `/ui/`, with a strict
 * policy, caching by content hash, nothing from another host, off with UI_ENABLED=false; and how
 * it is built. What it does in a browser: ui.test.ts and ui-safety.test.ts.
 */

const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ALLOWED_ORIGIN: 'https://app.example,*' });
const assetsOf = (html: string) => [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map(([, url]) => url!).filter((u) => !u.startsWith('#') && !u.startsWith('data:'));

describe('the web page at /', () => {
  it('is HTML under a policy that runs only its own files, and allows no inline script or style', async () => {
    const page = await call(app, 'GET', '/');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect(page.headers.get('referrer-policy')).toBe('no-referrer');
    const policy = Object.fromEntries(page.headers.get('content-security-policy')!.split('; ').map((d) => [d.split(' ')[0], d.split(' ').slice(1).join(' ')]));
    expect(policy).toMatchObject({
      'default-src': "'none'",
      'script-src': "'self'",
      'style-src': "'self'",
      'connect-src': "'self'",
      'base-uri': "'none'",
      'require-trusted-types-for': "'script'",
      // Pages of ALLOWED_ORIGIN may frame it; '*' is no licence to.
      'frame-ancestors': "'self' https://app.example",
    });
    expect(page.text).not.toMatch(/<script>|<style|style=| on[a-z]+=/i);
  });

  it('loads only files of this server, each served with its type and kept by browsers for good', async () => {
    const page = await call(app, 'GET', '/');
    const files = assetsOf(page.text);
    expect(files).toHaveLength(2);
    for (const file of files) {
      expect(file).toMatch(/^\/ui\/(app|styles)-[A-Z0-9]+\.(js|css)$/);
      const res = await call(app, 'GET', file);
      expect(res.status, file).toBe(200);
      expect(res.headers.get('content-type')).toBe(file.endsWith('.js') ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8');
      expect(res.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      // No CDN, nothing fetched from elsewhere at run time.
      expect(res.text).not.toMatch(/(?:import\s*\(|from\s*)["']https?:/);
    }
  });

  it('is revalidated by its ETag, so a new build reaches browsers at once', async () => {
    const first = await call(app, 'GET', '/');
    expect(first.headers.get('cache-control')).toBe('no-cache');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await app.request('/', { headers: { 'if-none-match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
  });

  it('answers 404 for a file it does not have, in the API error shape', async () => {
    for (const path of ['/ui/nope.js', '/ui/index.html', '/ui/..%2Fpackage.json']) {
      const res = await call(app, 'GET', path);
      expect(res.status, path).toBe(404);
      expect(res.json.error).toMatchObject({ type: 'not_found_error', code: 'not_found' });
    }
  });

  it('is public: served without credentials where every /v1 route needs them', async () => {
    const closed = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ANONYMOUS_ACCESS: 'false' });
    expect((await call(closed, 'GET', '/')).status).toBe(200);
    expect((await call(closed, 'GET', '/v1/privacy')).status).toBe(401);
  });

  it('is off with UI_ENABLED=false: / and its files answer 404', async () => {
    const off = testApp(null, { PERSIST_TRANSCRIPTS: 'false', UI_ENABLED: 'false' });
    const page = await call(app, 'GET', '/');
    for (const path of ['/', ...assetsOf(page.text)]) {
      const res = await call(off, 'GET', path);
      expect(res.status, path).toBe(404);
      expect(res.json.error.code).toBe('unknown_route');
    }
  });
});

describe('building the page', () => {
  const dir = mkdtempSync(join(tmpdir(), 'chat-ui-build-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('bundles ui/ into hashed files and a page naming them, under 100 KB gzipped', async () => {
    const out = join(dir, 'ui');
    const built = await buildUi(out);
    expect(readdirSync(out).sort()).toEqual(built.files.map((f) => f.name).sort());
    const bundle = readUiBundle(out)!;
    const html = new TextDecoder().decode(bundle.get('index.html')!.body);
    for (const asset of assetsOf(html)) expect(bundle.has(asset.slice('/ui/'.length)), asset).toBe(true);
    const gzipped = [...bundle].filter(([name]) => name !== 'index.html').reduce((sum, [, f]) => sum + gzipSync(f.body).byteLength, 0);
    expect(gzipped).toBeLessThan(100 * 1024);
    // A second build of the same sources gives the same names: caches stay valid.
    const again = await buildUi(out);
    expect(again.files.map((f) => f.name).sort()).toEqual(built.files.map((f) => f.name).sort());
    expect(readFileSync(join(out, 'index.html'), 'utf8')).toBe(html);
  });
});
