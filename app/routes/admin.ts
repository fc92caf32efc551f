import { Hono, type Context } from 'hono';
import type { Store } from '../../db/store.js';
import { adminService } from '../admin/service.js';
import { createApiKeySchema, createUserSchema, listUsersQuerySchema, patchUserSchema } from '../admin/schemas.js';
import { requirePersistence } from '../middleware/persistence.js';
import { requireAdmin } from '../middleware/require-admin.js';
import { z } from 'zod';
import { route } from '../openapi/registry.js';
import type { AppEnv } from '../types.js';
import { validate } from '../validate.js';

type Env = AppEnv & { Variables: { store: Store } };

const service = (c: Context<Env>) => adminService(c.get('store'), c.get('services').config);

/**
 * Users and their API keys, for the operator (ADMIN_API_KEY) and users with is_admin. The same
 * operations run from the shell as `npm run admin`. Nothing here answers with message content.
 */
export const admin = new Hono<Env>()
  // Who may ask comes first: a non-admin learns nothing, not even whether persistence is on.
  .use(requireAdmin(), requirePersistence())

  .post('/users', validate('json', createUserSchema), async (c) => {
    return c.json(await service(c).createUser(c.req.valid('json')), 201);
  })

  .get('/users', validate('query', listUsersQuerySchema), async (c) => {
    return c.json(await service(c).listUsers(c.req.valid('query')));
  })

  .patch('/users/:id', validate('json', patchUserSchema), async (c) => {
    const user = await service(c).updateUser(c.req.param('id'), c.req.valid('json'));
    // A changed admin flag counts from this process's next request, not after the cache expires.
    c.get('services').credentials.forgetUser(user.id);
    return c.json(user);
  })

  .delete('/users/:id', async (c) => {
    const erased = await service(c).eraseUser(c.req.param('id'));
    c.get('services').credentials.forgetUser(erased.id);
    return c.json(erased);
  })

  .post('/users/:id/api_keys', validate('json', createApiKeySchema), async (c) => {
    return c.json(await service(c).createApiKey(c.req.param('id'), c.req.valid('json')), 201);
  })

  .get('/users/:id/api_keys', async (c) => {
    return c.json(await service(c).listApiKeys(c.req.param('id')));
  })

  .delete('/api_keys/:id', async (c) => {
    const id = c.req.param('id');
    await service(c).revokeApiKey(id);
    // Refused by this process from the next request on; other processes within CREDENTIAL_CACHE_MS.
    c.get('services').credentials.forgetKey(id);
    return c.body(null, 204);
  });

const user = z
  .object({ id: z.string(), object: z.literal('user'), name: z.string(), external_id: z.object({ issuer: z.string(), subject: z.string() }).nullable(), is_admin: z.boolean(), created_at: z.string() })
  .meta({ id: 'User' });
const apiKey = z
  .object({
    id: z.string(),
    object: z.literal('api_key'),
    user_id: z.string(),
    name: z.string().nullable(),
    prefix: z.string(),
    created_at: z.string(),
    last_used_at: z.string().nullable(),
    expires_at: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .meta({ id: 'ApiKey' });
const admin_ = { tag: 'Administration', auth: 'admin' as const, persistence: true };
const userParam = { id: 'The user id' };
export const adminDocs = [
  route({ ...admin_, method: 'post', path: '/v1/admin/users', summary: 'Create a user', body: createUserSchema, responses: { 201: { description: 'The user', schema: user } }, errors: [409] }),
  route({
    ...admin_,
    method: 'get',
    path: '/v1/admin/users',
    summary: 'List users, oldest first',
    query: listUsersQuerySchema,
    responses: { 200: { description: 'A page of users', schema: z.object({ object: z.literal('list'), items: z.array(user), next_cursor: z.string().nullable() }) } },
  }),
  route({ ...admin_, method: 'patch', path: '/v1/admin/users/:id', summary: 'Change a user', params: userParam, body: patchUserSchema, responses: { 200: { description: 'The user', schema: user } }, errors: [404] }),
  route({
    ...admin_,
    method: 'delete',
    path: '/v1/admin/users/:id',
    summary: 'Erase a user and what they own',
    params: userParam,
    responses: {
      200: {
        description: 'What was erased',
        schema: z.object({ id: z.string(), object: z.literal('user.deleted'), deleted: z.object({ conversations: z.number(), messages: z.number(), api_keys: z.number(), shares: z.number() }) }),
      },
    },
    errors: [404],
  }),
  route({
    ...admin_,
    method: 'post',
    path: '/v1/admin/users/:id/api_keys',
    summary: "Make a user's API key (shown once)",
    params: userParam,
    body: createApiKeySchema,
    responses: { 201: { description: 'The key, with its secret this once', schema: apiKey.omit({ user_id: true, last_used_at: true, revoked_at: true }).extend({ key: z.string() }) } },
    errors: [404],
  }),
  route({
    ...admin_,
    method: 'get',
    path: '/v1/admin/users/:id/api_keys',
    summary: "List a user's API keys",
    params: userParam,
    responses: { 200: { description: 'The keys', schema: z.object({ object: z.literal('list'), items: z.array(apiKey) }) } },
    errors: [404],
  }),
  route({ ...admin_, method: 'delete', path: '/v1/admin/api_keys/:id', summary: 'Revoke an API key', params: { id: 'The key id' }, responses: { 204: { description: 'Revoked' } }, errors: [404] }),
];
