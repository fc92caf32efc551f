import { z } from 'zod';
import { cursorSchema, intParam } from '../routes/conversations/schemas.js';

/*
 * What the admin API and `npm run admin` accept: one set of rules for both, so a user or key the
 * shell can make is one the API could have made.
 */

const name = z.string().min(1, 'must not be empty').max(200, 'must be at most 200 characters');
// OpenID Connect caps `sub` at 255 characters; an issuer is a URL, kept to a sane length.
const subject = z.string().min(1, 'must not be empty').max(255, 'must be at most 255 characters');
const issuer = z.string().max(1000, 'must be at most 1000 characters');

/** The latest instant Postgres and SQLite both read back as written (9999-12-31T23:59:59Z). */
const MAX_UNIX_SECONDS = 253_402_300_799;

/**
 * When a key stops working: an ISO-8601 date-time with its offset, or Unix seconds; always in
 * the future, checked against the clock when the request is read.
 */
const WHEN = 'must be an ISO-8601 date-time with an offset (e.g. 2030-01-31T00:00:00Z) or Unix seconds';
export const expiresAtSchema = z
  .union([z.iso.datetime({ offset: true, error: WHEN }), z.number().min(0, WHEN).max(MAX_UNIX_SECONDS, 'must be before the year 10000')], { error: WHEN })
  .transform((value, ctx) => {
    const at = new Date(typeof value === 'number' ? value * 1000 : value);
    if (at.getTime() > Date.now()) return at;
    ctx.addIssue({ code: 'custom', message: `must be in the future (${at.toISOString()} has passed)` });
    return z.NEVER;
  });

export const createUserSchema = z.strictObject({
  name,
  /** A subject alone (the issuer then defaults to the configured JWT issuer), or both. */
  external_id: z
    .union([subject, z.strictObject({ issuer, subject })], { error: 'must be a subject string or an object {issuer, subject}' })
    .optional(),
  is_admin: z.boolean().optional(),
});
export type CreateUserInput = z.infer<typeof createUserSchema>;

export const patchUserSchema = z.strictObject({
  name: name.optional(),
  is_admin: z.boolean().optional(),
});

export const createApiKeySchema = z.strictObject({
  name: name.nullable().optional(),
  expires_at: expiresAtSchema.nullable().optional(),
});
export type CreateApiKeyInput = z.infer<typeof createApiKeySchema>;

export const listUsersQuerySchema = z.object({
  cursor: cursorSchema.optional(),
  limit: intParam(1, 100).default(20),
});
export type ListUsersQuery = z.infer<typeof listUsersQuerySchema>;
