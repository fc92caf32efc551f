import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  AnswerPendingError,
  ConversationNotFoundError,
  LimitExceededError,
  MessageNotFoundError,
  type Conversation,
  type Json,
  type Message,
  type NewMessage,
  type Principal,
  type Store,
  newChatCompletionId,
} from '../db/store.js';
import { dialects, sharedTestStore, testStore, type TestStore } from './helpers/dialects.js';
import { anon, rejection, roomy, signedIn } from './helpers/principals.js';

/**
 * The Store contract: one suite, run against each dialect through the interface alone (as the
 * Auth.js adapter suite runs against every adapter). Raw SQL appears only to set up what the
 * interface cannot (equal creation times). Whatever one dialect does here, the other must too.
 */

const appendRoomy = { maxMessages: 1_000 };
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');
const jsonBytes = (v: Json) => bytes(JSON.stringify(v));
const FFFD = '\uFFFD';
/** U+0000 and both kinds of lone surrogate: none has a form either database can store. */
const unstorable = (s: string) => `${s}\u0000${s}\ud800${s}\udc00`;
const stored = (s: string) => `${s}${FFFD}${s}${FFFD}${s}${FFFD}`;

/** Resolves once the clock has moved past `t`, so what is written next carries a later time. */
async function clockPast(t: Date): Promise<Date> {
  while (Date.now() <= t.getTime()) await new Promise((r) => setImmediate(r));
  return new Date();
}

async function expectLimit(promise: Promise<unknown>, limit: LimitExceededError['limit'], max: number) {
  const err = await rejection(promise);
  expect(err).toBeInstanceOf(LimitExceededError);
  expect(err).toMatchObject({ limit, max });
}

async function expectNotFound(promise: Promise<unknown>) {
  expect(await rejection(promise)).toBeInstanceOf(ConversationNotFoundError);
}

