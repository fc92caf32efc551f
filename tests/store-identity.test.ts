import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ConversationAccessError,
  ConversationNotFoundError,
  DuplicateError,
  LimitExceededError,
  UserNotFoundError,
  type Store,
} from '../db/store.js';
import { dialects, sharedTestStore } from './helpers/dialects.js';
import { anon, rejection, roomy, signedIn as as } from './helpers/principals.js';

/**
 * The identity half of the Store contract, on each dialect through the interface: users, keys,
 * shares and what they let a principal do, links, claims, erasure and usage.
 */

const hex = () => crypto.randomUUID().replaceAll('-', '') + crypto.randomUUID().replaceAll('-', '');

describe.each(dialects)('Identity store contract on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let store: Store;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    store = db.store;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const user = (name = 'someone', extra: Parameters<Store['createUser']>[0] = { name }) => store.createUser({ ...extra, name });

  describe('users', () => {
    it('creates, reads, renames and pages users, oldest first', async () => {
      const a = await user('Ada');
      expect(a).toMatchObject({ name: 'Ada', issuer: null, subject: null, isAdmin: false });
      expect(await store.getUser(a.id)).toEqual(a);
      expect(await store.updateUser(a.id, { name: 'Ada L.', isAdmin: true })).toMatchObject({ id: a.id, name: 'Ada L.', isAdmin: true });
      expect(await store.updateUser('nobody', { name: 'x' })).toBeNull();
      const seen: string[] = [];
      let after = null;
      for (let i = 0; i < 100; i++) {
        const page: Awaited<ReturnType<Store['listUsers']>> = await store.listUsers({ limit: 2, after });
        seen.push(...page.items.map((u) => u.id));
        if (!page.hasMore) break;
        after = page.items.at(-1)!;
      }
      expect(new Set(seen).size).toBe(seen.length);
      expect(seen).toContain(a.id);
    });

    it('keeps one user per issuer and subject, made on first sight even by racing requests', async () => {
      const subject = `sub-${crypto.randomUUID()}`;
      const made = await Promise.all(Array.from({ length: 5 }, () => store.userForExternalId('https://idp.example', subject, 'Grace')));
      expect(new Set(made.map((u) => u.id)).size).toBe(1);
      expect(made[0]).toMatchObject({ issuer: 'https://idp.example', subject, name: 'Grace', isAdmin: false });
      expect((await store.userForExternalId('https://idp.example', subject, 'Grace H.')).name).toBe('Grace H.');
      expect(await rejection(user('dup', { name: 'dup', issuer: 'https://idp.example', subject }))).toBeInstanceOf(DuplicateError);
      // The same subject from another issuer is another person.
      expect((await store.userForExternalId('https://other.example', subject, '')).id).not.toBe(made[0]!.id);
    });
  });

  describe('API keys', () => {
    it('finds keys by prefix with their user, records use at most once per period, revokes once', async () => {
      const u = await user();
      const prefix = `cpk_${crypto.randomUUID().slice(0, 8)}`;
      const key = await store.createApiKey({ userId: u.id, name: 'ci', prefix, hash: hex(), expiresAt: new Date(Date.now() + 60_000) });
      expect(await store.apiKeysByPrefix(prefix)).toEqual([{ key, user: u }]);
      expect(await store.listApiKeys(u.id)).toEqual([key]);

      const t0 = new Date(Date.now() - 120_000);
      await store.touchApiKey(key.id, t0, new Date(t0.getTime() - 60_000));
      await store.touchApiKey(key.id, new Date(t0.getTime() + 1_000), t0); // within the minute: not written
      expect((await store.listApiKeys(u.id))[0]!.lastUsedAt).toEqual(t0);
      const t1 = new Date(t0.getTime() + 61_000);
      await store.touchApiKey(key.id, t1, new Date(t1.getTime() - 60_000));
      expect((await store.listApiKeys(u.id))[0]!.lastUsedAt).toEqual(t1);

      const revokedAt = new Date();
      expect(await store.revokeApiKey(key.id, revokedAt)).toBe(true);
      expect(await store.revokeApiKey(key.id, new Date(revokedAt.getTime() + 5_000))).toBe(true);
      expect((await store.apiKeysByPrefix(prefix))[0]!.key.revokedAt).toEqual(revokedAt);
      expect(await store.revokeApiKey(crypto.randomUUID(), new Date())).toBe(false);
      expect(await rejection(store.createApiKey({ userId: crypto.randomUUID(), prefix, hash: hex() }))).toBeInstanceOf(UserNotFoundError);
    });
  });

  describe('sharing', () => {
    it('lets a viewer read, an editor also write, and nobody else see the conversation', async () => {
      const [owner, viewer, editor, stranger] = await Promise.all([user('o'), user('v'), user('e'), user('s')]);
      const c = await store.createConversation(as(owner.id), { title: 'shared' }, roomy);
      await store.setShare(c.id, viewer.id, 'viewer');
      await store.setShare(c.id, editor.id, 'viewer');
      await store.setShare(c.id, editor.id, 'editor'); // a second grant changes the role
      expect((await store.listShares(c.id)).map((s) => [s.userId, s.role]).sort()).toEqual(
        [
          [viewer.id, 'viewer'],
          [editor.id, 'editor'],
        ].sort(),
      );

      expect((await store.getConversation(as(owner.id), c.id))?.access).toBe('owner');
      expect((await store.getConversation(as(viewer.id), c.id))?.access).toBe('viewer');
      expect((await store.getConversation(as(editor.id), c.id))?.access).toBe('editor');
      expect(await store.getConversation(as(stranger.id), c.id)).toBeNull();
      expect(await store.getConversation(anon(), c.id)).toBeNull();

      const [m] = await store.appendMessages(as(editor.id), c.id, [{ role: 'user', content: 'from the editor' }], { maxMessages: 10 });
      expect(m!.seq).toBe(1);
      const refused = await rejection(store.appendMessages(as(viewer.id), c.id, [{ role: 'user', content: 'no' }], { maxMessages: 10 }));
      expect(refused).toBeInstanceOf(ConversationAccessError);
      expect(await rejection(store.appendMessages(as(stranger.id), c.id, [{ role: 'user', content: 'no' }], { maxMessages: 10 }))).toBeInstanceOf(
        ConversationNotFoundError,
      );
      // Only the owner patches and deletes.
      expect(await store.updateConversation(as(editor.id), c.id, { title: 'x' })).toBeNull();
      expect(await store.deleteConversation(as(viewer.id), c.id)).toBe(false);

      const scopes = async (u: string) =>
        Object.fromEntries(
          await Promise.all(
            (['owned', 'shared', 'all'] as const).map(async (scope) => [scope, (await store.listConversations(as(u), { limit: 100, scope })).items.map((i) => [i.id, i.access])]),
          ),
        );
      expect(await scopes(viewer.id)).toEqual({ owned: [], shared: [[c.id, 'viewer']], all: [[c.id, 'viewer']] });
      expect(await scopes(owner.id)).toEqual({ owned: [[c.id, 'owner']], shared: [], all: [[c.id, 'owner']] });

      expect(await store.deleteShare(c.id, viewer.id)).toBe(true);
      expect(await store.deleteShare(c.id, viewer.id)).toBe(false);
      expect(await store.getConversation(as(viewer.id), c.id)).toBeNull();
      expect(await rejection(store.setShare(c.id, crypto.randomUUID(), 'viewer'))).toBeInstanceOf(UserNotFoundError);
      await store.deleteConversation(as(owner.id), c.id);
      expect(await rejection(store.setShare(c.id, viewer.id, 'viewer'))).toBeInstanceOf(ConversationNotFoundError);
      expect(await store.getConversation(as(editor.id), c.id)).toBeNull();
    });

    it("counts an editor's writes against the owner's byte allowance", async () => {
      const [owner, editor] = await Promise.all([user('o'), user('e')]);
      const c = await store.createConversation(as(owner.id), {}, { ...roomy, messages: [{ role: 'user', content: 'x'.repeat(90) }] });
      await store.setShare(c.id, editor.id, 'editor');
      const err = await rejection(store.appendMessages(as(editor.id), c.id, [{ role: 'user', content: 'y'.repeat(20) }], { maxMessages: 10, maxBytes: 100 }));
      expect(err).toBeInstanceOf(LimitExceededError);
    });

    it('opens a live conversation by its link until the link is replaced or revoked', async () => {
      const owner = await user();
      const c = await store.createConversation(as(owner.id), { title: 'public' }, roomy);
      const first = hex();
      await store.setShareLink(c.id, first);
      expect((await store.sharedConversation(first))?.id).toBe(c.id);
      const second = hex();
      await store.setShareLink(c.id, second);
      expect(await store.sharedConversation(first)).toBeNull();
      expect((await store.sharedConversation(second))?.title).toBe('public');
      expect(await store.deleteShareLink(c.id)).toBe(true);
      expect(await store.deleteShareLink(c.id)).toBe(false);
      expect(await store.sharedConversation(second)).toBeNull();
      await store.setShareLink(c.id, first);
      await store.deleteConversation(as(owner.id), c.id);
      expect(await store.sharedConversation(first)).toBeNull();
    });
  });

  describe('claims, usage and erasure', () => {
    it("moves an anonymous session's conversations to a user, once", async () => {
      const session = anon();
      const u = await user();
      const made = await Promise.all([1, 2].map(() => store.createConversation(session, {}, roomy)));
      expect(await store.claimSession(session.sessionId, u.id)).toBe(2);
      expect(await store.claimSession(session.sessionId, u.id)).toBe(0);
      const mine = (await store.listConversations(as(u.id), { limit: 10 })).items.map((i) => i.id).sort();
      expect(mine).toEqual(made.map((m) => m.id).sort());
      expect((await store.listConversations(session, { limit: 10 })).items).toEqual([]);
    });

    it('sums tokens and requests per day, per model and in total, over [from, to)', async () => {
      const u = await user();
      const p = as(u.id);
      const turn = (tokensIn: number, tokensOut: number) => [
        { role: 'user' as const, content: 'q' },
        { role: 'assistant' as const, content: 'a', tokensIn, tokensOut },
      ];
      const a = await store.createConversation(p, { model: 'model-a' }, { ...roomy, messages: turn(10, 1) });
      await store.appendMessages(p, a.id, turn(20, 2), { maxMessages: 10 });
      await store.createConversation(p, { model: 'model-b' }, { ...roomy, messages: turn(5, 5) });
      await store.createConversation(anon(), { model: 'model-a' }, { ...roomy, messages: turn(1000, 1000) });
      const from = new Date(Date.now() - 86_400_000);
      const to = new Date(Date.now() + 86_400_000);
      expect(await store.usage(p, { from, to, groupBy: null })).toEqual([{ key: null, tokensIn: 35, tokensOut: 8, requests: 3 }]);
      expect(await store.usage(p, { from, to, groupBy: 'model' })).toEqual([
        { key: 'model-a', tokensIn: 30, tokensOut: 3, requests: 2 },
        { key: 'model-b', tokensIn: 5, tokensOut: 5, requests: 1 },
      ]);
      const today = new Date().toISOString().slice(0, 10);
      expect(await store.usage(p, { from, to, groupBy: 'day' })).toEqual([{ key: today, tokensIn: 35, tokensOut: 8, requests: 3 }]);
      expect(await store.usage(p, { from: to, to: new Date(to.getTime() + 1000), groupBy: null })).toEqual([{ key: null, tokensIn: 0, tokensOut: 0, requests: 0 }]);
    });

    it("erases a user's conversations, messages, shares, keys and sessions in batches, and nobody else's", async () => {
      const [u, other] = await Promise.all([user('leaving'), user('staying')]);
      const session = `s-${crypto.randomUUID()}`;
      // An anonymous chat in the browser the user then signs in from is erased with them.
      const before = await store.createConversation({ sessionId: session, userId: null }, {}, { ...roomy, messages: [{ role: 'user', content: 'pre' }] });
      const theirs = [];
      for (let i = 0; i < 5; i++) {
        theirs.push(await store.createConversation(as(u.id, session), {}, { ...roomy, messages: [{ role: 'user', content: `m${i}` }, { role: 'assistant', content: 'a' }] }));
      }
      await store.setShare(theirs[0]!.id, other.id, 'viewer');
      const kept = await store.createConversation(as(other.id), {}, { ...roomy, messages: [{ role: 'user', content: 'kept' }] });
      await store.setShare(kept.id, u.id, 'editor');
      await store.setShareLink(theirs[1]!.id, hex());
      await store.createApiKey({ userId: u.id, prefix: 'cpk_erase01', hash: hex() });
      await store.createApiKey({ userId: u.id, prefix: 'cpk_erase02', hash: hex() });

      expect(await store.eraseUser(u.id, 2)).toEqual({ conversations: 6, messages: 11, apiKeys: 2, shares: 2 });
      expect(await store.getUser(u.id)).toBeNull();
      expect(await store.getConversation(as(u.id), theirs[0]!.id)).toBeNull();
      expect(await store.getConversation({ sessionId: session, userId: null }, before.id)).toBeNull();
      expect(await store.listShares(kept.id)).toEqual([]);
      expect((await store.getConversation(as(other.id), kept.id))?.access).toBe('owner');
      expect(await store.listMessages(kept.id, { afterSeq: 0, limit: 10 })).toHaveLength(1);
      expect(await store.eraseUser(u.id, 2)).toBeNull();
      const left = await db.sql(`select count(*) as n from sessions where id = '${session}'`);
      expect(Number(left[0]!.n)).toBe(0);
    });
  });
});
