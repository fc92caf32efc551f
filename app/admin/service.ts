import type { ApiKey, Store, User } from '../../db/store.js';
import { newApiKey } from '../auth/api-keys.js';
import type { Config } from '../env.js';
import { notFound } from '../errors.js';
import { encodeCursor } from '../routes/conversations/schemas.js';
import type { CreateApiKeyInput, CreateUserInput, ListUsersQuery } from './schemas.js';

/*
 * What an administrator can do, for the admin API and `npm run admin` alike: the store calls, the
 * key-making and the JSON each answers with. Nothing here returns message content or a key's hash;
 * a new key's secret leaves only in `createApiKey`'s answer, once.
 */

export function userJson(u: User) {
  return {
    id: u.id,
    object: 'user' as const,
    name: u.name,
    external_id: u.subject === null ? null : { issuer: u.issuer ?? '', subject: u.subject },
    is_admin: u.isAdmin,
    created_at: u.createdAt.toISOString(),
  };
}

export function apiKeyJson(k: ApiKey) {
  return {
    id: k.id,
    object: 'api_key' as const,
    user_id: k.userId,
    name: k.name,
    prefix: k.prefix,
    created_at: k.createdAt.toISOString(),
    last_used_at: k.lastUsedAt?.toISOString() ?? null,
    expires_at: k.expiresAt?.toISOString() ?? null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
  };
}

/** Only what the admin service needs of the configuration, so the CLI can build it from a few variables. */
export type AdminConfig = Pick<Config, 'auth' | 'retention'>;

export function adminService(store: Store, config: AdminConfig) {
  /** A bare subject belongs to the identity provider this server trusts, as a JWT user's would. */
  const defaultIssuer = configuredIssuer(config.auth.jwt);

  const userOrNotFound = async (id: string) => {
    const user = await store.getUser(id);
    if (!user) throw notFound('user', id);
    return user;
  };

  return {
    /** Throws DuplicateError (409) when the issuer and subject belong to another user. */
    async createUser(input: CreateUserInput) {
      const external = typeof input.external_id === 'string' ? { issuer: defaultIssuer, subject: input.external_id } : input.external_id;
      const user = await store.createUser({ name: input.name, issuer: external?.issuer ?? null, subject: external?.subject ?? null, isAdmin: input.is_admin ?? false });
      return userJson(user);
    },

    async updateUser(id: string, patch: { name?: string | undefined; is_admin?: boolean | undefined }) {
      const user = await store.updateUser(id, { ...(patch.name !== undefined && { name: patch.name }), ...(patch.is_admin !== undefined && { isAdmin: patch.is_admin }) });
      if (!user) throw notFound('user', id);
      return userJson(user);
    },

    /** One page, oldest first, after `cursor` (a previous page's next_cursor, decoded). */
    async listUsers({ limit, cursor }: ListUsersQuery) {
      const page = await store.listUsers({ limit, after: cursor ?? null });
      const last = page.items.at(-1);
      return { object: 'list' as const, items: page.items.map(userJson), next_cursor: page.hasMore && last ? encodeCursor(last) : null };
    },

    /** Makes a key for the user; the answer carries the key itself, which is never shown again. */
    async createApiKey(userId: string, input: CreateApiKeyInput) {
      const { key, prefix, hash } = newApiKey();
      const made = await store.createApiKey({ userId, name: input.name ?? null, prefix, hash, expiresAt: input.expires_at ?? null });
      return {
        id: made.id,
        object: 'api_key' as const,
        name: made.name,
        prefix: made.prefix,
        key,
        created_at: made.createdAt.toISOString(),
        expires_at: made.expiresAt?.toISOString() ?? null,
      };
    },

    async listApiKeys(userId: string) {
      await userOrNotFound(userId);
      return { object: 'list' as const, items: (await store.listApiKeys(userId)).map(apiKeyJson) };
    },

    /** Revoking twice keeps the first time; only an unknown id is an error. */
    async revokeApiKey(id: string, now = new Date()) {
      if (!(await store.revokeApiKey(id, now))) throw notFound('API key', id);
    },

    /** Erases the user and everything of theirs, `RETENTION_BATCH_SIZE` conversations at a time. */
    async eraseUser(id: string) {
      const erased = await store.eraseUser(id, config.retention.batchSize);
      if (!erased) throw notFound('user', id);
      return {
        id,
        object: 'user.deleted' as const,
        deleted: { conversations: erased.conversations, messages: erased.messages, api_keys: erased.apiKeys, shares: erased.shares },
      };
    },
  };
}

/** The issuer JWTs must carry ('' when none is required: a token without `iss` has issuer ''). */
function configuredIssuer(jwt: { issuer?: string | undefined } | null): string {
  return jwt?.issuer ?? '';
}

export type AdminService = ReturnType<typeof adminService>;
