import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Hono } from 'hono';
import { ApiError } from '../errors.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';

/*
 * The API reference: `/openapi.json`, built from the routes' own schemas, and `/docs`, Swagger UI
 * served from the installed swagger-ui-dist package (no CDN: it works offline).
 */

let document: string | undefined;
/**
 * Built on first request, then kept: it cannot change while the process runs. Imported then, not
 * above: the list of documented routes imports this module back.
 */
async function openApiJson(): Promise<string> {
  if (document === undefined) {
    const [{ openApiDocument }, { documentedRoutes }] = await Promise.all([import('../openapi/document.js'), import('../openapi/routes.js')]);
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    document = JSON.stringify(openApiDocument(documentedRoutes, { version: pkg.version }));
  }
  return document;
}

/** The Swagger UI files the page loads, and their media types; nothing else of the package is served. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'text/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'text/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};
const assets = new Map<string, Buffer>();
function asset(name: string): Buffer {
  let body = assets.get(name);
  if (!body) {
    const folder = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
    body = readFileSync(join(folder, name));
    assets.set(name, body);
  }
  return body;
}

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>chat-proxy API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/swagger-ui-standalone-preset.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;
// A file of its own rather than an inline script, so the page's policy can forbid inline scripts.
const INIT = `window.ui = SwaggerUIBundle({ url: '/openapi.json', dom_id: '#swagger-ui', deepLinking: true, presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: 'BaseLayout' });\n`;
const PAGE_POLICY = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

export const reference = new Hono<AppEnv>()
  .get('/openapi.json', async (c) => c.body(await openApiJson(), 200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache' }))
  .get('/docs', (c) => c.html(PAGE, 200, { 'content-security-policy': PAGE_POLICY, 'cache-control': 'no-cache' }))
  .get('/docs/:file', (c) => {
    const file = c.req.param('file');
    const cache = { 'cache-control': 'public, max-age=3600' };
    if (file === 'init.js') return c.body(INIT, 200, { 'content-type': 'text/javascript; charset=utf-8', ...cache });
    const type = ASSETS[file];
    if (!type) throw new ApiError(404, 'not_found_error', `No file '${file}' in the API reference.`, 'not_found', 'file');
    return c.body(new Uint8Array(asset(file)), 200, { 'content-type': type, ...cache });
  });

export const referenceDocs = [
  route({
    method: 'get',
    path: '/openapi.json',
    tag: 'Reference',
    summary: 'This document (OpenAPI 3.1)',
    auth: 'public',
    responses: { 200: { description: 'The OpenAPI document', mediaType: 'application/json' } },
  }),
  route({ method: 'get', path: '/docs', tag: 'Reference', summary: 'The API reference page (Swagger UI)', auth: 'public', responses: { 200: { description: 'HTML', mediaType: 'text/html' } } }),
  route({
    method: 'get',
    path: '/docs/:file',
    tag: 'Reference',
    summary: "The reference page's scripts and styles",
    params: { file: 'swagger-ui.css, swagger-ui-bundle.js, swagger-ui-standalone-preset.js, init.js, favicon-32x32.png or favicon-16x16.png' },
    auth: 'public',
    responses: { 200: { description: 'The file', mediaType: 'application/octet-stream' } },
    errors: [404],
  }),
];
