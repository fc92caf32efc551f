import { Hono } from 'hono';
import { z } from 'zod';
import { requirePersistence } from '../middleware/persistence.js';
import { sessionInfo } from '../middleware/session.js';
import { PERSIST_HEADER } from '../privacy/policy.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';

const consentSchema = z.strictObject({
  consent: z.enum(['granted', 'denied'], { error: "must be 'granted' or 'denied'" }),
});

export const privacy = new Hono<AppEnv>()
  /** What a frontend needs for its consent note: what is kept, for how long, and how to say no. */
  .get('/', async (c) => {
    const { config, consents } = c.get('services');
    const persist = consents !== null;
    return c.json({
      object: 'privacy',
      persistence: persist,
      stored: persist
        ? [
            'conversation titles and metadata',
            'messages you send and the answers you receive',
            ...(config.redactSystemPrompts ? [] : ['system prompts']),
            'token counts, finish reasons and timestamps',
            'your session id and browser user agent',
            'when signed in: your display name, your identity provider subject, and a hash of each API key',
            ...(config.ipHashSalt ? ['a salted hash of your network address'] : []),
          ]
        : [],
      never_stored: ['API keys', 'Authorization headers', 'cookies', ...(config.ipHashSalt ? [] : ['network addresses']), ...(config.redactSystemPrompts ? ['system prompts'] : [])],
      redact_system_prompts: config.redactSystemPrompts,
      retention_days: persist && config.retention.days > 0 ? config.retention.days : null,
      deleted_retention_days: persist ? config.retention.deletedDays : null,
      consent_required: persist && config.privacy.consentRequired,
      consent: persist ? await consents.get(c.get('principal').sessionId) : null,
      opt_out_header: `${PERSIST_HEADER}: off`,
      notice: config.privacy.notice,
    });
  })

  /** Opt in or out for this session; opting out stops anything new being stored for it. */
  .post('/consent', requirePersistence(), validate('json', consentSchema), async (c) => {
    const { consent } = c.req.valid('json');
    await c.get('services').consents!.set(c.get('principal').sessionId, consent, sessionInfo(c));
    return c.json({ object: 'privacy.consent', consent });
  });

export const privacyDocs = [
  route({
    method: 'get',
    path: '/v1/privacy',
    tag: 'Privacy',
    summary: "What is stored, for how long, and this session's consent",
    responses: { 200: { description: 'The privacy summary', schema: z.object({ object: z.literal('privacy'), persistence: z.boolean(), consent: z.enum(['granted', 'denied']).nullable() }).loose() } },
  }),
  route({
    method: 'post',
    path: '/v1/privacy/consent',
    tag: 'Privacy',
    summary: "Record the session's choice",
    body: consentSchema,
    responses: { 200: { description: 'The choice', schema: z.object({ object: z.literal('privacy.consent'), consent: z.enum(['granted', 'denied']) }) } },
    persistence: true,
  }),
];
