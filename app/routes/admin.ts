import { Hono, type Context } from 'hono';
import type { Store } from '../../db/store.js';
import { adminService } from '../admin/service.js';
import { createApiKeySchema, createUserSchema, listUsersQuerySchema, patchUserSchema } from '../admin/schemas.js';
import { requirePersistence } from '../middleware/persistence.js';
import { requireAdmin } from '../middleware/require-admin.js';
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