describe.each(dialects)('Store contract on %s', (dialect) => {
  let db: Awaited<ReturnType<typeof sharedTestStore>>;
  let store: Store;

  beforeAll(async () => {
    db = await sharedTestStore(dialect);
    store = db.store;
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  const create = (owner: Principal, messages: NewMessage[] = [], input = {}) => store.createConversation(owner, input, { ...roomy, messages });
  const all = (conversationId: string) => store.listMessages(conversationId, { afterSeq: 0, limit: 10_000 });
  const seqs = async (conversationId: string) => (await all(conversationId)).map((m) => m.seq);
  const user = (content: string): NewMessage => ({ role: 'user', content });
  const streaming = (extra: Partial<NewMessage> = {}): NewMessage => ({ id: crypto.randomUUID(), role: 'assistant', status: 'streaming', ...extra });
  const sqlTime = (d: Date) => (dialect === 'sqlite' ? String(d.getTime()) : `'${d.toISOString()}'`);

  it('is the dialect it says', () => {
    expect(store.dialect).toBe(dialect);
  });

  describe('createConversation and getConversation', () => {
    it('returns the conversation as it reads back, owned by the principal', async () => {
      const owner = anon();
      const made = await store.createConversation(owner, { title: 'Hi', model: 'm-1', metadata: { a: [1, { b: null }] } }, roomy);
      expect(made).toMatchObject({ sessionId: owner.sessionId, userId: null, title: 'Hi', model: 'm-1', metadata: { a: [1, { b: null }] }, lastSeq: 0, deletedAt: null });
      expect(made.createdAt).toBeInstanceOf(Date);
      expect(made.updatedAt.getTime()).toBe(made.createdAt.getTime());
      expect(await store.getConversation(owner, made.id)).toEqual({ ...made, access: 'owner', streamingMessageId: null });
    });

    it('defaults title and model to null and metadata to {}', async () => {
      const owner = anon();
      const made = await store.createConversation(owner, {}, roomy);
      expect(await store.getConversation(owner, made.id)).toMatchObject({ title: null, model: null, metadata: {} });
    });

    it('inserts the first messages with seqs 1..n in the same call', async () => {
      const owner = anon();
      const made = await create(owner, [user('one'), { role: 'assistant', content: 'two' }, streaming()]);
      expect(made.lastSeq).toBe(3);
      const list = await all(made.id);
      expect(list.map((m) => [m.seq, m.role, m.status, m.content])).toEqual([
        [1, 'user', 'final', 'one'],
        [2, 'assistant', 'final', 'two'],
        [3, 'assistant', 'streaming', ''],
      ]);
      expect(list.every((m) => m.conversationId === made.id)).toBe(true);
    });

    it('stores every field of a first message as given', async () => {
      const owner = anon();
      const full: NewMessage = {
        id: crypto.randomUUID(),
        role: 'assistant',
        status: 'final',
        content: 'text',
        contentJson: [{ type: 'text', text: 'text' }],
        parentMessageId: 'parent-1',
        tokensIn: 3,
        tokensOut: 4,
        tokensSource: 'provider',
        finishReason: 'tool_calls',
        toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }],
        functionCall: { name: 'g', arguments: '{"x":1}' },
      };
      const made = await create(owner, [full, streaming({ lease: { holder: 'proc-a', expiresAt: new Date(Date.now() + 60_000) } })]);
      const [first, second] = await all(made.id);
      const { lease: _, ...fields } = full;
      expect(first).toMatchObject({ ...fields, conversationId: made.id, seq: 1, leaseOwner: null, leaseExpiresAt: null });
      expect(second).toMatchObject({ leaseOwner: 'proc-a', status: 'streaming' });
      expect(await store.getMessage(full.id!)).toEqual(first);
    });
  });

  describe('ownership', () => {
    it('another session never sees, updates, deletes or appends to a conversation', async () => {
      const owner = anon();
      const other = anon();
      const made = await create(owner, [user('mine')]);
      expect(await store.getConversation(other, made.id)).toBeNull();
      expect(await store.getConversation(other, made.id, { includeDeleted: true })).toBeNull();
      expect((await store.listConversations(other, { limit: 100, includeDeleted: true })).items).toEqual([]);
      expect(await store.updateConversation(other, made.id, { title: 'stolen' })).toBeNull();
      expect(await store.deleteConversation(other, made.id)).toBe(false);
      await expectNotFound(store.appendMessages(other, made.id, [user('intruder')], appendRoomy));
      await expectNotFound(store.appendMessages(other, made.id, () => [user('intruder')], appendRoomy));
      expect(await store.getConversation(owner, made.id)).toEqual({ ...made, access: 'owner', streamingMessageId: null });
      expect(await seqs(made.id)).toEqual([1]);
    });

    it('a user owns what carries its user id, whichever session created it', async () => {
      const userId = `u-${crypto.randomUUID()}`;
      const onPhone = signedIn(userId);
      const onLaptop = signedIn(userId);
      const made = await create(onPhone, [user('from the phone')]);
      expect(made.userId).toBe(userId);
      expect((await store.getConversation(onLaptop, made.id))?.id).toBe(made.id);
      expect((await store.listConversations(onLaptop, { limit: 10 })).items.map((c) => c.id)).toEqual([made.id]);
      expect((await store.updateConversation(onLaptop, made.id, { title: 'renamed' }))?.title).toBe('renamed');
      expect((await store.appendMessages(onLaptop, made.id, [user('from the laptop')], appendRoomy)).map((m) => m.seq)).toEqual([2]);
      expect(await store.deleteConversation(onLaptop, made.id)).toBe(true);
      expect((await store.getConversation(onPhone, made.id, { includeDeleted: true }))?.deletedAt).toBeInstanceOf(Date);
    });

    it("a session principal never sees its user's rows, and a user never sees its session's anonymous rows", async () => {
      const sessionId = `s-${crypto.randomUUID()}`;
      const asSession: Principal = { sessionId, userId: null };
      const asUser = signedIn(`u-${crypto.randomUUID()}`, sessionId);
      const asOtherUser = signedIn(`u-${crypto.randomUUID()}`, sessionId);
      const ofUser = await create(asUser);
      const ofSession = await create(asSession);
      expect(await store.getConversation(asSession, ofUser.id)).toBeNull();
      expect(await store.getConversation(asOtherUser, ofUser.id)).toBeNull();
      expect(await store.getConversation(asUser, ofSession.id)).toBeNull();
      expect((await store.listConversations(asSession, { limit: 10 })).items.map((c) => c.id)).toEqual([ofSession.id]);
      expect((await store.listConversations(asUser, { limit: 10 })).items.map((c) => c.id)).toEqual([ofUser.id]);
      expect((await store.listConversations(asOtherUser, { limit: 10 })).items).toEqual([]);
      await expectNotFound(store.appendMessages(asSession, ofUser.id, [user('x')], appendRoomy));
      await expectNotFound(store.appendMessages(asUser, ofSession.id, [user('x')], appendRoomy));
      expect(await store.updateConversation(asSession, ofUser.id, { title: 'x' })).toBeNull();
      expect(await store.deleteConversation(asOtherUser, ofUser.id)).toBe(false);
      expect(await store.deleteConversation(asUser, ofSession.id)).toBe(false);
    });
  });

  describe('limits', () => {
    it('maxPerSession counts live conversations only, and refuses the one past it', async () => {
      const owner = anon();
      const limits = { maxPerSession: 2 };
      const first = await store.createConversation(owner, {}, limits);
      await store.createConversation(owner, {}, limits);
      await expectLimit(store.createConversation(owner, {}, limits), 'conversations_per_session', 2);
      expect((await store.listConversations(owner, { limit: 10 })).items).toHaveLength(2);
      await store.deleteConversation(owner, first.id);
      await store.createConversation(owner, {}, limits);
      await expectLimit(store.createConversation(owner, { title: 'x' }, { ...limits, messages: [user('x')] }), 'conversations_per_session', 2);
    });

    it("maxPerSession counts a user's conversations across sessions, and a session's own anonymous ones apart", async () => {
      const userId = `u-${crypto.randomUUID()}`;
      const sessionId = `s-${crypto.randomUUID()}`;
      await store.createConversation(signedIn(userId, sessionId), {}, { maxPerSession: 1 });
      await expectLimit(store.createConversation(signedIn(userId), {}, { maxPerSession: 1 }), 'conversations_per_session', 1);
      // The same session, anonymous, holds none of its own yet.
      await store.createConversation({ sessionId, userId: null }, {}, { maxPerSession: 1 });
    });

    it('maxMessages bounds the first messages and every append, all or nothing', async () => {
      const owner = anon();
      await expectLimit(store.createConversation(owner, {}, { ...roomy, messages: [user('1'), user('2'), user('3')], maxMessages: 2 }), 'messages_per_conversation', 2);
      expect((await store.listConversations(owner, { limit: 10 })).items).toEqual([]);
      const made = await store.createConversation(owner, {}, { ...roomy, messages: [user('1'), user('2')], maxMessages: 2 });
      expect(made.lastSeq).toBe(2);
      await expectLimit(store.appendMessages(owner, made.id, [user('3'), user('4'), user('5')], { maxMessages: 4 }), 'messages_per_conversation', 4);
      expect(await seqs(made.id)).toEqual([1, 2]);
      expect((await store.getConversation(owner, made.id))?.lastSeq).toBe(2);
      await store.appendMessages(owner, made.id, [user('3'), user('4')], { maxMessages: 4 });
      await expectLimit(store.appendMessages(owner, made.id, [user('5')], { maxMessages: 4 }), 'messages_per_conversation', 4);
      expect(await seqs(made.id)).toEqual([1, 2, 3, 4]);
    });

    it('an empty append is never refused and changes nothing', async () => {
      const owner = anon();
      const made = await create(owner, [user('1')]);
      await clockPast(made.updatedAt);
      expect(await store.appendMessages(owner, made.id, [], { maxMessages: 1 })).toEqual([]);
      expect(await store.appendMessages(owner, made.id, () => [], { maxMessages: 1 })).toEqual([]);
      expect(await store.getConversation(owner, made.id)).toEqual({ ...made, access: 'owner', streamingMessageId: null });
    });

    it("maxBytes bounds the bytes held by the owner's live conversations, counted in UTF-8", async () => {
      const owner = anon();
      const text = 'héllo 👋'; // 11 bytes, 8 UTF-16 units
      expect(bytes(text)).toBe(11);
      await expectLimit(store.createConversation(owner, {}, { ...roomy, messages: [user(text)], maxBytes: 10 }), 'bytes_per_session', 10);
      const made = await store.createConversation(owner, {}, { ...roomy, messages: [user(text)], maxBytes: 11 });
      await expectLimit(store.appendMessages(owner, made.id, [user('x')], { ...appendRoomy, maxBytes: 11 }), 'bytes_per_session', 11);
      // Another conversation of the same owner shares the budget.
      const second = await store.createConversation(owner, {}, { ...roomy, maxBytes: 11 });
      await expectLimit(store.appendMessages(owner, second.id, [user('x')], { ...appendRoomy, maxBytes: 11 }), 'bytes_per_session', 11);
      await expectLimit(store.createConversation(owner, {}, { ...roomy, messages: [user('x')], maxBytes: 11 }), 'bytes_per_session', 11);
      await store.appendMessages(owner, second.id, [user('x')], { ...appendRoomy, maxBytes: 12 });
      // A deleted conversation no longer counts; nor do other owners' bytes.
      await store.deleteConversation(owner, made.id);
      await store.appendMessages(owner, second.id, [user('y'.repeat(10))], { ...appendRoomy, maxBytes: 12 });
      await store.createConversation(anon(), {}, { ...roomy, messages: [user('z'.repeat(12))], maxBytes: 12 });
    });

    it('maxBytes lets a streaming answer in, since it counts once finished', async () => {
      const owner = anon();
      const made = await store.createConversation(owner, {}, { ...roomy, messages: [user('12345'), streaming()], maxBytes: 5 });
      const answer = (await all(made.id))[1]!;
      await store.appendContent(answer.id, 'abc');
      await store.finishMessage(answer.id, { status: 'final' });
      // 8 bytes held now: another open answer still fits, one more byte of text does not.
      await store.appendMessages(owner, made.id, [streaming()], { ...appendRoomy, maxBytes: 8 });
      await expectLimit(store.appendMessages(owner, made.id, [user('x')], { ...appendRoomy, maxBytes: 8 }), 'bytes_per_session', 8);
    });

    it('maxBytes counts text as stored: U+0000 takes the 3 bytes of U+FFFD', async () => {
      const owner = anon();
      await expectLimit(store.createConversation(owner, {}, { ...roomy, messages: [user('\u0000')], maxBytes: 2 }), 'bytes_per_session', 2);
      const made = await store.createConversation(owner, {}, { ...roomy, messages: [user('\u0000')], maxBytes: 3 });
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(3);
    });

    it('checks the conversation cap first, then messages, then bytes', async () => {
      const owner = anon();
      await store.createConversation(owner, {}, { maxPerSession: 1 });
      const everythingOver = { maxPerSession: 1, messages: [user('long'), user('long')], maxMessages: 1, maxBytes: 1 };
      await expectLimit(store.createConversation(owner, {}, everythingOver), 'conversations_per_session', 1);
      await expectLimit(store.createConversation(owner, {}, { ...everythingOver, maxPerSession: 2 }), 'messages_per_conversation', 1);
      await expectLimit(store.createConversation(owner, {}, { ...everythingOver, maxPerSession: 2, maxMessages: 2 }), 'bytes_per_session', 1);
    });

    it('a refused creation writes nothing, not even the session', async () => {
      const owner = anon();
      await expectLimit(store.createConversation(owner, {}, { maxPerSession: 0 }), 'conversations_per_session', 0);
      await expectLimit(store.createConversation(owner, {}, { ...roomy, messages: [user('xx')], maxBytes: 1 }), 'bytes_per_session', 1);
      expect(await db.sql(`select id from sessions where id = '${owner.sessionId}'`)).toEqual([]);
    });

    it('checks maxMessages inside the transaction: concurrent appends stop exactly at the limit', async () => {
      const owner = anon();
      const made = await create(owner, [user('0')]);
      const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => store.appendMessages(owner, made.id, [user(`${i}`)], { maxMessages: 6 })));
      expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(5);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ limit: 'messages_per_conversation', max: 6 });
      expect(await seqs(made.id)).toEqual([1, 2, 3, 4, 5, 6]);
    });
  });

  describe('seq allocation', () => {
    it('is dense 1..N under concurrent appends, each call getting consecutive seqs', async () => {
      const owner = anon();
      const made = await create(owner, [user('first'), user('second')]);
      const sizes = Array.from({ length: 16 }, (_, i) => 1 + (i % 3));
      const appended = await Promise.all(sizes.map((n, i) => store.appendMessages(owner, made.id, Array.from({ length: n }, (_, j) => user(`${i}.${j}`)), appendRoomy)));
      for (const [i, rows] of appended.entries()) {
        expect(rows.map((m) => m.content)).toEqual(Array.from({ length: sizes[i]! }, (_, j) => `${i}.${j}`));
        const first = rows[0]!.seq;
        expect(rows.map((m) => m.seq)).toEqual(rows.map((_, j) => first + j));
      }
      const total = 2 + sizes.reduce((a, b) => a + b, 0);
      expect(await seqs(made.id)).toEqual(Array.from({ length: total }, (_, i) => i + 1));
      expect((await store.getConversation(owner, made.id))?.lastSeq).toBe(total);
    });

    it('gives each conversation created concurrently with messages its own 1..n, and appends after them', async () => {
      const owner = anon();
      const made = await Promise.all(Array.from({ length: 8 }, (_, i) => create(owner, [user(`${i}a`), user(`${i}b`), streaming()])));
      await Promise.all(made.flatMap((c) => [store.appendMessages(owner, c.id, [user('x')], appendRoomy), store.appendMessages(owner, c.id, [user('y')], appendRoomy)]));
      for (const c of made) expect(await seqs(c.id)).toEqual([1, 2, 3, 4, 5]);
    });

    it('returns the appended messages as stored, with caller-chosen ids kept', async () => {
      const owner = anon();
      const made = await create(owner);
      const id = crypto.randomUUID();
      const [a, b] = await store.appendMessages(owner, made.id, [user('a'), streaming({ id, lease: { holder: 'p', expiresAt: new Date(Date.now() + 1000) } })], appendRoomy);
      expect(b!.id).toBe(id);
      expect(await store.getMessage(a!.id)).toEqual(a);
      expect(await store.getMessage(id)).toEqual(b);
      expect(b).toMatchObject({ conversationId: made.id, seq: 2, status: 'streaming', leaseOwner: 'p', content: '' });
    });

    it('hands a function the conversation as it stands inside the transaction', async () => {
      const owner = anon();
      const made = await create(owner);
      const seen: number[] = [];
      // "Only when empty" cannot race: exactly one of these finds the conversation empty.
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          store.appendMessages(
            owner,
            made.id,
            (c: Conversation) => {
              expect(c.id).toBe(made.id);
              seen.push(c.lastSeq);
              return c.lastSeq === 0 ? [user('system prompt'), user(`${i}`)] : [user(`${i}`)];
            },
            appendRoomy,
          ),
        ),
      );
      expect(seen.sort((a, b) => a - b)).toEqual([0, 2, 3, 4, 5, 6, 7, 8]);
      expect(results.map((r) => r.length).sort()).toEqual([1, 1, 1, 1, 1, 1, 1, 2]);
      const list = await all(made.id);
      expect(list.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
      expect(list.filter((m) => m.content === 'system prompt').map((m) => m.seq)).toEqual([1]);
    });

    it('refuses appends to a missing or deleted conversation', async () => {
      const owner = anon();
      await expectNotFound(store.appendMessages(owner, crypto.randomUUID(), [user('x')], appendRoomy));
      const made = await create(owner);
      await store.deleteConversation(owner, made.id);
      await expectNotFound(store.appendMessages(owner, made.id, [user('x')], appendRoomy));
      const err = await rejection(store.appendMessages(owner, made.id, [user('x')], appendRoomy));
      expect(err).toMatchObject({ conversationId: made.id });
    });
  });

  describe('the message tree', () => {
    const answer = (content: string): NewMessage => ({ role: 'assistant', content });
    const turn = (owner: Principal, id: string, messages: NewMessage[], answerOf: NewMessage | null = streaming()) => store.appendTurn(owner, id, { messages, answer: answerOf }, appendRoomy);
    const parents = async (id: string) => {
      const list = await all(id);
      return list.map((m) => (m.parentMessageId ? list.findIndex((p) => p.id === m.parentMessageId) + 1 : null));
    };

    it('a first turn is one chain, its last message the active leaf; an imported tree keeps its parents', async () => {
      const owner = anon();
      const made = await create(owner, [user('a'), answer('b'), user('c')]);
      const list = await all(made.id);
      expect(await parents(made.id)).toEqual([null, 1, 2]);
      expect(made.activeMessageId).toBe(list[2]!.id);
      expect((await store.getConversation(owner, made.id))?.activeMessageId).toBe(list[2]!.id);
      const [r, x, y] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
      const imported = await store.createConversation(owner, {}, { ...roomy, messages: [{ ...user('root'), id: r }, { ...answer('x'), id: x }, { ...answer('y'), id: y, parentMessageId: r }], activeMessageId: x });
      expect(await parents(imported.id)).toEqual([null, 1, 1]);
      expect(imported.activeMessageId).toBe(x);
      expect((await store.createConversation(owner, {}, roomy)).activeMessageId).toBeNull();
    });

    it('appendMessages chains after the active leaf, or under the parent it is given, and moves the leaf', async () => {
      const owner = anon();
      const made = await create(owner, [user('1')]);
      const [two, three] = await store.appendMessages(owner, made.id, [user('2'), user('3')], appendRoomy);
      expect(two!.parentMessageId).toBe(made.activeMessageId);
      expect(three!.parentMessageId).toBe(two!.id);
      const [other] = await store.appendMessages(owner, made.id, [{ ...user('2 again'), parentMessageId: made.activeMessageId }], appendRoomy);
      expect(other!.parentMessageId).toBe(made.activeMessageId);
      expect((await store.getConversation(owner, made.id))?.activeMessageId).toBe(other!.id);
      const [root] = await store.appendMessages(owner, made.id, [{ ...user('root'), parentMessageId: null }], appendRoomy);
      expect(root!.parentMessageId).toBeNull();
      const elsewhere = await create(owner, [user('elsewhere')]);
      const err = await rejection(store.appendMessages(owner, made.id, [{ ...user('x'), parentMessageId: elsewhere.activeMessageId }], appendRoomy));
      expect(err).toBeInstanceOf(MessageNotFoundError);
      expect(err).toMatchObject({ param: 'parent_message_id' });
      expect(await seqs(made.id)).toEqual([1, 2, 3, 4, 5]);
    });

    it('appendTurn stores what is new where the match ends: extension, regenerate, edit', async () => {
      const owner = anon();
      const made = await create(owner, [user('u1'), answer('a1')]);
      const [u1, a1] = await all(made.id);
      const extended = await turn(owner, made.id, [user('u1'), answer('a1'), user('u2')]);
      expect(extended).toMatchObject({ matched: 2, answerParentId: extended.inserted[0]!.id });
      expect(extended.path).toEqual([u1!.id, a1!.id, extended.inserted[0]!.id]);
      expect(extended.inserted.map((m) => [m.seq, m.role, m.content, m.status])).toEqual([
        [3, 'user', 'u2', 'final'],
        [4, 'assistant', '', 'streaming'],
      ]);
      for (const m of extended.inserted) expect(await store.getMessage(m.id)).toEqual(m);
      const parts: NewMessage = { role: 'user', content: 'see', contentJson: [{ type: 'text', text: 'see' }, { type: 'image_url', image_url: { url: 'data:,x' } }], clientId: 'p1' };
      const withParts = await turn(owner, made.id, [user('u1'), answer('a1'), parts], null);
      expect(await store.getMessage(withParts.inserted[0]!.id)).toEqual(withParts.inserted[0]);
      const regenerated = await turn(owner, made.id, [user('u1'), answer('a1'), user('u2')], answer('plain'));
      expect(regenerated).toMatchObject({ matched: 3, answerParentId: extended.inserted[0]!.id });
      expect(regenerated.inserted.map((m) => [m.seq, m.parentMessageId])).toEqual([[6, extended.inserted[0]!.id]]);
      // A plain request's answer comes later: only the path is stored, and it becomes active.
      const later = await turn(owner, made.id, [user('u1'), answer('a1'), user('u2 edited')], null);
      expect(later).toMatchObject({ matched: 2 });
      expect(later.inserted.map((m) => [m.seq, m.content, m.parentMessageId])).toEqual([[7, 'u2 edited', a1!.id]]);
      expect((await store.getConversation(owner, made.id))?.activeMessageId).toBe(later.inserted[0]!.id);
      expect(await parents(made.id)).toEqual([null, 1, 2, 3, 2, 3, 2]);
    });

    it('appendTurn matches a streamed answer once it is finished, and rows of an older version without fingerprints', async () => {
      const owner = anon();
      const made = await create(owner, [user('q'), streaming({ id: crypto.randomUUID() })]);
      const [, open] = await all(made.id);
      // Still streaming: not matched, so the resent text is a new branch.
      await store.appendContent(open!.id, 'partial');
      expect((await turn(owner, made.id, [user('q'), answer('partial')], null)).matched).toBe(1);
      await store.appendContent(open!.id, ' and the rest');
      await store.finishMessage(open!.id, { status: 'final', finishReason: 'stop', toolCalls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] });
      const resent: NewMessage = { role: 'assistant', content: 'partial and the rest', toolCalls: [{ function: { arguments: '{}', name: 'f' }, id: 'c', index: 0 } as Json] };
      expect((await turn(owner, made.id, [user('q'), resent, user('next')], null)).matched).toBe(2);
      // As a conversation migrated from before fingerprints reads.
      await db.sql(`update messages set fingerprint = null where conversation_id = '${made.id}'`);
      expect((await turn(owner, made.id, [user('q'), resent, user('next')], null)).matched).toBe(3);
      const rows = await db.sql(`select fingerprint from messages where conversation_id = '${made.id}' and status = 'final'`);
      expect(rows.every((r) => typeof r.fingerprint === 'string' && r.fingerprint.length === 64)).toBe(true);
    });

    it('appendTurn with deferIfPending writes nothing while the request goes on past an answer still open', async () => {
      const owner = anon();
      const answerId = crypto.randomUUID();
      const made = await create(owner, [user('q'), streaming({ id: answerId })]);
      await store.appendContent(answerId, 'done');
      const next = [user('q'), answer('done'), user('next')];
      const err = await rejection(store.appendTurn(owner, made.id, { messages: next, answer: null }, { ...appendRoomy, deferIfPending: true }));
      expect(err).toBeInstanceOf(AnswerPendingError);
      expect(err).toMatchObject({ messageIds: [answerId] });
      expect(await seqs(made.id)).toEqual([1, 2]);
      // A regenerate does not go past it.
      expect((await store.appendTurn(owner, made.id, { messages: [user('q')], answer: null }, { ...appendRoomy, deferIfPending: true })).matched).toBe(1);
      await store.finishMessage(answerId, { status: 'final' });
      expect((await store.appendTurn(owner, made.id, { messages: next, answer: null }, { ...appendRoomy, deferIfPending: true })).matched).toBe(2);
    });

    it('appendTurn adopts client ids, refuses viewers and limits, and writes nothing when it refuses', async () => {
      const owner = anon();
      const made = await create(owner, [{ ...user('u1'), clientId: 'c1' }, answer('a1')]);
      await turn(owner, made.id, [{ ...user('u1'), clientId: 'c1' }, { ...answer('a1'), clientId: 'c2' }, { ...user('u2'), clientId: 'c3' }], null);
      expect((await all(made.id)).map((m) => m.clientId)).toEqual(['c1', 'c2', 'c3']);
      await expectNotFound(turn(anon(), made.id, [user('u1')]));
      await expectLimit(store.appendTurn(owner, made.id, { messages: [user('u1'), answer('a1'), user('new')], answer: streaming() }, { maxMessages: 4 }), 'messages_per_conversation', 4);
      expect(await seqs(made.id)).toEqual([1, 2, 3]);
    });

    it('appendTurn under concurrency: regenerations become siblings, the new user message is stored once, seqs stay dense', async () => {
      const owner = anon();
      const made = await create(owner, [user('u1'), answer('a1')]);
      const results = await Promise.all(Array.from({ length: 8 }, () => turn(owner, made.id, [user('u1'), answer('a1'), user('u2')])));
      const list = await all(made.id);
      expect(list.map((m) => m.seq)).toEqual(Array.from({ length: 11 }, (_, i) => i + 1));
      const u2 = list.filter((m) => m.content === 'u2');
      expect(u2).toHaveLength(1);
      expect(list.filter((m) => m.parentMessageId === u2[0]!.id)).toHaveLength(8);
      expect(results.map((r) => r.answerParentId)).toEqual(Array(8).fill(u2[0]!.id));
      expect(results.filter((r) => r.matched === 2)).toHaveLength(1);
    });

    it('readMessages pages the active path or the tree, with each message placed among its siblings', async () => {
      const owner = anon();
      const made = await create(owner, [user('u1'), answer('a1')]);
      await turn(owner, made.id, [user('u1'), answer('b1')], null);
      await turn(owner, made.id, [user('u1'), answer('c1'), user('u2')], null);
      // Tree: u1(1) → a1(2), b1(3), c1(4) → u2(5); active: u1, c1, u2.
      const activePath = await store.readMessages(made.id, { view: 'active', afterSeq: 0, limit: 10 });
      expect(activePath.items.map((m) => [m.seq, m.content, m.siblingIndex, m.siblingCount])).toEqual([
        [1, 'u1', 0, 1],
        [4, 'c1', 2, 3],
        [5, 'u2', 0, 1],
      ]);
      expect(activePath.hasMore).toBe(false);
      const page = await store.readMessages(made.id, { view: 'active', afterSeq: 1, limit: 1 });
      expect(page).toMatchObject({ items: [{ seq: 4 }], hasMore: true });
      const tree = await store.readMessages(made.id, { view: 'tree', afterSeq: 0, limit: 4 });
      expect(tree.items.map((m) => [m.content, m.siblingIndex, m.siblingCount])).toEqual([
        ['u1', 0, 1],
        ['a1', 0, 3],
        ['b1', 1, 3],
        ['c1', 2, 3],
      ]);
      expect(tree.hasMore).toBe(true);
    });

    it('pathTo reads root to message; setActiveMessage goes to the newest leaf under a message', async () => {
      const owner = anon();
      const made = await create(owner, [user('u1'), answer('a1'), user('u2'), answer('a2')]);
      const [u1, a1, u2, a2] = await all(made.id);
      const edit = await turn(owner, made.id, [user('u1'), answer('a1'), user('u2 edited')], answer('a3'));
      expect((await store.pathTo(made.id, a2!.id))?.map((m) => m.content)).toEqual(['u1', 'a1', 'u2', 'a2']);
      expect(await store.pathTo(made.id, crypto.randomUUID())).toBeNull();
      expect(await store.pathTo(crypto.randomUUID(), a2!.id)).toBeNull();
      const switched = await store.setActiveMessage(owner, made.id, u2!.id);
      expect(switched.activeMessageId).toBe(a2!.id);
      expect((await store.getConversation(owner, made.id))?.activeMessageId).toBe(a2!.id);
      // From the root, the newest leaf of all: the edit's answer.
      expect((await store.setActiveMessage(owner, made.id, u1!.id)).activeMessageId).toBe(edit.inserted.at(-1)!.id);
      expect(await rejection(store.setActiveMessage(owner, made.id, crypto.randomUUID()))).toBeInstanceOf(MessageNotFoundError);
      await expectNotFound(store.setActiveMessage(anon(), made.id, a1!.id));
    });
  });

  describe('idempotency keys', () => {
    const times = () => ({ expiredBefore: new Date(Date.now() - 86_400_000), staleBefore: new Date(Date.now() - 60_000) });

    it('the first claim runs; later ones see the record, with its outcome once complete', async () => {
      const owner = anon();
      expect(await store.claimIdempotencyKey(owner, 'k', 'hash-1', times())).toEqual({ claimed: true });
      const running = await store.claimIdempotencyKey(owner, 'k', 'hash-1', times());
      expect(running).toMatchObject({ claimed: false, record: { requestHash: 'hash-1', status: null, response: null } });
      await store.completeIdempotencyKey(owner, 'k', { status: 201, response: { id: 'x', n: [1] } });
      expect(await store.claimIdempotencyKey(owner, 'k', 'hash-2', times())).toMatchObject({ claimed: false, record: { requestHash: 'hash-1', status: 201, response: { id: 'x', n: [1] } } });
      // Another owner has its own keys.
      expect(await store.claimIdempotencyKey(anon(), 'k', 'hash-2', times())).toEqual({ claimed: true });
    });

    it('a released, expired or stale claim is taken again; a stale one only by the same request', async () => {
      const owner = anon();
      await store.claimIdempotencyKey(owner, 'released', 'h', times());
      await store.releaseIdempotencyKey(owner, 'released');
      expect(await store.claimIdempotencyKey(owner, 'released', 'h', times())).toEqual({ claimed: true });
      await store.claimIdempotencyKey(owner, 'stale', 'h', times());
      const later = { expiredBefore: new Date(Date.now() - 86_400_000), staleBefore: new Date(Date.now() + 1000) };
      expect((await store.claimIdempotencyKey(owner, 'stale', 'other', later)).claimed).toBe(false);
      expect(await store.claimIdempotencyKey(owner, 'stale', 'h', later)).toEqual({ claimed: true });
      await store.completeIdempotencyKey(owner, 'stale', { status: 200, response: null });
      // A completed key is never released, only outlived.
      await store.releaseIdempotencyKey(owner, 'stale');
      expect((await store.claimIdempotencyKey(owner, 'stale', 'h', later)).claimed).toBe(false);
      expect(await store.claimIdempotencyKey(owner, 'stale', 'other', { ...later, expiredBefore: new Date(Date.now() + 1000) })).toEqual({ claimed: true });
    });

    it('concurrent claims of one key: exactly one runs', async () => {
      const owner = anon();
      const claims = await Promise.all(Array.from({ length: 8 }, () => store.claimIdempotencyKey(owner, 'race', 'h', times())));
      expect(claims.filter((c) => c.claimed)).toHaveLength(1);
    });
  });

  describe('stored chat completions', () => {
    const answer = (id = crypto.randomUUID()): NewMessage => ({ id, role: 'assistant', content: 'hi' });
    /** A conversation whose first turn is recorded as a completion; returns the ids. */
    const exchange = async (owner: Principal, metadata: Record<string, string> = {}, model = 'm') => {
      const messageId = crypto.randomUUID();
      const id = newChatCompletionId();
      const c = await store.createConversation(owner, {}, { ...roomy, messages: [user('q'), answer(messageId)], completion: { id, messageId, model, metadata } });
      return { id, messageId, conversationId: c.id };
    };

    it('writes the record with the messages, in createConversation and appendMessages', async () => {
      const owner = anon();
      const first = await exchange(owner, { k: 'v' });
      const messageId = crypto.randomUUID();
      const id = newChatCompletionId();
      await store.appendMessages(owner, first.conversationId, [user('again'), answer(messageId)], { ...appendRoomy, completion: { id, messageId, model: 'm2', metadata: {} } });
      const got = await store.getChatCompletion(owner, id);
      expect(got?.record).toMatchObject({ id, conversationId: first.conversationId, messageId, model: 'm2', upstreamId: null, metadata: {} });
      expect(got?.message).toMatchObject({ id: messageId, seq: 4, content: 'hi' });
      expect(got?.access).toBe('owner');
      expect((await store.getChatCompletion(owner, first.id))?.record.metadata).toEqual({ k: 'v' });
      expect(await store.getChatCompletion(anon(), id)).toBeNull();
    });

    it('writes nothing when the exchange is refused', async () => {
      const owner = anon();
      const messageId = crypto.randomUUID();
      const id = newChatCompletionId();
      await expectLimit(
        store.createConversation(owner, {}, { ...roomy, maxMessages: 1, messages: [user('q'), answer(messageId)], completion: { id, messageId, model: null, metadata: {} } }),
        'messages_per_conversation',
        1,
      );
      expect(await store.getChatCompletion(owner, id)).toBeNull();
    });

    it('lists in id order both ways after a cursor, filtered by model and metadata pairs', async () => {
      const owner = anon();
      const made = [];
      for (let i = 0; i < 5; i++) made.push(await exchange(owner, { n: String(i), parity: i % 2 ? 'odd' : 'even', 'we\'ird."key': 'x' }, i < 3 ? 'a' : 'b'));
      const ids = made.map((m) => m.id);
      const list = async (options: Partial<Parameters<Store['listChatCompletions']>[1]>) =>
        (await store.listChatCompletions(owner, { limit: 10, order: 'asc', ...options })).items.map((i) => i.record.id);
      expect(await list({})).toEqual(ids);
      expect(await list({ order: 'desc' })).toEqual([...ids].reverse());
      expect(await list({ after: ids[1] })).toEqual(ids.slice(2));
      expect(await list({ after: ids[3], order: 'desc' })).toEqual([ids[2], ids[1], ids[0]]);
      expect(await list({ model: 'b' })).toEqual(ids.slice(3));
      expect(await list({ metadata: { parity: 'odd' } })).toEqual([ids[1], ids[3]]);
      expect(await list({ metadata: { parity: 'odd', n: '3' } })).toEqual([ids[3]]);
      expect(await list({ metadata: { 'we\'ird."key': 'x', n: '0' } })).toEqual([ids[0]]);
      expect(await list({ metadata: { parity: 'od' } })).toEqual([]);
      const page = await store.listChatCompletions(owner, { limit: 2, order: 'asc' });
      expect(page.hasMore).toBe(true);
      expect((await store.listChatCompletions(owner, { limit: 5, order: 'asc' })).hasMore).toBe(false);
      // A deleted conversation's completions are gone from lists and lookups.
      await store.deleteConversation(owner, made[0]!.conversationId);
      expect(await list({})).toEqual(ids.slice(1));
      expect(await store.getChatCompletion(owner, ids[0]!)).toBeNull();
    });

    it("finds by the upstream's id, the reader's own most recent first, and notes it once", async () => {
      const owner = anon();
      const older = await exchange(owner);
      const newer = await exchange(owner);
      await store.noteChatCompletionUpstream(older.id, { upstreamId: 'chatcmpl-7', model: 'm-2024' });
      await store.noteChatCompletionUpstream(newer.id, { upstreamId: 'chatcmpl-7', model: null });
      await store.noteChatCompletionUpstream(newer.id, { upstreamId: 'chatcmpl-8', model: 'later' });
      expect((await store.getChatCompletion(owner, 'chatcmpl-7', { orUpstreamId: true }))?.record).toMatchObject({ id: newer.id, model: 'm', upstreamId: 'chatcmpl-7' });
      expect((await store.getChatCompletion(owner, older.id))?.record).toMatchObject({ model: 'm-2024', upstreamId: 'chatcmpl-7' });
      expect(await store.getChatCompletion(owner, 'chatcmpl-7')).toBeNull();
      expect(await store.getChatCompletion(anon(), 'chatcmpl-7', { orUpstreamId: true })).toBeNull();
    });

    it('updates metadata and deletes the record alone; deleting the answer takes the record with it', async () => {
      const owner = anon();
      const one = await exchange(owner, { a: '1' });
      expect((await store.updateChatCompletion(one.id, { b: '2' }))?.metadata).toEqual({ b: '2' });
      expect(await store.deleteChatCompletion(one.id)).toBe(true);
      expect(await store.deleteChatCompletion(one.id)).toBe(false);
      expect(await store.updateChatCompletion(one.id, {})).toBeNull();
      expect(await seqs(one.conversationId)).toEqual([1, 2]);
      const two = await exchange(owner);
      expect(await store.deleteMessage(two.conversationId, two.messageId)).toBe(true);
      expect(await store.getChatCompletion(owner, two.id)).toBeNull();
    });
  });

  describe('pageMessages and deleteMessage', () => {
    it('pages from a seq, inclusive, either way, below a bound', async () => {
      const owner = anon();
      const c = await create(owner, ['1', '2', '3', '4', '5'].map(user));
      const page = async (o: Parameters<Store['pageMessages']>[1]) => (await store.pageMessages(c.id, o)).map((m) => m.content);
      expect(await page({ order: 'asc', limit: 10 })).toEqual(['1', '2', '3', '4', '5']);
      expect(await page({ order: 'desc', limit: 2 })).toEqual(['5', '4']);
      expect(await page({ order: 'asc', limit: 10, from: 2, below: 5 })).toEqual(['2', '3', '4']);
      expect(await page({ order: 'desc', limit: 10, from: 3, below: 5 })).toEqual(['3', '2', '1']);
    });

    it('closes the gap: later seqs move down, the counter and the stored bytes follow', async () => {
      const owner = anon();
      const c = await create(owner, ['a', 'bb', 'ccc', 'dddd'].map(user));
      const [, second] = await all(c.id);
      expect(await store.deleteMessage(c.id, second!.id)).toBe(true);
      expect((await all(c.id)).map((m) => [m.seq, m.content])).toEqual([
        [1, 'a'],
        [2, 'ccc'],
        [3, 'dddd'],
      ]);
      const after = (await store.getConversation(owner, c.id))!;
      expect(after.lastSeq).toBe(3);
      expect(after.storedBytes).toBe(8);
      // Appends carry on densely from the counter.
      await store.appendMessages(owner, c.id, [user('e')], appendRoomy);
      expect(await seqs(c.id)).toEqual([1, 2, 3, 4]);
      expect(await store.deleteMessage(c.id, second!.id)).toBe(false);
      // Only within its own conversation, and only a live one.
      const other = await create(owner, [user('x')]);
      const [x] = await all(other.id);
      expect(await store.deleteMessage(c.id, x!.id)).toBe(false);
      await store.deleteConversation(owner, other.id);
      expect(await store.deleteMessage(other.id, x!.id)).toBe(false);
    });

    it('keeps seqs dense when deletes race appends', async () => {
      const owner = anon();
      const c = await create(owner, ['1', '2', '3', '4', '5', '6'].map(user));
      const before = await all(c.id);
      await Promise.all([
        ...before.slice(0, 3).map((m) => store.deleteMessage(c.id, m.id)),
        ...['7', '8', '9'].map((t) => store.appendMessages(owner, c.id, [user(t)], appendRoomy)),
      ]);
      const left = await all(c.id);
      expect(left.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(left.map((m) => m.content).slice(0, 3)).toEqual(['4', '5', '6']);
      expect((await store.getConversation(owner, c.id))!.lastSeq).toBe(6);
    });
  });

  describe('listMessages and getMessage', () => {
    it('pages by seq after a given one', async () => {
      const owner = anon();
      const made = await create(owner, ['1', '2', '3', '4', '5'].map(user));
      expect((await store.listMessages(made.id, { afterSeq: 0, limit: 2 })).map((m) => m.content)).toEqual(['1', '2']);
      expect((await store.listMessages(made.id, { afterSeq: 2, limit: 2 })).map((m) => m.content)).toEqual(['3', '4']);
      expect((await store.listMessages(made.id, { afterSeq: 4, limit: 2 })).map((m) => m.content)).toEqual(['5']);
      expect(await store.listMessages(made.id, { afterSeq: 5, limit: 2 })).toEqual([]);
      expect(await store.listMessages(crypto.randomUUID(), { afterSeq: 0, limit: 2 })).toEqual([]);
      expect(await store.getMessage(crypto.randomUUID())).toBeNull();
    });
  });

  describe('appendContent and finishMessage', () => {
    async function open(extra: Partial<NewMessage> = {}) {
      const owner = anon();
      const made = await create(owner, [user('q'), streaming(extra)]);
      const message = (await all(made.id))[1]!;
      return { owner, conversation: made, message };
    }

    it('appends text in order; empty text changes nothing', async () => {
      const { message } = await open();
      await store.appendContent(message.id, 'Hel');
      await store.appendContent(message.id, '');
      await store.appendContent(message.id, 'lo 👋');
      expect((await store.getMessage(message.id))?.content).toBe('Hello 👋');
    });

    it('finishes an open message with its outcome and drops its lease', async () => {
      const { message } = await open({ lease: { holder: 'proc', expiresAt: new Date(Date.now() + 60_000) } });
      await store.finishMessage(message.id, { status: 'final', finishReason: 'stop', tokensIn: 5, tokensOut: 7, tokensSource: 'provider' });
      expect(await store.getMessage(message.id)).toMatchObject({ status: 'final', finishReason: 'stop', tokensIn: 5, tokensOut: 7, tokensSource: 'provider', leaseOwner: null, leaseExpiresAt: null });
    });

    it('finishes a draft as well', async () => {
      const { message } = await open({ status: 'draft' });
      await store.finishMessage(message.id, { status: 'error', finishReason: 'client_abort' });
      expect(await store.getMessage(message.id)).toMatchObject({ status: 'error', finishReason: 'client_abort' });
    });

    it('leaves a finished message alone', async () => {
      const { message } = await open();
      await store.finishMessage(message.id, { status: 'error', finishReason: 'client_abort', tokensOut: 1, toolCalls: [{ id: 'a' }] });
      const finished = await store.getMessage(message.id);
      await store.finishMessage(message.id, { status: 'final', finishReason: 'stop', tokensIn: 9, tokensOut: 9, tokensSource: 'estimated', toolCalls: [{ id: 'b' }], functionCall: { name: 'f' } });
      expect(await store.getMessage(message.id)).toEqual(finished);
      const written = await create(anon(), [{ role: 'assistant', content: 'done', finishReason: 'stop' }]);
      const [whole] = await all(written.id);
      await store.finishMessage(whole!.id, { status: 'error', finishReason: 'interrupted' });
      expect(await store.getMessage(whole!.id)).toEqual(whole);
    });

    it('replaces toolCalls and functionCall only when the finish brings them', async () => {
      const toolCalls = [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }];
      const functionCall = { name: 'g', arguments: '{}' };
      const kept = await open({ toolCalls, functionCall });
      await store.finishMessage(kept.message.id, { status: 'final', finishReason: 'tool_calls', toolCalls: null });
      expect(await store.getMessage(kept.message.id)).toMatchObject({ toolCalls, functionCall });
      const replaced = await open({ toolCalls, functionCall });
      await store.finishMessage(replaced.message.id, { status: 'final', toolCalls: [{ id: 'call_2' }], functionCall: { name: 'h' } });
      expect(await store.getMessage(replaced.message.id)).toMatchObject({ toolCalls: [{ id: 'call_2' }], functionCall: { name: 'h' } });
    });

    it('does nothing for a message that does not exist', async () => {
      const missing = crypto.randomUUID();
      await store.appendContent(missing, 'x');
      await store.finishMessage(missing, { status: 'final' });
      expect(await store.getMessage(missing)).toBeNull();
    });
  });

  describe('writeBatch', () => {
    async function open(extra: Partial<NewMessage> = {}) {
      const made = await create(anon(), [user('q'), streaming(extra)]);
      return (await all(made.id))[1]!;
    }
    /** What a message holds, without what differs between two messages written alike. */
    const held = (m: Message | null) => {
      const { id: _id, conversationId: _c, parentMessageId: _p, createdAt: _t, updatedAt: _u, ...rest } = m!;
      return rest;
    };
    const toolCalls = [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }];

    it('writes what appendContent then finishMessage would, for many messages in one call', async () => {
      const lease = { holder: 'proc', expiresAt: new Date(Date.now() + 60_000) };
      const cases: { append: string; finish: Parameters<Store['finishMessage']>[1] | null; extra?: Partial<NewMessage> }[] = [
        { append: 'Hello 👋', finish: null },
        { append: unstorable('x'), finish: { status: 'final', finishReason: 'stop', tokensIn: 5, tokensOut: 7, tokensSource: 'provider', toolCalls } },
        { append: '', finish: { status: 'error', finishReason: 'client_abort', functionCall: { name: 'g' } }, extra: { lease } },
        { append: 'kept', finish: { status: 'final', toolCalls: null }, extra: { toolCalls } },
        { append: 'draft', finish: { status: 'error', finishReason: unstorable('r') }, extra: { status: 'draft' } },
      ];
      const batched: Message[] = [];
      const oneByOne: Message[] = [];
      for (const c of cases) {
        batched.push(await open(c.extra));
        const twin = await open(c.extra);
        oneByOne.push(twin);
        await store.appendContent(twin.id, c.append);
        if (c.finish) await store.finishMessage(twin.id, c.finish);
      }
      await store.writeBatch({ messages: cases.map((c, i) => ({ id: batched[i]!.id, append: c.append, finish: c.finish })), completions: [] });
      for (let i = 0; i < cases.length; i++) {
        expect(held(await store.getMessage(batched[i]!.id)), `case ${i}`).toEqual(held(await store.getMessage(oneByOne[i]!.id)));
      }
      expect((await store.getMessage(batched[1]!.id))?.content).toBe(stored('x'));
    });

    it('leaves a finished message ended as it was, still appending text, and ignores a message that does not exist', async () => {
      const message = await open();
      await store.finishMessage(message.id, { status: 'error', finishReason: 'client_abort', tokensOut: 1 });
      const missing = crypto.randomUUID();
      await store.writeBatch({
        messages: [
          { id: message.id, append: 'late', finish: { status: 'final', finishReason: 'stop', tokensOut: 9 } },
          { id: missing, append: 'x', finish: { status: 'final' } },
        ],
        completions: [],
      });
      expect(await store.getMessage(message.id)).toMatchObject({ status: 'error', finishReason: 'client_abort', tokensOut: 1, content: 'late' });
      expect(await store.getMessage(missing)).toBeNull();
    });

    it("notes completions' upstream ids once, beside the messages; an empty batch writes nothing", async () => {
      const owner = anon();
      const messageId = crypto.randomUUID();
      const id = newChatCompletionId();
      const made = await store.createConversation(owner, {}, {
        ...roomy,
        messages: [user('q'), { id: messageId, role: 'assistant', status: 'streaming', content: '' }],
        completion: { id, messageId, model: 'm', metadata: {} },
      });
      await store.writeBatch({ messages: [], completions: [] });
      await store.writeBatch({ messages: [{ id: messageId, append: 'a', finish: null }], completions: [{ id, upstreamId: 'chatcmpl-1', model: 'm-2024' }] });
      await store.writeBatch({ messages: [], completions: [{ id, upstreamId: 'chatcmpl-2', model: 'later' }, { id: newChatCompletionId(), upstreamId: 'x', model: null }] });
      expect((await store.getChatCompletion(owner, id))?.record).toMatchObject({ upstreamId: 'chatcmpl-1', model: 'm-2024' });
      expect((await all(made.id)).map((m) => m.content)).toEqual(['q', 'a']);
    });
  });

  describe('stored bytes', () => {
    it('counts final messages as they are written, in UTF-8, JSON columns included', async () => {
      const owner = anon();
      const contentJson: Json = [{ type: 'text', text: 'é' }, { type: 'image_url', image_url: { url: 'data:,x' } }];
      const toolCalls: Json = [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"q": "ü"}' } }];
      const functionCall: Json = { name: 'g', arguments: '{}' };
      const made = await create(owner, [user('héllo 👋'), { role: 'assistant', content: '', toolCalls }, streaming({ content: 'not yet' })]);
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(11 + jsonBytes(toolCalls));
      await store.appendMessages(owner, made.id, [{ role: 'user', content: 'ü', contentJson, functionCall }], appendRoomy);
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(11 + jsonBytes(toolCalls) + 2 + jsonBytes(contentJson) + jsonBytes(functionCall));
    });

    it('counts a streamed message once, when it finishes, with the content it ended with', async () => {
      const owner = anon();
      const made = await create(owner, [streaming({ content: 'ab' })]);
      const [answer] = await all(made.id);
      await store.appendContent(answer!.id, 'çd');
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(0);
      const toolCalls: Json = [{ id: 'c', function: { name: 'f' } }];
      await store.finishMessage(answer!.id, { status: 'error', finishReason: 'client_abort', toolCalls });
      const expected = bytes('abçd') + jsonBytes(toolCalls);
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(expected);
      await store.finishMessage(answer!.id, { status: 'final' });
      expect((await store.getConversation(owner, made.id))?.storedBytes).toBe(expected);
    });
  });

  describe('text neither database can hold (U+0000, lone surrogates)', () => {
    it('is stored as U+FFFD in titles, models and metadata keys and values', async () => {
      const owner = anon();
      const made = await store.createConversation(
        owner,
        { title: unstorable('t'), model: unstorable('m'), metadata: { [unstorable('k')]: unstorable('v'), list: [unstorable('x'), { [unstorable('n')]: 1 }] } },
        roomy,
      );
      const expected = { title: stored('t'), model: stored('m'), metadata: { [stored('k')]: stored('v'), list: [stored('x'), { [stored('n')]: 1 }] } };
      expect(made).toMatchObject(expected);
      expect(await store.getConversation(owner, made.id)).toMatchObject(expected);
      const patched = await store.updateConversation(owner, made.id, { title: unstorable('T'), metadata: { [unstorable('K')]: [unstorable('V')] } });
      const patchedExpected = { title: stored('T'), metadata: { [stored('K')]: [stored('V')] } };
      expect(patched).toMatchObject(patchedExpected);
      expect(await store.getConversation(owner, made.id)).toMatchObject(patchedExpected);
    });

    it('is stored as U+FFFD in message content, parts, tool calls and finish reasons', async () => {
      const owner = anon();
      const odd = (s: string): NewMessage => ({
        role: 'assistant',
        content: unstorable(s),
        contentJson: [{ type: 'text', text: unstorable(s) }],
        toolCalls: [{ id: unstorable('id'), function: { name: 'f', arguments: unstorable('{}') } }],
        functionCall: { [unstorable('name')]: unstorable('f') },
        finishReason: unstorable('why'),
      });
      const clean = (s: string) => ({
        content: stored(s),
        contentJson: [{ type: 'text', text: stored(s) }],
        toolCalls: [{ id: stored('id'), function: { name: 'f', arguments: stored('{}') } }],
        functionCall: { [stored('name')]: stored('f') },
        finishReason: stored('why'),
      });
      const made = await create(owner, [odd('a')]);
      const [appended] = await store.appendMessages(owner, made.id, [odd('b')], appendRoomy);
      expect(appended).toMatchObject(clean('b'));
      const list = await all(made.id);
      expect(list[0]).toMatchObject(clean('a'));
      expect(list[1]).toMatchObject(clean('b'));
    });

    it('is stored as U+FFFD in appended content and in what a finish brings', async () => {
      const owner = anon();
      const made = await create(owner, [streaming()]);
      const [answer] = await all(made.id);
      await store.appendContent(answer!.id, unstorable('a'));
      await store.appendContent(answer!.id, '\ud83d'); // half of an emoji, alone in its batch
      await store.finishMessage(answer!.id, {
        status: 'final',
        finishReason: unstorable('r'),
        toolCalls: [{ id: unstorable('c') }],
        functionCall: { name: unstorable('f') },
      });
      expect(await store.getMessage(answer!.id)).toMatchObject({
        content: `${stored('a')}${FFFD}`,
        finishReason: stored('r'),
        toolCalls: [{ id: stored('c') }],
        functionCall: { name: stored('f') },
      });
    });

    it('in an id simply finds nothing', async () => {
      const owner = anon();
      const made = await create(owner, [streaming()]);
      const [message] = await all(made.id);
      for (const id of [`${made.id}\u0000`, '\u0000', `${made.id.slice(0, -1)}\ud800`]) {
        expect(await store.getConversation(owner, id)).toBeNull();
        expect(await store.getConversation(owner, id, { includeDeleted: true })).toBeNull();
        expect(await store.updateConversation(owner, id, { title: 'x' })).toBeNull();
        expect(await store.deleteConversation(owner, id)).toBe(false);
        await expectNotFound(store.appendMessages(owner, id, [user('x')], appendRoomy));
        expect(await store.listMessages(id, { afterSeq: 0, limit: 10 })).toEqual([]);
        expect(await store.tokenTotals([id])).toEqual(new Map());
      }
      for (const id of [`${message!.id}\u0000`, '\u0000']) {
        expect(await store.getMessage(id)).toBeNull();
        await store.appendContent(id, 'x');
        await store.finishMessage(id, { status: 'final' });
      }
      expect(await store.getConsent('\u0000')).toBeNull();
      expect(await store.getMessage(message!.id)).toMatchObject({ content: '', status: 'streaming' });
    });
  });

  describe('listConversations', () => {
    it('pages newest first, stably when creation times are equal', async () => {
      const owner = anon();
      const made: Conversation[] = [];
      for (let i = 0; i < 7; i++) made.push(await create(owner, [], { title: `${i}` }));
      // Five share one creation time (as conversations made in the same millisecond do); two are older.
      const same = new Date(Date.now() + 60_000);
      await db.sql(`update conversations set created_at = ${sqlTime(same)} where id in (${made.slice(2).map((c) => `'${c.id}'`).join(', ')})`);
      await db.sql(`update conversations set created_at = ${sqlTime(new Date(same.getTime() - 1))} where id = '${made[1]!.id}'`);
      const expected = [
        ...made
          .slice(2)
          .map((c) => c.id)
          .sort()
          .reverse(),
        made[1]!.id,
        made[0]!.id,
      ];
      for (const limit of [1, 2, 3, 7]) {
        const seen: string[] = [];
        let after = null;
        for (;;) {
          const page: { items: Conversation[]; hasMore: boolean } = await store.listConversations(owner, { limit, after });
          seen.push(...page.items.map((c) => c.id));
          expect(page.items.length).toBeLessThanOrEqual(limit);
          if (!page.hasMore) break;
          expect(page.items).toHaveLength(limit);
          const last = page.items.at(-1)!;
          after = { createdAt: last.createdAt, id: last.id };
        }
        expect(seen).toEqual(expected);
      }
    });

    it('leaves deleted conversations out unless asked for them', async () => {
      const owner = anon();
      const kept = await create(owner);
      const gone = await create(owner);
      await store.deleteConversation(owner, gone.id);
      expect((await store.listConversations(owner, { limit: 10 })).items.map((c) => c.id)).toEqual([kept.id]);
      const withDeleted = await store.listConversations(owner, { limit: 10, includeDeleted: true });
      expect(withDeleted.items.map((c) => c.id).sort()).toEqual([kept.id, gone.id].sort());
      expect(withDeleted.items.find((c) => c.id === gone.id)?.deletedAt).toBeInstanceOf(Date);
      expect(withDeleted.hasMore).toBe(false);
    });
  });

  describe('updateConversation and soft delete', () => {
    it('changes only what the patch names, and the update time', async () => {
      const owner = anon();
      const made = await store.createConversation(owner, { title: 'a', model: 'm', metadata: { x: 1 } }, roomy);
      const later = await clockPast(made.updatedAt);
      const titled = await store.updateConversation(owner, made.id, { title: 'b' });
      expect(titled).toMatchObject({ title: 'b', model: 'm', metadata: { x: 1 }, createdAt: made.createdAt });
      expect(titled!.updatedAt.getTime()).toBeGreaterThanOrEqual(later.getTime());
      expect(await store.updateConversation(owner, made.id, { metadata: { y: 2 } })).toMatchObject({ title: 'b', metadata: { y: 2 } });
      expect(await store.updateConversation(owner, made.id, { title: null })).toMatchObject({ title: null, metadata: { y: 2 } });
      expect(await store.getConversation(owner, made.id)).toMatchObject({ title: null, metadata: { y: 2 } });
    });

    it('hides a deleted conversation, keeps its messages, and refuses to delete it twice', async () => {
      const owner = anon();
      const made = await create(owner, [user('a'), user('b')]);
      expect(await store.deleteConversation(owner, made.id)).toBe(true);
      expect(await store.getConversation(owner, made.id)).toBeNull();
      const deleted = await store.getConversation(owner, made.id, { includeDeleted: true });
      expect(deleted?.deletedAt).toBeInstanceOf(Date);
      expect(deleted?.updatedAt).toEqual(deleted?.deletedAt);
      expect(await store.deleteConversation(owner, made.id)).toBe(false);
      expect(await store.updateConversation(owner, made.id, { title: 'x' })).toBeNull();
      expect(await seqs(made.id)).toEqual([1, 2]);
      expect(await store.deleteConversation(owner, crypto.randomUUID())).toBe(false);
    });
  });

  describe('tokenTotals', () => {
    it('sums known counts per conversation; none known is null; no messages is absent', async () => {
      const owner = anon();
      const counted = await create(owner, [
        { role: 'user', content: 'a', tokensIn: 3 },
        { role: 'assistant', content: 'b', tokensIn: 10, tokensOut: 4 },
        { role: 'assistant', content: 'c' },
      ]);
      const unknown = await create(owner, [user('x')]);
      const empty = await create(owner);
      const totals = await store.tokenTotals([counted.id, unknown.id, empty.id, crypto.randomUUID()]);
      expect(totals).toEqual(
        new Map([
          [counted.id, { tokensIn: 13, tokensOut: 4 }],
          [unknown.id, { tokensIn: null, tokensOut: null }],
        ]),
      );
      expect(await store.tokenTotals([])).toEqual(new Map());
    });

    it('counts what a finish records', async () => {
      const made = await create(anon(), [streaming()]);
      const [answer] = await all(made.id);
      await store.finishMessage(answer!.id, { status: 'final', tokensIn: 2, tokensOut: 5, tokensSource: 'estimated' });
      expect(await store.tokenTotals([made.id])).toEqual(new Map([[made.id, { tokensIn: 2, tokensOut: 5 }]]));
    });
  });

  describe('consent and shared settings', () => {
    it('keeps a session consent, the latest choice winning', async () => {
      const sessionId = `s-${crypto.randomUUID()}`;
      expect(await store.getConsent(sessionId)).toBeNull();
      await store.setConsent(sessionId, 'granted', { userAgent: 'ua', ipHash: 'h' });
      expect(await store.getConsent(sessionId)).toBe('granted');
      await store.setConsent(sessionId, 'denied');
      expect(await store.getConsent(sessionId)).toBe('denied');
      // A session that already exists through its conversations takes a consent too.
      const owner = anon();
      await create(owner);
      expect(await store.getConsent(owner.sessionId)).toBeNull();
      await store.setConsent(owner.sessionId, 'granted');
      expect(await store.getConsent(owner.sessionId)).toBe('granted');
    });

    it('gives every caller of sharedSetting the first value written', async () => {
      const key = `k-${crypto.randomUUID()}`;
      const values = await Promise.all(Array.from({ length: 8 }, (_, i) => store.sharedSetting(key, `v${i}`)));
      expect(new Set(values).size).toBe(1);
      expect(values[0]).toMatch(/^v\d$/);
      expect(await store.sharedSetting(key, 'later')).toBe(values[0]);
      expect(await store.sharedSetting(`other-${key}`, 'own')).toBe('own');
    });
  });

  describe('live answers', () => {
    it('readMessageText reads a stretch of content by code point, with the status of the same snapshot', async () => {
      const owner = anon();
      const id = crypto.randomUUID();
      const made = await create(owner, [user('q'), streaming({ id })]);
      await store.appendContent(id, 'a🙂b');
      await store.appendContent(id, '漢\u0000🙂c');
      const text = `a🙂b漢${FFFD}🙂c`;
      expect(await store.readMessageText(id, 0)).toEqual({ conversationId: made.id, role: 'assistant', status: 'streaming', text, finishReason: null, toolCalls: null });
      const points = Array.from(text);
      for (let from = 0; from <= points.length + 1; from++) {
        for (const max of [1, 2, 3, 100]) expect((await store.readMessageText(id, from, max))!.text).toBe(points.slice(from, from + max).join(''));
      }
      await store.finishMessage(id, { status: 'final', finishReason: 'tool_calls', toolCalls: [{ id: 't' }] });
      expect(await store.readMessageText(id, 5)).toMatchObject({ status: 'final', text: '🙂c', finishReason: 'tool_calls', toolCalls: [{ id: 't' }] });
      expect(await store.readMessageText(crypto.randomUUID(), 0)).toBeNull();
    });

    it('requestCancel notes the first request on an open message whose writer lives; renewLeases hands it to that writer', async () => {
      const owner = anon();
      const holder = `p-${crypto.randomUUID()}`;
      const future = new Date(Date.now() + 60_000);
      const ids = { asked: crypto.randomUUID(), notAsked: crypto.randomUUID(), done: crypto.randomUUID() };
      await create(owner, [
        streaming({ id: ids.asked, lease: { holder, expiresAt: future } }),
        streaming({ id: ids.notAsked, lease: { holder, expiresAt: future } }),
        { id: ids.done, role: 'assistant', content: 'over' },
      ]);
      const first = new Date(Date.now() - 1_000);
      expect(await store.requestCancel(ids.asked, first)).toMatchObject({ id: ids.asked, status: 'streaming', finishReason: null, leaseOwner: holder, cancelRequestedAt: first });
      expect((await store.requestCancel(ids.asked, new Date()))!.cancelRequestedAt).toEqual(first);
      // Ended, or not there: nothing changes.
      expect(await store.requestCancel(ids.done, new Date())).toBeNull();
      expect(await store.getMessage(ids.done)).toMatchObject({ status: 'final', cancelRequestedAt: null });
      expect(await store.requestCancel(crypto.randomUUID(), new Date())).toBeNull();
      expect(await store.renewLeases(holder, future)).toEqual([ids.asked]);
      expect(await store.renewLeases(`p-${crypto.randomUUID()}`, future)).toEqual([]);
    });

    it('requestCancel closes an open message no live process holds as error / cancelled, content kept and counted', async () => {
      const owner = anon();
      const id = crypto.randomUUID();
      const made = await create(owner, [streaming({ id, lease: { holder: 'gone', expiresAt: new Date(Date.now() - 1_000) } })]);
      await store.appendContent(id, 'partial');
      const now = new Date();
      expect(await store.requestCancel(id, now)).toMatchObject({
        status: 'error',
        finishReason: 'cancelled',
        content: 'partial',
        leaseOwner: null,
        leaseExpiresAt: null,
        cancelRequestedAt: now,
      });
      expect((await store.getConversation(owner, made.id))!.storedBytes).toBe(bytes('partial'));
      // Closed is closed: the writer coming back cannot reopen it.
      await store.finishMessage(id, { status: 'final', finishReason: 'stop' });
      expect(await store.getMessage(id)).toMatchObject({ status: 'error', finishReason: 'cancelled' });
    });

    it('streamingMessageId is the latest streaming message, in get, list and update; null when none is', async () => {
      const owner = anon();
      const [older, newer] = [crypto.randomUUID(), crypto.randomUUID()];
      const made = await create(owner, [user('q'), streaming({ id: older }), user('r'), streaming({ id: newer }), streaming({ status: 'draft' })]);
      const seen = async () => {
        const got = (await store.getConversation(owner, made.id))!.streamingMessageId;
        const listed = (await store.listConversations(owner, { limit: 10 })).items.find((c) => c.id === made.id)!.streamingMessageId;
        const updated = (await store.updateConversation(owner, made.id, { title: 't' }))!.streamingMessageId;
        expect(new Set([got, listed, updated]).size).toBe(1);
        return got;
      };
      expect(await seen()).toBe(newer);
      await store.finishMessage(newer, { status: 'final' });
      expect(await seen()).toBe(older);
      await store.finishMessage(older, { status: 'error', finishReason: 'interrupted' });
      expect(await seen()).toBeNull();
      expect((await create(owner)).id).toEqual(expect.any(String));
    });
  });

  // These look at or change every row, so each test gets a database of its own.
  describe('database-wide operations', () => {
    let fresh: TestStore;
    let s: Store;
    beforeEach(async () => {
      fresh = await testStore(dialect);
      s = fresh.store;
    });
    afterEach(async () => {
      await fresh?.cleanup();
    });

    const make = (owner: Principal, messages: NewMessage[] = [], metadata = {}) => s.createConversation(owner, { metadata }, { ...roomy, messages });
    const getMessages = async (id: string) => s.listMessages(id, { afterSeq: 0, limit: 100 });
    const statusOf = async (id: string): Promise<Message> => (await s.getMessage(id))!;

    it('pings while open and not after close', async () => {
      expect(await s.ping()).toBe(true);
      await s.close();
      expect(await s.ping()).toBe(false);
    });

    it('counts live conversations and all messages', async () => {
      expect(await s.counts()).toEqual({ conversations: 0, messages: 0 });
      const owner = anon();
      const made = await make(owner, [user('a'), user('b')]);
      await make(anon());
      expect(await s.counts()).toEqual({ conversations: 2, messages: 2 });
      await s.deleteConversation(owner, made.id);
      expect(await s.counts()).toEqual({ conversations: 1, messages: 2 });
    });

    describe('leases', () => {
      const t0 = new Date(Date.now() + 3_600_000);
      const at = (minutes: number) => new Date(t0.getTime() + minutes * 60_000);

      it("renewLeases extends only the owner's open messages", async () => {
        const owner = anon();
        const ids = { mine: crypto.randomUUID(), myDraft: crypto.randomUUID(), theirs: crypto.randomUUID(), myFinal: crypto.randomUUID() };
        await make(owner, [
          streaming({ id: ids.mine, lease: { holder: 'proc-1', expiresAt: at(1) } }),
          streaming({ id: ids.myDraft, status: 'draft', lease: { holder: 'proc-1', expiresAt: at(1) } }),
          streaming({ id: ids.theirs, lease: { holder: 'proc-2', expiresAt: at(1) } }),
          { id: ids.myFinal, role: 'assistant', content: 'done', lease: { holder: 'proc-1', expiresAt: at(1) } },
        ]);
        await s.renewLeases('proc-1', at(10));
        expect((await statusOf(ids.mine)).leaseExpiresAt).toEqual(at(10));
        expect((await statusOf(ids.myDraft)).leaseExpiresAt).toEqual(at(10));
        expect((await statusOf(ids.theirs)).leaseExpiresAt).toEqual(at(1));
        expect((await statusOf(ids.myFinal)).leaseExpiresAt).toEqual(at(1));
      });

      it('sweepOrphans closes expired or lease-less open messages as interrupted, keeping content, and never a live lease', async () => {
        const owner = anon();
        const ids = { live: crypto.randomUUID(), edge: crypto.randomUUID(), expired: crypto.randomUUID(), leaseless: crypto.randomUUID(), draft: crypto.randomUUID() };
        const made = await make(owner, [
          user('q'),
          streaming({ id: ids.live, lease: { holder: 'p', expiresAt: at(10) } }),
          streaming({ id: ids.edge, lease: { holder: 'p', expiresAt: at(5) } }),
          streaming({ id: ids.expired, lease: { holder: 'gone', expiresAt: at(1) } }),
          streaming({ id: ids.leaseless }),
          streaming({ id: ids.draft, status: 'draft', lease: { holder: 'gone', expiresAt: at(1) } }),
        ]);
        await s.appendContent(ids.expired, 'partial ');
        await s.appendContent(ids.expired, 'answer');
        const before = (await s.getConversation(owner, made.id))!.storedBytes;
        expect(await s.sweepOrphans(at(5))).toBe(3);
        for (const id of [ids.expired, ids.leaseless, ids.draft]) {
          expect(await statusOf(id)).toMatchObject({ status: 'error', finishReason: 'interrupted', leaseOwner: null, leaseExpiresAt: null });
        }
        expect((await statusOf(ids.expired)).content).toBe('partial answer');
        // A lease that ends at the sweep's instant is still live.
        expect(await statusOf(ids.edge)).toMatchObject({ status: 'streaming', leaseOwner: 'p', leaseExpiresAt: at(5) });
        expect(await statusOf(ids.live)).toMatchObject({ status: 'streaming', leaseOwner: 'p', leaseExpiresAt: at(10) });
        expect((await s.getConversation(owner, made.id))!.storedBytes).toBe(before + bytes('partial answer'));
        // Closed is closed: the writer coming back cannot reopen it.
        await s.finishMessage(ids.expired, { status: 'final', finishReason: 'stop' });
        expect(await statusOf(ids.expired)).toMatchObject({ status: 'error', finishReason: 'interrupted' });
        expect(await s.sweepOrphans(at(5))).toBe(0);
        expect(await s.sweepOrphans(at(11))).toBe(2);
        expect((await getMessages(made.id)).filter((m) => m.status === 'streaming')).toEqual([]);
      });
    });

    describe('purgeExpired', () => {
      const far = new Date(0);

      it('deletes idle conversations with their messages unless pinned (true only)', async () => {
        const owner = anon();
        const idle = await make(owner, [user('a'), user('b')]);
        const pinned = await make(owner, [user('c')], { pinned: true });
        const notReallyPinned = await Promise.all([{ pinned: 'true' }, { pinned: 1 }, { pinned: false }, { pinned: { value: true } }].map((m) => make(owner, [], m)));
        const cut = await clockPast(new Date());
        const recent = await make(owner, [user('d')]);
        const result = await s.purgeExpired({ idleBefore: cut, deletedBefore: far, batchSize: 100 });
        expect(result).toEqual({ conversations: 1 + notReallyPinned.length, sessions: 0, unreadable: [] });
        expect(await s.getConversation(owner, idle.id, { includeDeleted: true })).toBeNull();
        for (const c of notReallyPinned) expect(await s.getConversation(owner, c.id, { includeDeleted: true })).toBeNull();
        expect((await s.listConversations(owner, { limit: 10 })).items.map((c) => c.id).sort()).toEqual([pinned.id, recent.id].sort());
        expect(await getMessages(idle.id)).toEqual([]);
        expect(await s.counts()).toEqual({ conversations: 2, messages: 2 });
      });

      it('deletes soft-deleted conversations once their grace period is over, pinned or not', async () => {
        const owner = anon();
        const made = await make(owner, [user('a')], { pinned: true });
        await s.deleteConversation(owner, made.id);
        const deletedAt = (await s.getConversation(owner, made.id, { includeDeleted: true }))!.deletedAt!;
        expect(await s.purgeExpired({ idleBefore: null, deletedBefore: deletedAt, batchSize: 100 })).toEqual({ conversations: 0, sessions: 0, unreadable: [] });
        expect(await s.getConversation(owner, made.id, { includeDeleted: true })).not.toBeNull();
        const after = await clockPast(deletedAt);
        expect(await s.purgeExpired({ idleBefore: null, deletedBefore: after, batchSize: 100 })).toEqual({ conversations: 1, sessions: 0, unreadable: [] });
        expect(await s.getConversation(owner, made.id, { includeDeleted: true })).toBeNull();
        expect(await s.counts()).toEqual({ conversations: 0, messages: 0 });
      });

      it('works in batches of batchSize, sessions last', async () => {
        const owner = anon();
        for (let i = 0; i < 5; i++) await make(owner, [user(`${i}`)]);
        const cut = await clockPast(new Date());
        const sweep = () => s.purgeExpired({ idleBefore: cut, deletedBefore: far, batchSize: 2 });
        expect(await sweep()).toEqual({ conversations: 2, sessions: 0, unreadable: [] });
        expect(await sweep()).toEqual({ conversations: 2, sessions: 0, unreadable: [] });
        expect(await sweep()).toEqual({ conversations: 1, sessions: 1, unreadable: [] });
        expect(await sweep()).toEqual({ conversations: 0, sessions: 0, unreadable: [] });
        for (let i = 0; i < 3; i++) await s.setConsent(`s-${crypto.randomUUID()}`, 'granted');
        const later = await clockPast(new Date());
        const sweepSessions = () => s.purgeExpired({ idleBefore: later, deletedBefore: far, batchSize: 2 });
        expect(await sweepSessions()).toEqual({ conversations: 0, sessions: 2, unreadable: [] });
        expect(await sweepSessions()).toEqual({ conversations: 0, sessions: 1, unreadable: [] });
      });

      it('purges idle sessions with nothing left, but keeps a denied consent and sessions that still hold something', async () => {
        const granted = `s-${crypto.randomUUID()}`;
        const denied = `s-${crypto.randomUUID()}`;
        await s.setConsent(granted, 'granted');
        await s.setConsent(denied, 'denied');
        const holdsPinned = anon();
        await make(holdsPinned, [], { pinned: true });
        const holdsDeleted = anon();
        const gone = await make(holdsDeleted);
        const cut = await clockPast(new Date());
        // Deleted after the cut: not idle, and within its grace period.
        await s.deleteConversation(holdsDeleted, gone.id);
        const active = `s-${crypto.randomUUID()}`;
        await s.setConsent(active, 'granted');
        expect(await s.purgeExpired({ idleBefore: cut, deletedBefore: far, batchSize: 100 })).toEqual({ conversations: 0, sessions: 1, unreadable: [] });
        expect(await s.getConsent(granted)).toBeNull();
        expect(await s.getConsent(denied)).toBe('denied');
        expect(await s.getConsent(active)).toBe('granted');
        expect((await s.listConversations(holdsPinned, { limit: 10 })).items).toHaveLength(1);
        expect(await s.getConversation(holdsDeleted, gone.id, { includeDeleted: true })).not.toBeNull();
        // Once the deleted conversation goes, its idle session goes with it.
        const deletedBefore = await clockPast((await s.getConversation(holdsDeleted, gone.id, { includeDeleted: true }))!.deletedAt!);
        expect(await s.purgeExpired({ idleBefore: cut, deletedBefore, batchSize: 100 })).toEqual({ conversations: 1, sessions: 1, unreadable: [] });
        expect(await s.purgeExpired({ idleBefore: cut, deletedBefore, batchSize: 100 })).toEqual({ conversations: 0, sessions: 0, unreadable: [] });
        expect(await s.getConsent(denied)).toBe('denied');
      });

      it('with idleBefore null deletes nothing for idleness, sessions included', async () => {
        const owner = anon();
        await make(owner);
        await s.setConsent(`s-${crypto.randomUUID()}`, 'granted');
        expect(await s.purgeExpired({ idleBefore: null, deletedBefore: new Date(Date.now() + 60_000), batchSize: 100 })).toEqual({ conversations: 0, sessions: 0, unreadable: [] });
        expect(await s.counts()).toEqual({ conversations: 1, messages: 0 });
      });
    });
  });
});
