import { Hono } from 'hono';
import { z } from 'zod';
import type { Store } from '../../db/store.js';
import { ApiError, permissionDenied } from '../errors.js';
import { requirePersistence } from '../middleware/persistence.js';
import { hashSessionId } from '../session-ids.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';

const DAY_MS = 86_400_000;
/** Usage covers at most this many days per request, so one query cannot sum a decade. */
export const USAGE_MAX_DAYS = 366;

const instant = z
  .string()
  .refine((v) => /^\d{4}-\d{2}-\d{2}([T ][\d:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(v) && !Number.isNaN(Date.parse(v)), {
    message: 'must be an ISO-8601 date or date-time, e.g. 2026-01-31 or 2026-01-31T12:00:00Z',
  })
  .transform((v) => new Date(v));

const usageQuery = z
  .object({
    from: instant.optional(),
    to: instant.optional(),
    group_by: z.enum(['day', 'model'], { error: "must be 'day' or 'model'" }).optional(),
  })
  .transform((q, ctx) => {
    const to = q.to ?? new Date();
    const from = q.from ?? new Date(to.getTime() - 30 * DAY_MS);
    if (from >= to) ctx.addIssue({ code: 'custom', path: ['from'], message: "must be before 'to'" });
    else if (to.getTime() - from.getTime() > USAGE_MAX_DAYS * DAY_MS) ctx.addIssue({ code: 'custom', path: ['from'], message: `must be at most ${USAGE_MAX_DAYS} days before 'to'` });
    return { from, to, groupBy: q.group_by ?? null };
  });

/** `/v1/me`: who the server takes the caller for, what it has used, and claiming an anonymous session's chats. */
export const me = new Hono<AppEnv & { Variables: { store: Store } }>()
  .get('/', (c) => {
    const identity = c.get('identity');
    return c.json({
      object: 'principal',
      type: identity.type,
      user: identity.user && { id: identity.user.id, name: identity.user.name, is_admin: identity.user.isAdmin },
      session_id: identity.sessionId,
    });
  })

  .get('/usage', requirePersistence(), validate('query', usageQuery), async (c) => {
    const { from, to, groupBy } = c.req.valid('query');
    const rows = await c.get('store').usage(c.get('principal'), { from, to, groupBy });
    const numbers = (r: { tokensIn: number; tokensOut: number; requests: number }) => ({ tokens_in: r.tokensIn, tokens_out: r.tokensOut, requests: r.requests });
    const total = rows.reduce((t, r) => ({ tokensIn: t.tokensIn + r.tokensIn, tokensOut: t.tokensOut + r.tokensOut, requests: t.requests + r.requests }), {
      tokensIn: 0,
      tokensOut: 0,
      requests: 0,
    });
    return c.json({
      object: 'usage',
      from: from.toISOString(),
      to: to.toISOString(),
      group_by: groupBy,
      data: groupBy ? rows.map((r) => ({ [groupBy]: r.key, ...numbers(r) })) : [],
      total: numbers(total),
    });
  })

  /** A user who just signed in takes over the conversations of the anonymous session it sends. */
  .post('/claim', requirePersistence(), async (c) => {
    const identity = c.get('identity');
    if (identity.type !== 'user') throw permissionDenied('Only a signed-in user can claim a session: send Authorization: Bearer with your API key or token.');
    if (!identity.sessionId) {
      throw new ApiError(
        400,
        'invalid_request_error',
        'Send the anonymous session to claim in the x-session-id header (or its cf_session_id cookie) along with your credentials.',
        'missing_session',
        'x-session-id',
      );
    }
    const claimed = await c.get('store').claimSession(hashSessionId(identity.sessionId), identity.user.id);
    return c.json({ object: 'session.claim', claimed });
  });

const totals = z.object({ tokens_in: z.number().int(), tokens_out: z.number().int(), requests: z.number().int() });
export const meDocs = [
  route({
    method: 'get',
    path: '/v1/me',
    tag: 'Me',
    summary: 'Who the server takes the caller for',
    responses: {
      200: {
        description: 'The principal',
        schema: z.object({
          object: z.literal('principal'),
          type: z.enum(['user', 'session', 'admin', 'public']),
          user: z.object({ id: z.string(), name: z.string(), is_admin: z.boolean() }).nullable(),
          session_id: z.string().nullable(),
        }),
      },
    },
  }),
  route({
    method: 'get',
    path: '/v1/me/usage',
    tag: 'Me',
    summary: "Token totals of the caller's own conversations",
    query: usageQuery,
    responses: {
      200: {
        description: 'Totals, per day or model when asked',
        schema: z.object({ object: z.literal('usage'), from: z.string(), to: z.string(), group_by: z.enum(['day', 'model']).nullable(), data: z.array(totals.loose()), total: totals }),
      },
    },
    persistence: true,
  }),
  route({
    method: 'post',
    path: '/v1/me/claim',
    tag: 'Me',
    summary: "Take over an anonymous session's conversations (signed-in user, with the session)",
    responses: { 200: { description: 'How many were claimed', schema: z.object({ object: z.literal('session.claim'), claimed: z.number().int() }) } },
    errors: [403],
    persistence: true,
  }),
];
