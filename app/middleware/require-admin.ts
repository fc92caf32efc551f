import { createMiddleware } from 'hono/factory';
import { permissionDenied } from '../errors.js';
import type { AppEnv } from '../types.js';

/** The operator's ADMIN_API_KEY, or a signed-in user with is_admin; anyone else gets 403. */
export const requireAdmin = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const identity = c.get('identity');
    if (identity.type === 'admin' || (identity.type === 'user' && identity.user.isAdmin)) return next();
    throw permissionDenied(
      identity.type === 'user'
        ? `User '${identity.user.id}' is not an administrator: this needs ADMIN_API_KEY as a bearer, or the credentials of a user with is_admin.`
        : 'This needs an administrator: send ADMIN_API_KEY as a bearer, or the credentials of a user with is_admin.',
    );
  });
