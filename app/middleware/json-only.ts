import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';
import { isJsonMediaType } from './json-depth.js';

export interface JsonOnlyOptions {
  /**
   * Paths whose endpoint takes another media type and checks it itself (e.g. an
   * application/x-ndjson import), matched against the whole path: `:name` stands for one
   * segment, `*` for any rest, e.g. `/v1/conversations/:id/import`.
   */
  exempt?: string[];
}

/**
 * Writes take JSON and nothing else. A page on another site can POST a form
 * (application/x-www-form-urlencoded, multipart/form-data, text/plain) without a CORS preflight,
 * and the browser attaches our session cookie; Hono's JSON validator reads such a body as `{}`,
 * which some endpoints accept (a new conversation). Refusing every other media type with 415, and
 * a body with none, closes that door: JSON can only be sent cross-site after a preflight that
 * CORS answers. A request with no body and no type (POST /v1/conversations with defaults) passes.
 */
export const jsonOnly = ({ exempt = [] }: JsonOnlyOptions = {}) => {
  const exempted = exempt.map(pathPattern);
  return createMiddleware<AppEnv>(async (c, next) => {
    const method = c.req.method;
    if ((method === 'POST' || method === 'PUT' || method === 'PATCH') && !exempted.some((p) => p.test(c.req.path))) {
      const contentType = c.req.header('content-type')?.trim();
      if (contentType ? !isJsonMediaType(contentType) : hasBody(c)) {
        throw new ApiError(
          415,
          'invalid_request_error',
          `This endpoint takes JSON; the request has ${contentType ? `Content-Type ${mediaTypeOf(contentType)}` : 'a body but no Content-Type'}. Send the body as JSON with Content-Type: application/json.`,
          'unsupported_media_type',
        );
      }
    }
    await next();
  });
};

/** What the HTTP layer says of a body: a length above 0, or chunks (transfer-encoding). */
function hasBody(c: Context): boolean {
  const length = c.req.header('content-length');
  // Anything but a plain 0 counts as a body (Node refuses malformed lengths before we see them).
  return (length !== undefined && Number(length) !== 0) || c.req.header('transfer-encoding') !== undefined;
}

/** The media type as received, quoted, without parameters (a boundary says nothing), cut short. */
const mediaTypeOf = (contentType: string) => JSON.stringify(contentType.split(';')[0]!.trim().replace(/[^\x21-\x7e]/g, '').slice(0, 100));

/** `/v1/conversations/:id/import` → a RegExp matching that path whole. */
function pathPattern(pattern: string): RegExp {
  const source = pattern
    .split('/')
    .map((segment) => (segment === '*' ? '.*' : segment.startsWith(':') ? '[^/]+' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}
