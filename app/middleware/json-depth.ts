import { createMiddleware } from 'hono/factory';
import { ApiError } from '../errors.js';
import type { AppEnv } from '../types.js';

export const MAX_JSON_DEPTH = 100;

/** Nesting depth of a parsed JSON value, counted without recursion; stops past `limit`. */
function jsonDepth(value: unknown, limit: number): number {
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
 * surface as a 500. No real request nests 100 levels: refuse it up front, clearly. The parsed
 * body is cached by Hono, so the validator after this does not parse it again.
 */
export const limitJsonDepth = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const method = c.req.method;
    if ((method === 'POST' || method === 'PUT' || method === 'PATCH') && /^application\/json/i.test(c.req.header('content-type') ?? '')) {
      let body: unknown;
      try {
        body = await c.req.json();
      } catch {
        // not JSON: the validator answers that
      }
      if (jsonDepth(body, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) {
        throw new ApiError(400, 'invalid_request_error', `The request body nests JSON more than ${MAX_JSON_DEPTH} levels deep.`, 'json_too_deep');
      }
    }
    await next();
  });
