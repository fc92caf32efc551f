import { createMiddleware } from 'hono/factory';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

/**
 * The media types Hono's JSON validator parses (`application/json`, `application/*+json`):
 * the guard below must see every body the validator reads, or a body could reach zod unchecked.
 */
const JSON_MEDIA_TYPE = /^application\/([\w.-]+\+)?json$/i;
export const isJsonMediaType = (contentType: string | undefined) => JSON_MEDIA_TYPE.test(contentType?.split(';')[0]!.trim() ?? '');

/** Nesting depth of a parsed JSON value, counted without recursion; stops past `limit`. */
export function jsonDepth(value: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (depth > max && (max = depth) > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
    }
  }
  return max;
}

/**
 * zod and JSON.stringify recurse, so JSON nested thousands deep would overflow the stack and
 * surface as a 500. No real request nests `maxDepth` levels (JSON_MAX_DEPTH): refuse it up
 * front, clearly. The parsed body is cached by Hono, so the validator after this does not parse
 * it again.
 */
export const limitJsonDepth = (maxDepth: number) =>
  createMiddleware<AppEnv>(async (c, next) => {
    const method = c.req.method;
    if ((method === 'POST' || method === 'PUT' || method === 'PATCH') && isJsonMediaType(c.req.header('content-type'))) {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        // not JSON: the validator answers that
      }
      if (jsonDepth(body, maxDepth) > maxDepth) {
        throw new ApiError(
          400,
          'invalid_request_error',
          `The request body nests JSON more than ${maxDepth} levels deep (JSON_MAX_DEPTH).`,
          'json_too_deep',
        );
      }
    }
    await next();
  });
