import { Hono, type Context } from 'hono';
import { ApiError } from '../errors.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { readUiBundle, type UiFile } from '../ui/bundle.js';

/*
 * The web page (ui/, built into dist/ui by scripts/build-ui.ts): `/` is its HTML, `/ui/:file` its
 * script and stylesheet, under content-hashed names. It is a page of this origin like any other
 * client: it calls the API with fetch, identified by the session cookie or a bearer.
 */

let bundle: Map<string, UiFile> | null = null;
/** Read once, on first request: the files cannot change while the process runs. */
function files(): Map<string, UiFile> {
  bundle ??= readUiBundle();
  if (!bundle) {
    throw new ApiError(503, 'server_error', 'The web page is not built: run `npm run build` (npm start and npm run dev do it), or set UI_ENABLED=false.', 'ui_not_built');
  }
  return bundle;
}

/**
 * Nothing but this origin's own files runs or loads: no inline script or style, no eval, no
 * plugin, no other host (a message's markdown cannot load a tracking image); Trusted Types
 * leave DOMPurify the only way HTML becomes DOM. Pages of ALLOWED_ORIGIN may frame it.
 */
function pagePolicy(allowedOrigins: string[]): string {
  const framers = allowedOrigins.filter((o) => o !== '*');
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    `frame-ancestors 'self'${framers.map((o) => ` ${o}`).join('')}`,
    "require-trusted-types-for 'script'",
    'trusted-types dompurify',
  ].join('; ');
}

function serve(c: Context<AppEnv>, file: UiFile, headers: Record<string, string>) {
  const common = { etag: file.etag, 'x-content-type-options': 'nosniff', ...headers };
  if (c.req.header('if-none-match') === file.etag) return c.body(null, 304, common);
  return c.body(file.body as Uint8Array<ArrayBuffer>, 200, { 'content-type': file.type, ...common });
}

export const ui = new Hono<AppEnv>()
  .get('/', (c) => {
    const { config } = c.get('services');
    if (!config.ui.enabled) return c.notFound();
    return serve(c, files().get('index.html')!, {
      'content-security-policy': pagePolicy(config.allowedOrigins),
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      // Revalidated each time (its ETag): a new build's asset names reach the browser at once.
      'cache-control': 'no-cache',
    });
  })
  .get('/ui/:file', (c) => {
    if (!c.get('services').config.ui.enabled) return c.notFound();
    const name = c.req.param('file');
    const file = name === 'index.html' ? undefined : files().get(name);
    if (!file) throw new ApiError(404, 'not_found_error', `No file '${name}' in the web page.`, 'not_found', 'file');
    // Content-hashed names: a name never holds other bytes, so browsers may keep it for good.
    return serve(c, file, { 'cache-control': 'public, max-age=31536000, immutable' });
  });

export const uiDocs = [
  route({
    method: 'get',
    path: '/',
    tag: 'Web page',
    summary: 'The chat page (UI_ENABLED; 404 when off)',
    auth: 'public',
    responses: { 200: { description: 'HTML', mediaType: 'text/html' } },
    errors: [404, 503],
  }),
  route({
    method: 'get',
    path: '/ui/:file',
    tag: 'Web page',
    summary: "The chat page's script and stylesheet (content-hashed names)",
    params: { file: 'A file name the page links to, e.g. app-<hash>.js' },
    auth: 'public',
    responses: { 200: { description: 'The file', mediaType: 'application/octet-stream' } },
    errors: [404, 503],
  }),
];
