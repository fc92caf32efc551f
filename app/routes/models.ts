import { Hono } from 'hono';
import { z } from 'zod';
import { allowsModel } from '../chat/model-allowlist.js';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { passError } from '../upstream/answer.js';

/**
 * `GET /v1/models`: the upstream's models, so a UI can offer them; with MODEL_ALLOWLIST set,
 * only those a chat may use. Cached for a minute (app/upstream/models.ts).
 */
export const models = new Hono<AppEnv>().get('/', async (c) => {
  const { models: upstreamModels, config } = c.get('services');
  const answer = await upstreamModels.list();
  if (!answer.ok) return passError(c, answer.response, answer.text, upstreamModels.endpoint!);
  const allowlist = config.chatLimits.modelAllowlist;
  const data = allowlist ? answer.body.data.filter((m) => allowsModel(allowlist, m.id)) : answer.body.data;
  return c.json({ object: 'list', data });
});

const modelSchema = z.object({ id: z.string(), object: z.literal('model'), created: z.number().int(), owned_by: z.string() }).loose();

export const modelDocs = [
  route({
    method: 'get',
    path: '/v1/models',
    tag: 'Models',
    summary: "List the upstream's models",
    description: "The upstream provider's list (cached for 60 s), limited to MODEL_ALLOWLIST when it is set. An upstream error passes through as the chat proxy passes them.",
    responses: { 200: { description: 'The models', schema: z.object({ object: z.literal('list'), data: z.array(modelSchema) }) } },
    errors: [502, 503, 504],
  }),
];
