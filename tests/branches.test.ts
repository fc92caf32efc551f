import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../db/store.js';
import { MOCK_TOOL_CALL } from '../mock/upstream.js';
import { call, newSession, testApp, type TestApp } from './helpers/app.js';
import { dialects, testStore, type TestStore } from './helpers/dialects.js';
import { useMockUpstream } from './helpers/mock.js';
import { readChunks, streamedContent, waitFor } from './helpers/streams.js';
import { signedInUser } from './helpers/users.js';

/**
 * Conversations are trees: a chat page resends the whole history, edits an earlier message,
 * regenerates an answer, switches between branches. Whatever it sends, each answer's path in
 * the tree is exactly the messages the upstream received, and nothing is stored twice.
 */

const mock = useMockUpstream();

type Msg = { role: string; content?: string | null; [k: string]: unknown };
const u = (content: string, extra: Record<string, unknown> = {}): Msg => ({ role: 'user', content, ...extra });
const a = (content: string, extra: Record<string, unknown> = {}): Msg => ({ role: 'assistant', content, ...extra });

describe.each(dialects)('branching conversations on %s', (dialect) => {
  let db: TestStore;
  let app: TestApp;

  beforeAll(async () => {
    db = await testStore(dialect);
    app = testApp(db.store, { OPENAI_BASE_URL: mock.url });
  });
  afterAll(async () => {
    await db?.cleanup();
  });

  /** Every message of the conversation (the tree), once no answer is streaming any more. */
  const tree = (id: string, session: string, headers: Record<string, string> = {}) =>
    waitFor(async () => {
      const res = await call(app, 'GET', `/v1/conversations/${id}?view=tree&limit=200`, { session, headers });
      return res.json.messages.every((m: any) => m.status !== 'streaming') ? (res.json.messages as any[]) : null;
    });
  const active = async (id: string, session: string) => (await call(app, 'GET', `/v1/conversations/${id}?limit=200`, { session })).json;

  /**
   * One chat completion as a page sends it; returns the conversation id and the answer's text.
   * A stream is read to its end, and the answer waited for until recorded.
   */
  async function chat(session: string, messages: Msg[], { conversation, stream = true, text, headers = {} }: { conversation?: string; stream?: boolean; text?: string; headers?: Record<string, string> } = {}) {
    const res = await app.request('/v1/chat/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-session-id': session, ...(conversation && { 'x-conversation-id': conversation }), ...headers },
      body: JSON.stringify({ messages, stream, mock: text === undefined ? { chunks: 3 } : { text, chunks: 3 } }),
    });
    expect(res.status, await res.clone().text()).toBe(200);
    const id = res.headers.get('x-conversation-id')!;
    const answer = stream ? streamedContent((await readChunks(res.body!)).text) : (await res.json()).choices[0].message.content;
    await tree(id, session, headers);
    return { id, answer: answer as string };
  }

  it("shows each stored completion's own path as the messages that led to it, never another branch's", async () => {
    const session = newSession();
    const send = async (messages: Msg[], conversation?: string) => {
      const res = await call(app, 'POST', '/v1/chat/completions', {
        session,
        headers: conversation ? { 'x-conversation-id': conversation } : {},
        body: { messages, mock: { text: 'ok' } },
      });
      expect(res.status).toBe(200);
      return { id: res.headers.get('x-conversation-id')!, completion: res.headers.get('x-chat-completion-id')! };
    };
    const first = await send([u('u1')]);
    await send([u('u1'), a('ok'), u('u2')], first.id);
    const edited = await send([u('u1'), a('ok'), u('u2 edited')], first.id);
    const led = await call(app, 'GET', `/v1/chat/completions/${edited.completion}/messages?limit=100`, { session });
    expect(led.status).toBe(200);
    expect(led.json.data.map((m: any) => m.content)).toEqual(['u1', 'ok', 'u2 edited']);
    const newestFirst = await call(app, 'GET', `/v1/chat/completions/${edited.completion}/messages?order=desc&limit=1`, { session });
    expect(newestFirst.json).toMatchObject({ has_more: true });
    expect(newestFirst.json.data.map((m: any) => m.content)).toEqual(['u2 edited']);
  });

  it('lists a conversation\'s items along its active path, so an edited-away branch is not among them', async () => {
    const session = newSession();
    const first = await chat(session, [u('one')], { stream: false, text: 'A' });
    await chat(session, [u('one'), a('A'), u('two')], { conversation: first.id, stream: false, text: 'B' });
    await chat(session, [u('one'), a('A'), u('two, edited')], { conversation: first.id, stream: false, text: 'C' });
    const items = await call(app, 'GET', `/v1/conversations/${first.id}/items?order=asc&limit=100`, { session });
    expect(items.status).toBe(200);
    expect(items.json.data.map((i: any) => i.content[0].text)).toEqual(['one', 'A', 'two, edited', 'C']);
  });

  /** The messages the upstream received for the last request (ids stripped, as sent). */
  const lastSent = () => mock.requests.at(-1)!.body.messages.map((m: any) => ({ role: m.role, content: m.content }));
  /** What a stored path says, as a request would say it. */
  const said = (messages: any[]) => messages.map((m) => ({ role: m.role, content: m.content }));
  /** The path from the root to a message, read from the tree. */
  const pathTo = (messages: any[], id: string) => {
    const byId = new Map(messages.map((m) => [m.id, m]));
    const path = [];
    for (let m = byId.get(id); m; m = byId.get(m.parent_message_id)) path.unshift(m);
    return path;
  };

  it('records the issue: answer, next turn, regenerate, edit — as a tree whose every answer shows what the model saw', async () => {
    const session = newSession();
    const sent: Record<string, Msg[]> = {};
    const first = await chat(session, [u('u1')], { text: 'a1' });
    sent.a1 = lastSent();
    const id = first.id;
    await chat(session, [u('u1'), a('a1'), u('u2')], { conversation: id, text: 'a2' });
    sent.a2 = lastSent();
    // Regenerate: the same request again, not streamed this time.
    await chat(session, [u('u1'), a('a1'), u('u2')], { conversation: id, text: 'a2 again', stream: false });
    sent['a2 again'] = lastSent();
    // Edit u2.
    await chat(session, [u('u1'), a('a1'), u('u2 edited')], { conversation: id, text: 'a3' });
    sent.a3 = lastSent();

    const all = await tree(id, session);
    expect(all.map((m) => `${m.seq}:${m.role}:${m.content}`)).toEqual(['1:user:u1', '2:assistant:a1', '3:user:u2', '4:assistant:a2', '5:assistant:a2 again', '6:user:u2 edited', '7:assistant:a3']);
    const bySeq = (seq: number) => all[seq - 1];
    expect(all.map((m) => (m.parent_message_id ? all.findIndex((p) => p.id === m.parent_message_id) + 1 : null))).toEqual([null, 1, 2, 3, 3, 2, 6]);
    for (const answer of ['a1', 'a2', 'a2 again', 'a3']) {
      const stored = all.find((m) => m.content === answer)!;
      expect(said(pathTo(all, stored.id)), answer).toEqual([...sent[answer]!, { role: 'assistant', content: answer }]);
    }

    // The conversation as it stands: the edited branch, with "2 / 2" on the edit.
    const now = await active(id, session);
    expect(now.active_message_id).toBe(bySeq(7).id);
    expect(now.message_count).toBe(7);
    expect(now.messages.map((m: any) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
      ['u1', 0, 1],
      ['a1', 0, 1],
      ['u2 edited', 1, 2],
      ['a3', 0, 1],
    ]);
    // The two answers to u2 are siblings.
    expect(all.filter((m) => m.parent_message_id === bySeq(3).id).map((m) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
      ['a2', 0, 2],
      ['a2 again', 1, 2],
    ]);
  });

  it('regenerates three times: four sibling answers, the user message stored once', async () => {
    const session = newSession();
    const { id } = await chat(session, [u('hello')], { text: 'one' });
    for (const text of ['two', 'three', 'four']) await chat(session, [u('hello')], { conversation: id, text, stream: text !== 'three' });
    const all = await tree(id, session);
    expect(all.filter((m) => m.role === 'user')).toHaveLength(1);
    expect(all.filter((m) => m.parent_message_id === all[0].id).map((m) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
      ['one', 0, 4],
      ['two', 1, 4],
      ['three', 2, 4],
      ['four', 3, 4],
    ]);
    expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['hello', 'four']);
  });

  it('edits the first message: a second root, which becomes the conversation', async () => {
    const session = newSession();
    const { id } = await chat(session, [u('first'), ], { text: 'answer 1' });
    await chat(session, [u('first'), a('answer 1'), u('second')], { conversation: id, text: 'answer 2' });
    await chat(session, [u('first, edited')], { conversation: id, text: 'answer 3' });
    const all = await tree(id, session);
    const roots = all.filter((m) => m.parent_message_id === null);
    expect(roots.map((m) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
      ['first', 0, 2],
      ['first, edited', 1, 2],
    ]);
    expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['first, edited', 'answer 3']);
  });

  it('follows a branch that is not active, and makes it active', async () => {
    const session = newSession();
    const { id } = await chat(session, [u('q')], { text: 'x' });
    await chat(session, [u('q'), a('x'), u('left')], { conversation: id, text: 'L' });
    await chat(session, [u('q'), a('x'), u('right')], { conversation: id, text: 'R' });
    // The page goes back to the left branch and continues it.
    await chat(session, [u('q'), a('x'), u('left'), a('L'), u('left again')], { conversation: id, text: 'L2' });
    const all = await tree(id, session);
    expect(all.map((m) => m.content)).toEqual(['q', 'x', 'left', 'L', 'right', 'R', 'left again', 'L2']);
    expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['q', 'x', 'left', 'L', 'left again', 'L2']);
  });

  it('matches tool-call histories exactly, streamed or not, however the client orders their keys', async () => {
    const tools = [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }];
    for (const stream of [true, false]) {
      const session = newSession();
      const send = (messages: Msg[], conversation?: string) =>
        app.request('/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session, ...(conversation && { 'x-conversation-id': conversation }) },
          body: JSON.stringify({ messages, tools, stream, mock: { tool_calls: true } }),
        });
      const res = await send([u('Weather in Paris?')]);
      const id = res.headers.get('x-conversation-id')!;
      await res.text();
      await tree(id, session);
      // The client resends the call as it assembled it: content null, keys in its own order, an index.
      const call1 = { function: { arguments: MOCK_TOOL_CALL.arguments, name: MOCK_TOOL_CALL.name }, type: 'function', id: MOCK_TOOL_CALL.id, ...(stream && { index: 0 }) };
      const history = [u('Weather in Paris?'), { role: 'assistant', content: null, tool_calls: [call1] }, { role: 'tool', tool_call_id: MOCK_TOOL_CALL.id, content: '{"temp":21}' }];
      await (await send(history, id)).text();
      const all = await tree(id, session);
      expect(all.map((m) => [m.role, m.parent_message_id === null ? null : all.findIndex((p) => p.id === m.parent_message_id) + 1]), `stream: ${stream}`).toEqual([
        ['user', null],
        ['assistant', 1],
        ['tool', 2],
        ['assistant', 3],
      ]);
      expect(all[2]).toMatchObject({ content: '{"temp":21}', content_json: { tool_call_id: MOCK_TOOL_CALL.id } });
      // Another tool result for the same call is another branch: it says something else.
      await (await send([...history.slice(0, 2), { role: 'tool', tool_call_id: MOCK_TOOL_CALL.id, content: '{"temp":5}' }], id)).text();
      const more = await tree(id, session);
      expect(more.filter((m) => m.role === 'tool').map((m) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
        ['{"temp":21}', 0, 2],
        ['{"temp":5}', 1, 2],
      ]);
    }
  });

  it('stores a regenerate from two pages at once as two sibling answers', async () => {
    const session = newSession();
    const { id } = await chat(session, [u('race')], { text: 'base' });
    const history = [u('race'), a('base'), u('again')];
    // Both requests are in before either answer ends: their turns queue on the conversation's lock.
    const [one, two] = await Promise.all(
      ['A', 'B'].map((text) =>
        app.request('/v1/chat/completions', {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-session-id': session, 'x-conversation-id': id },
          body: JSON.stringify({ messages: history, stream: true, mock: { text, chunks: 4, delay_ms: 20 } }),
        }),
      ),
    );
    await Promise.all([readChunks(one!.body!), readChunks(two!.body!)]);
    const all = await tree(id, session);
    expect(all.filter((m) => m.content === 'again')).toHaveLength(1);
    const again = all.find((m) => m.content === 'again');
    expect(all.filter((m) => m.parent_message_id === again.id).map((m) => m.content).sort()).toEqual(['A', 'B']);
    expect(all.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);
  });

  it('waits for the end of the answer a client resends the moment its stream ended, then matches it', async () => {
    // The server records a stream's end just after the client has it: hold that write until the
    // next turn is in and waiting for it.
    let release!: () => void;
    const finishes = new Promise<void>((r) => (release = r));
    let waiting!: () => void;
    const seenWaiting = new Promise<void>((r) => (waiting = r));
    const held: Store = Object.assign(Object.create(db.store) as Store, {
      finishMessage: async (...args: Parameters<Store['finishMessage']>) => {
        await finishes;
        return db.store.finishMessage(...args);
      },
      // A stream's end reaches the store in a batch of the history writer.
      writeBatch: async (...args: Parameters<Store['writeBatch']>) => {
        if (args[0].messages.some((m) => m.finish)) await finishes;
        return db.store.writeBatch(...args);
      },
      getMessage: async (id: string) => {
        const m = await db.store.getMessage(id);
        if (m?.status === 'streaming') waiting();
        return m;
      },
    });
    const slow = testApp(held, { OPENAI_BASE_URL: mock.url });
    const session = newSession();
    const send = (messages: Msg[], conversation?: string) =>
      slow.request('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-session-id': session, ...(conversation && { 'x-conversation-id': conversation }) },
        body: JSON.stringify({ messages, stream: true, mock: { text: `answer ${messages.length}` } }),
      });
    const first = await send([u('call a tool')]);
    const id = first.headers.get('x-conversation-id')!;
    expect(streamedContent((await readChunks(first.body!)).text)).toBe('answer 1');
    const second = send([u('call a tool'), a('answer 1'), u('here is the result')], id);
    // (Should the turn not wait, it answers first, and the tree below shows the branch.)
    await Promise.race([seenWaiting, second]);
    release();
    await readChunks((await second).body!);
    const all = await tree(id, session);
    expect(all.map((m) => [m.content, m.parent_message_id === null ? null : all.findIndex((p) => p.id === m.parent_message_id) + 1])).toEqual([
      ['call a tool', null],
      ['answer 1', 1],
      ['here is the result', 2],
      ['answer 3', 3],
    ]);
  });

  describe('client message ids', () => {
    it('are matched, adopted by the recorded answer, stripped before the upstream, and never stored twice', async () => {
      const session = newSession();
      const { id } = await chat(session, [u('hi', { id: 'c1' })], { text: 'hello' });
      expect(mock.requests.at(-1)!.body.messages).toEqual([{ role: 'user', content: 'hi' }]);
      const history = [u('hi', { id: 'c1' }), a('hello', { id: 'c2' }), u('how are you?', { id: 'c3' })];
      await chat(session, history, { conversation: id, text: 'fine' });
      expect(mock.requests.at(-1)!.body.messages.every((m: any) => !('id' in m))).toBe(true);
      // A retry of the same request: nothing new but its answer.
      await chat(session, history, { conversation: id, text: 'fine again' });
      let all = await tree(id, session);
      expect(all.map((m) => [m.content, m.client_id])).toEqual([
        ['hi', 'c1'],
        ['hello', 'c2'],
        ['how are you?', 'c3'],
        ['fine', null],
        ['fine again', null],
      ]);
      // The same text under a new id is a new message; new text under its old id, an edit.
      await chat(session, [...history.slice(0, 2), u('how are you?', { id: 'c4' })], { conversation: id, text: 'new message' });
      await chat(session, [...history.slice(0, 2), u('how do you do?', { id: 'c3' })], { conversation: id, text: 'edited' });
      await chat(session, [...history.slice(0, 2), u('how do you do?', { id: 'c3' })], { conversation: id, text: 'edited again' });
      all = await tree(id, session);
      const underHello = all.filter((m) => m.parent_message_id === all[1].id).map((m) => [m.content, m.client_id]);
      expect(underHello).toEqual([
        ['how are you?', 'c3'],
        ['how are you?', 'c4'],
        ['how do you do?', 'c3'],
      ]);
    });

    it('refuses an id longer than 128 characters with 400, before anything is stored or sent', async () => {
      const session = newSession();
      const res = await call(app, 'POST', '/v1/chat/completions', { session, body: { messages: [u('x', { id: 'i'.repeat(129) })] } });
      expect(res.status).toBe(400);
      expect(res.json.error.param).toBe('messages.0.id');
      expect(mock.requests).toHaveLength(0);
    });
  });

  describe('switching and forking', () => {
    async function branched(session: string, headers: Record<string, string> = {}) {
      const { id } = await chat(session, [u('q')], { text: 'x', headers });
      await chat(session, [u('q'), a('x'), u('left')], { conversation: id, text: 'L', headers });
      await chat(session, [u('q'), a('x'), u('left')], { conversation: id, text: 'L2', headers });
      await chat(session, [u('q'), a('x'), u('right')], { conversation: id, text: 'R', headers });
      const all = await tree(id, session, headers);
      const by = (content: string) => all.find((m) => m.content === content)!.id as string;
      return { id, by };
    }

    it('POST …/active shows the branch through a message, down to its newest leaf', async () => {
      const session = newSession();
      const { id, by } = await branched(session);
      const left = await call(app, 'POST', `/v1/conversations/${id}/active`, { session, body: { message_id: by('left') } });
      expect(left.status).toBe(200);
      expect(left.json.active_message_id).toBe(by('L2'));
      expect(left.json.messages.map((m: any) => m.content)).toEqual(['q', 'x', 'left', 'L2']);
      const older = await call(app, 'POST', `/v1/conversations/${id}/active`, { session, body: { message_id: by('L') } });
      expect(older.json.messages.map((m: any) => [m.content, m.sibling_index, m.sibling_count])).toEqual([
        ['q', 0, 1],
        ['x', 0, 1],
        ['left', 0, 2],
        ['L', 0, 2],
      ]);
      expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['q', 'x', 'left', 'L']);
      // The next turn without a conversation change continues where the page is.
      await chat(session, [u('q'), a('x'), u('left'), a('L'), u('more')], { conversation: id, text: 'M' });
      expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['q', 'x', 'left', 'L', 'more', 'M']);
    });

    it('answers 404 for a message of another conversation, 400 for a bad body, and changes nothing', async () => {
      const session = newSession();
      const { id } = await branched(session);
      const other = await chat(session, [u('elsewhere')], { text: 'y' });
      const otherMessage = (await tree(other.id, session))[0].id;
      const before = await active(id, session);
      const res = await call(app, 'POST', `/v1/conversations/${id}/active`, { session, body: { message_id: otherMessage } });
      expect(res.status).toBe(404);
      expect(res.json.error).toMatchObject({ type: 'not_found_error', param: 'message_id' });
      expect((await call(app, 'POST', `/v1/conversations/${id}/active`, { session, body: {} })).status).toBe(400);
      expect((await call(app, 'POST', `/v1/conversations/${id}/fork`, { session, body: { message_id: otherMessage } })).status).toBe(404);
      expect(await active(id, session)).toEqual(before);
      // Another session does not learn the conversation exists.
      expect((await call(app, 'POST', `/v1/conversations/${id}/active`, { session: newSession(), body: { message_id: before.active_message_id } })).status).toBe(404);
    });

    it('POST …/fork copies the path to a message into a new conversation, which goes on by itself', async () => {
      const session = newSession();
      const { id, by } = await branched(session);
      const res = await call(app, 'POST', `/v1/conversations/${id}/fork`, { session, body: { message_id: by('L') } });
      expect(res.status).toBe(201);
      expect(res.json.id).not.toBe(id);
      expect(res.json).toMatchObject({ metadata: { forked_from: { conversation_id: id, message_id: by('L') } }, message_count: 4, access: 'owner' });
      const copy = res.json.messages;
      expect(copy.map((m: any) => [m.seq, m.role, m.content, m.sibling_count])).toEqual([
        [1, 'user', 'q', 1],
        [2, 'assistant', 'x', 1],
        [3, 'user', 'left', 1],
        [4, 'assistant', 'L', 1],
      ]);
      expect(copy.map((m: any) => m.parent_message_id)).toEqual([null, copy[0].id, copy[1].id, copy[2].id]);
      expect(copy.some((m: any) => [by('q'), by('L')].includes(m.id))).toBe(false);
      // The fork records a turn sent with the copied history as a continuation.
      await chat(session, [u('q'), a('x'), u('left'), a('L'), u('forked on')], { conversation: res.json.id, text: 'F' });
      expect((await tree(res.json.id, session)).map((m) => m.content)).toEqual(['q', 'x', 'left', 'L', 'forked on', 'F']);
      // The source is untouched.
      expect((await tree(id, session)).map((m) => m.content)).toEqual(['q', 'x', 'left', 'L', 'L2', 'right', 'R']);
    });

    it('lets an editor switch branches and a viewer fork into a conversation of their own, not switch', async () => {
      const [owner, editor, viewer] = await Promise.all(['owner', 'editor', 'viewer'].map((n) => signedInUser(db.store, n)));
      const { id, by } = await branched(newSession(), owner!.auth);
      await db.store.setShare(id, editor!.user.id, 'editor');
      await db.store.setShare(id, viewer!.user.id, 'viewer');
      const switched = await call(app, 'POST', `/v1/conversations/${id}/active`, { headers: editor!.auth, body: { message_id: by('L') } });
      expect(switched.status).toBe(200);
      expect(switched.json.access).toBe('editor');
      const refused = await call(app, 'POST', `/v1/conversations/${id}/active`, { headers: viewer!.auth, body: { message_id: by('R') } });
      expect(refused.status).toBe(403);
      const forked = await call(app, 'POST', `/v1/conversations/${id}/fork`, { headers: viewer!.auth, body: { message_id: by('R') } });
      expect(forked.status).toBe(201);
      const mine = await call(app, 'GET', '/v1/conversations?scope=owned', { headers: viewer!.auth });
      expect(mine.json.items.map((c: any) => c.id)).toEqual([forked.json.id]);
      expect((await call(app, 'GET', `/v1/conversations/${id}`, { headers: owner!.auth })).json.messages.map((m: any) => m.content)).toEqual(['q', 'x', 'left', 'L']);
    });
  });

  describe('reading', () => {
    it('pages the active path and the tree by seq', async () => {
      const session = newSession();
      const { id } = await chat(session, [u('1')], { text: 'a' });
      await chat(session, [u('1x')], { conversation: id, text: 'b' });
      await chat(session, [u('1x'), a('b'), u('2')], { conversation: id, text: 'c' });
      // Tree: 1, a, 1x, b, 2, c (seqs 1..6); active path: 1x(3), b(4), 2(5), c(6).
      const page = (query: string) => call(app, 'GET', `/v1/conversations/${id}?${query}`, { session });
      const first = await page('limit=3');
      expect(first.json.view).toBe('active');
      expect(first.json.messages.map((m: any) => m.seq)).toEqual([3, 4, 5]);
      expect(first.json.next_after_seq).toBe(5);
      const second = await page(`limit=3&after_seq=${first.json.next_after_seq}`);
      expect(second.json.messages.map((m: any) => m.seq)).toEqual([6]);
      expect(second.json.next_after_seq).toBeNull();
      const whole = await page('view=tree&limit=4');
      expect(whole.json.messages.map((m: any) => m.seq)).toEqual([1, 2, 3, 4]);
      expect(whole.json.next_after_seq).toBe(4);
      expect((await page('view=tree&after_seq=4')).json.messages.map((m: any) => m.seq)).toEqual([5, 6]);
      const bad = await page('view=sideways');
      expect(bad.status).toBe(400);
      expect(bad.json.error.param).toBe('view');
    });

    it('shows the active path through a public link', async () => {
      const session = newSession();
      const owner = await signedInUser(db.store, 'publisher');
      const { id } = await chat(session, [u('one')], { text: 'A', headers: owner.auth });
      await chat(session, [u('two')], { conversation: id, text: 'B', headers: owner.auth });
      const link = await call(app, 'POST', `/v1/conversations/${id}/share_link`, { headers: owner.auth });
      const shared = await call(app, 'GET', `/v1/shared/${link.json.token}`);
      expect(shared.json.messages.map((m: any) => m.content)).toEqual(['two', 'B']);
    });
  });

  describe('POST …/messages', () => {
    it('follows the active leaf, or the parent it names (a new branch, made active), or none (a new root)', async () => {
      const session = newSession();
      const { id } = (await call(app, 'POST', '/v1/conversations', { session, body: {} })).json;
      const post = (body: Record<string, unknown>) => call(app, 'POST', `/v1/conversations/${id}/messages`, { session, body: { role: 'user', ...body } });
      const one = (await post({ content: 'one' })).json;
      const two = (await post({ content: 'two' })).json;
      expect(one.parent_message_id).toBeNull();
      expect(two.parent_message_id).toBe(one.id);
      const other = await post({ content: 'two, otherwise', parent_message_id: one.id });
      expect(other.status).toBe(201);
      expect(other.json.parent_message_id).toBe(one.id);
      expect((await active(id, session)).messages.map((m: any) => m.content)).toEqual(['one', 'two, otherwise']);
      const root = await post({ content: 'a new start', parent_message_id: null });
      expect(root.json.parent_message_id).toBeNull();
      expect((await active(id, session)).messages.map((m: any) => [m.content, m.sibling_index, m.sibling_count])).toEqual([['a new start', 1, 2]]);
      const missing = await post({ content: 'x', parent_message_id: crypto.randomUUID() });
      expect(missing.status).toBe(404);
      expect(missing.json.error.param).toBe('parent_message_id');
      expect((await active(id, session)).message_count).toBe(4);
    });
  });

  it('matches over the messages it keeps when system prompts are redacted', async () => {
    const redacting = testApp(db.store, { OPENAI_BASE_URL: mock.url, REDACT_SYSTEM_PROMPTS: 'true' });
    const session = newSession();
    const send = (messages: Msg[], conversation?: string) =>
      call(redacting, 'POST', '/v1/chat/completions', { session, body: { messages, mock: { text: `answer ${messages.length}` } }, headers: conversation ? { 'x-conversation-id': conversation } : {} });
    const system = { role: 'system', content: 'Be brief.' };
    const first = await send([system, u('q1')]);
    const id = first.headers.get('x-conversation-id')!;
    await send([system, u('q1'), a('answer 2'), u('q2')], id);
    await send([system, u('q1'), a('answer 2'), u('q2')], id);
    const all = await tree(id, session);
    expect(all.map((m) => m.content)).toEqual(['q1', 'answer 2', 'q2', 'answer 4', 'answer 4']);
    expect(mock.requests.at(-1)!.body.messages[0]).toEqual(system);
  });
});
