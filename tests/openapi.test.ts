import { describe, expect, it } from 'vitest';
import { call, testApp, type TestApp } from './helpers/app.js';

/**
 * The API reference: /openapi.json describes every route the app serves (and none it does not),
 * and /docs shows it with files served from the installed swagger-ui-dist, no CDN.
 */

type Doc = { openapi: string; paths: Record<string, Record<string, any>>; components: { schemas: Record<string, unknown> } };
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/** `METHOD /path/{param}` of every route the app answers (middleware left out). */
function servedRoutes(app: Pick<TestApp, 'routes'>): Set<string> {
  return new Set(
    app.routes
      .filter((r) => METHODS.includes(r.method.toLowerCase()) && !r.path.endsWith('*'))
      .map((r) => `${r.method.toUpperCase()} ${r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}')}`),
  );
}
const documentedRoutes = (doc: Doc) => new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
const missingFrom = (doc: Doc, app: Pick<TestApp, 'routes'>) => [...servedRoutes(app)].filter((r) => !documentedRoutes(doc).has(r));

describe('the OpenAPI document', () => {
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });
  const load = async (from: TestApp = app) => {
    const res = await call(from, 'GET', '/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('application/json');
    return res.json as Doc;
  };

  it('describes every route the app serves, and no other', async () => {
    const doc = await load();
    expect(doc.openapi).toBe('3.1.0');
    expect(missingFrom(doc, app)).toEqual([]);
    expect([...documentedRoutes(doc)].filter((r) => !servedRoutes(app).has(r))).toEqual([]);
    // The routes of the OpenAI-shaped families are among them.
    for (const route of [
      'GET /v1/chat/completions',
      'GET /v1/chat/completions/{id}',
      'POST /v1/chat/completions/{id}',
      'DELETE /v1/chat/completions/{id}',
      'GET /v1/chat/completions/{id}/messages',
      'GET /v1/conversations/{id}/items',
      'POST /v1/conversations/{id}/items',
      'GET /v1/conversations/{id}/items/{item_id}',
      'DELETE /v1/conversations/{id}/items/{item_id}',
      'GET /v1/models',
    ]) {
      expect(documentedRoutes(doc)).toContain(route);
    }
  });

  it('notices a route the document does not describe', async () => {
    const doc = await load();
    const grown = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });
    grown.get('/v1/undocumented/:id', (c) => c.text('x'));
    expect(missingFrom(doc, grown)).toEqual(['GET /v1/undocumented/{id}']);
  });

  it('resolves every reference, names each operation once, and gives every error its shape', async () => {
    const doc = await load();
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"([^"]+)"/g)].map(([, ref]) => ref!);
    expect(refs.length).toBeGreaterThan(0);
    for (const ref of new Set(refs)) {
      expect(ref).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas, ref).toHaveProperty(ref.slice('#/components/schemas/'.length));
    }
    const operations = Object.values(doc.paths).flatMap((ops) => Object.values(ops));
    const ids = operations.map((op) => op.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const op of operations) {
      expect(Object.keys(op.responses).length, op.operationId).toBeGreaterThan(0);
      for (const [status, response] of Object.entries<any>(op.responses)) {
        // /healthz answers a database that is down with its own body, {status: "degraded"}.
        if (Number(status) >= 400 && op.operationId !== 'getHealthz') expect(response.content['application/json'].schema, `${op.operationId} ${status}`).toEqual({ $ref: '#/components/schemas/Error' });
      }
    }
  });

  it('documents the requests with the schemas the handlers validate with', async () => {
    const doc = await load();
    const list = doc.paths['/v1/chat/completions']!.get;
    const metadata = list.parameters.find((p: any) => p.name === 'metadata');
    expect(metadata).toMatchObject({ in: 'query', style: 'deepObject', explode: true, schema: { type: 'object', maxProperties: 16, additionalProperties: { type: 'string', maxLength: 512 } } });
    expect(list.parameters.find((p: any) => p.name === 'order').schema).toMatchObject({ enum: ['asc', 'desc'], default: 'asc' });
    expect(doc.paths['/v1/conversations/{id}/items']!.get.parameters.find((p: any) => p.name === 'order').schema).toMatchObject({ default: 'desc' });
    const itemsBody = doc.paths['/v1/conversations/{id}/items']!.post.requestBody.content['application/json'].schema;
    expect(itemsBody.properties.items).toMatchObject({ type: 'array', maxItems: 20 });
    const chat = doc.paths['/v1/chat/completions']!.post;
    expect(Object.keys(chat.requestBody.content['application/json'].schema.properties)).toEqual(expect.arrayContaining(['messages', 'store', 'metadata', 'conversation_id']));
    expect(Object.keys(chat.responses['200'].content)).toEqual(['application/json', 'text/event-stream']);
    expect(chat.responses['200'].headers).toHaveProperty('x-chat-completion-id');
    expect(doc.paths['/v1/conversations/{id}']!.delete.responses['200'].content['application/json'].schema.properties.object).toEqual({ type: 'string', const: 'conversation.deleted' });
  });

  it('is served without credentials, even where every /v1 route needs them', async () => {
    const closed = testApp(null, { PERSIST_TRANSCRIPTS: 'false', ANONYMOUS_ACCESS: 'false', ADMIN_API_KEY: 'a'.repeat(32) });
    expect((await load(closed)).openapi).toBe('3.1.0');
    expect((await call(closed, 'GET', '/docs')).status).toBe(200);
  });
});

describe('the reference page at /docs', () => {
  const app = testApp(null, { PERSIST_TRANSCRIPTS: 'false' });

  it('is Swagger UI from the installed package, every file it loads served here', async () => {
    const page = await call(app, 'GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toContain('text/html');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const files = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map(([, url]) => url!);
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const file of files) {
      // Nothing from another host: the page works offline.
      expect(file).toMatch(/^\/docs\//);
      const res = await app.request(file);
      expect(res.status, file).toBe(200);
      expect((await res.arrayBuffer()).byteLength, file).toBeGreaterThan(0);
    }
    const bundle = await app.request('/docs/swagger-ui-bundle.js');
    expect(bundle.headers.get('content-type')).toContain('javascript');
    expect(await bundle.text()).toContain('SwaggerUIBundle');
    expect(await (await app.request('/docs/init.js')).text()).toContain("url: '/openapi.json'");
  });

  it.each(['package.json', 'index.html', '..%2Fpackage.json', 'swagger-ui-bundle.js.map'])('serves nothing else of the package: %s', async (file) => {
    const res = await call(app, 'GET', `/docs/${file}`);
    expect(res.status).toBe(404);
    expect(res.json.error.type).toBe('not_found_error');
  });
});
