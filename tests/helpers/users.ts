import { newApiKey } from '../../app/auth/api-keys.js';
import type { Store, User } from '../../db/store.js';

export interface TestUser {
  user: User;
  key: string;
  keyId: string;
  /** Headers that sign a request in as this user. */
  auth: { authorization: string };
}

/** A user with an API key, made through the store as an admin would. */
export async function signedInUser(store: Store, name = 'user', options: { admin?: boolean; expiresAt?: Date } = {}): Promise<TestUser> {
  const user = await store.createUser({ name, isAdmin: options.admin ?? false });
  const made = newApiKey();
  const key = await store.createApiKey({ userId: user.id, name: 'test', prefix: made.prefix, hash: made.hash, expiresAt: options.expiresAt ?? null });
  return { user, key: made.key, keyId: key.id, auth: { authorization: `Bearer ${made.key}` } };
}
