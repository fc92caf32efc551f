import { zValidator } from '@hono/zod-validator';
import type { ValidationTargets } from 'hono';
import { z } from 'zod';
import { ApiError } from './errors.js';

const where: Record<keyof ValidationTargets, string> = {
  json: 'body',
  query: 'query parameter',
  param: 'path parameter',
  header: 'header',
  cookie: 'cookie',
  form: 'form field',
};

/** zod validation whose failures become a 400 naming the first offending field. */
export const validate = <Target extends keyof ValidationTargets, Schema extends z.ZodType>(target: Target, schema: Schema) =>
  zValidator(target, schema, (result) => {
    if (result.success) return;
    const issue = result.error.issues[0]!;
    const param = issue.path.length ? issue.path.map(String).join('.') : null;
    const message = param ? `Invalid ${where[target]} '${param}': ${issue.message}` : `Invalid request ${where[target]}: ${issue.message}`;
    throw new ApiError(400, 'invalid_request_error', message, 'invalid_value', param);
  });

/** A query parameter that is a whole number in [min, max]. */
export const intParam = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));
