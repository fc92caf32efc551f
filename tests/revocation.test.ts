import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { startServerProcess, type ServerProcess } from './helpers/server-process.js';
import { signedInUser } from './helpers/users.js';

const mock = useMockUpstream();
const ADMIN_API_KEY = 'revocation-test-admin-key-0123456789abcdef';

describe.each(dialects)('revoking an API key across server processes on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    const DB_URL = db.target.dialect === 'sqlite' ? `file:${db.target.path}` : db.target.url;
    const env = { PERSIST_TRANSCRIPTS: 'true', DB_URL, OPENAI_BASE_URL: mock.url, ADMIN_API_KEY };
    [a, b] = await Promise.all([startServerProcess(env), startServerProcess(env)]);
  });
  afterAll(async () => {
    await Promise.all([a?.kill(), b?.kill()]);
    await db?.cleanup();
  });

  it('is refused by the process that revoked it at once, and by every other within 5 s', async () => {
    const u = await signedInUser(db.store, 'leaving');
    const me = (server: ServerProcess) => fetch(`${server.url}/v1/me`, { headers: u.auth });
    // Both processes have seen (and cached) the key.
    expect((await me(a)).status).toBe(200);
    expect((await me(b)).status).toBe(200);

    const revoked = await fetch(`${a.url}/v1/admin/api_keys/${u.keyId}`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_API_KEY}` } });
    expect(revoked.status).toBe(204);
    const at = Date.now();
    const refused = await me(a);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('invalid_api_key');

    let status = 200;
    while (status === 200 && Date.now() - at < 10_000) {
      status = (await me(b)).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(401);
    expect(Date.now() - at).toBeLessThan(5_000);
  });
});
