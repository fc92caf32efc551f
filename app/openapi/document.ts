import { z } from 'zod';
import { errorMeanings, errorSchema, type RouteDoc } from './registry.js';

type JsonSchema = Record<string, unknown>;

/**
 * The OpenAPI 3.1 document of the given routes. Request schemas are read as inputs (what a
 * client sends, before defaults and transforms), responses as outputs. Definitions that zod puts
 * under a schema's `$defs` (recursive JSON, named schemas) move to `components.schemas`, where
 * an OpenAPI `$ref` can reach them.
 */
export function openApiDocument(routes: RouteDoc[], info: { version: string }) {
  const components: Record<string, JsonSchema> = {};
  let anonymous = 0;

  const toSchema = (schema: z.ZodType, io: 'input' | 'output'): JsonSchema => {
    const json = z.toJSONSchema(schema, { io, target: 'draft-2020-12', unrepresentable: 'any', reused: 'inline' }) as JsonSchema;
    delete json.$schema;
    const defs = (json.$defs ?? {}) as Record<string, JsonSchema>;
    delete json.$defs;
    // zod names a definition by its meta id, else __schemaN (unique within one call only).
    const names = new Map<string, string>();
    for (const key of Object.keys(defs)) names.set(key, key.startsWith('__schema') ? `Schema${++anonymous}` : key);
    const relink = (node: unknown): unknown => {
      if (Array.isArray(node)) return node.map(relink);
      if (!node || typeof node !== 'object') return node;
      const out: JsonSchema = {};
      for (const [k, v] of Object.entries(node)) {
        out[k] = k === '$ref' && typeof v === 'string' && v.startsWith('#/$defs/') ? `#/components/schemas/${names.get(v.slice(8)) ?? v.slice(8)}` : relink(v);
      }
      return out;
    };
    for (const [key, def] of Object.entries(defs)) components[names.get(key)!] = relink(def) as JsonSchema;
    // A schema with a meta id is itself a definition: the route refers to it.
    const root = relink(json) as JsonSchema;
    const id = schema.meta()?.id;
    if (typeof id !== 'string') return root;
    const ref = `#/components/schemas/${id}`;
    // zod may already have put it under $defs and answered a reference to it.
    if (root.$ref !== ref) components[id] = root;
    return { $ref: ref };
  };

  const queryParameters = (schema: z.ZodType) => {
    const json = toSchema(schema, 'input');
    const properties = (json.properties ?? {}) as Record<string, JsonSchema>;
    const required = new Set((json.required ?? []) as string[]);
    return Object.entries(properties).map(([name, s]) => ({
      name,
      in: 'query',
      required: required.has(name),
      ...(typeof s.description === 'string' && { description: s.description }),
      // An object parameter is sent as `name[key]=value`, the way OpenAI's SDKs send metadata filters.
      ...(s.type === 'object' && { style: 'deepObject', explode: true }),
      schema: s,
    }));
  };

  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
    const pathParams = [...r.path.matchAll(/:([A-Za-z0-9_]+)/g)].map(([, name]) => ({
      name,
      in: 'path',
      required: true,
      ...(r.params?.[name!] && { description: r.params[name!] }),
      schema: { type: 'string' },
    }));
    const headerParams = Object.entries(r.headers ?? {}).map(([name, description]) => ({ name, in: 'header', required: false, description, schema: { type: 'string' } }));
    const responses: Record<string, unknown> = {};
    for (const [status, res] of Object.entries(r.responses)) {
      responses[status] = {
        description: res.description,
        ...(res.headers && { headers: Object.fromEntries(Object.entries(res.headers).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])) }),
        ...((res.schema || res.mediaType) && {
          content: {
            ...(res.schema && { 'application/json': { schema: toSchema(res.schema, 'output') } }),
            ...(res.mediaType && { [res.mediaType]: { schema: { type: 'string' } } }),
          },
        }),
      };
    }
    for (const status of errorStatuses(r)) {
      responses[status] ??= { description: errorMeanings[status] ?? 'Error', content: { 'application/json': { schema: toSchema(errorSchema, 'output') } } };
    }
    (paths[path] ??= {})[r.method] = {
      operationId: operationId(r),
      summary: r.summary,
      ...(r.description && { description: r.description }),
      tags: [r.tag],
      ...(r.auth === 'public' && { security: [] }),
      ...(r.auth === 'admin' && { security: [{ adminKey: [] }, { bearer: [] }] }),
      parameters: [...pathParams, ...(r.query ? queryParameters(r.query) : []), ...headerParams],
      ...(r.body && { requestBody: { required: true, content: { 'application/json': { schema: toSchema(r.body, 'input') } } } }),
      responses,
    };
  }

  return {
    openapi: '3.1.0',
    info: {
      title: 'chat-proxy',
      version: info.version,
      description:
        'An OpenAI-compatible chat proxy that records conversations. OpenAI-shaped routes (chat completions, stored completions, conversation items, models) answer as OpenAI does; the native conversation API uses ISO-8601 timestamps. Errors always have OpenAI\'s shape.',
    },
    servers: [{ url: '/' }],
    security: [{}, { bearer: [] }, { session: [] }],
    tags: [...new Set(routes.map((r) => r.tag))].map((name) => ({ name })),
    paths,
    components: {
      schemas: components,
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An API key (cpk_…) or a JWT of the configured identity provider' },
        adminKey: { type: 'http', scheme: 'bearer', description: 'ADMIN_API_KEY' },
        session: { type: 'apiKey', in: 'header', name: 'x-session-id', description: 'An anonymous session id this server issued (or the cf_session_id cookie)' },
      },
    },
  };
}

/** The errors a route may answer: its own, and those every route of its kind may give. */
function errorStatuses(r: RouteDoc): number[] {
  const statuses = new Set(r.errors ?? []);
  if (r.path.startsWith('/v1/')) {
    // Identity and rate limiting run before every /v1 route; a server fault or busy database anywhere.
    for (const s of [400, 429, 500]) statuses.add(s);
    if (r.auth !== 'public') statuses.add(401);
    if (r.method !== 'get' && r.method !== 'delete') for (const s of [413, 415]) statuses.add(s);
  }
  if (r.persistence) for (const s of [501, 503]) statuses.add(s);
  if (r.auth === 'admin') statuses.add(403);
  return [...statuses].sort((a, b) => a - b);
}

/** `GET /v1/conversations/:id/items` → `getV1ConversationsIdItems`: unique per method and path. */
function operationId(r: RouteDoc): string {
  const words = r.path.split(/[/_.:{}-]+/).filter(Boolean);
  return r.method + words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('');
}
