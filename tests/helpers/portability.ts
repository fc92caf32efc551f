import { hashSessionId } from '../../app/session-ids.js';
import type { Principal, Store } from '../../db/store.js';
import { call, type Call, type TestApp } from './app.js';

/** The principal the server makes of an anonymous session id. */
export const sessionPrincipal = (session: string): Principal => ({ sessionId: hashSessionId(session), userId: null });

export const header = (extra: Record<string, unknown> = {}) => ({ type: 'export', format: 'chat-proxy', version: 1, exported_at: '2025-01-01T00:00:00.000Z', ...extra });

/** An export file of these lines (objects become JSON, strings are taken as written). */
export const exportFile = (...lines: (object | string)[]) => `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`;

/** A conversation line and its messages as an export writes them, with every field given. */
export function conversationLines(id: string, messages: number, extra: Record<string, unknown> = {}): object[] {
  const at = (i: number) => new Date(Date.UTC(2024, 0, 1, 12, 0, i)).toISOString();
  return [
    { type: 'conversation', id, title: `chat ${id.slice(0, 8)}`, model: 'gpt-4o', metadata: { pinned: true }, created_at: at(0), updated_at: at(messages), deleted_at: null, import_source_id: null, ...extra },
    ...Array.from({ length: messages }, (_, i) => ({
      type: 'message',
      id: `${id}-m${i + 1}`,
      conversation_id: id,
      seq: i + 1,
      role: i % 2 ? 'assistant' : 'user',
      status: 'final',
      content: `message ${i + 1} of ${id.slice(0, 8)}`,
      content_json: null,
      parent_message_id: i ? `${id}-m${i}` : null,
      tokens_in: i % 2 ? 10 : null,
      tokens_out: i % 2 ? 20 : null,
      tokens_source: i % 2 ? 'provider' : null,
      finish_reason: i % 2 ? 'stop' : null,
      tool_calls: null,
      function_call: null,
      created_at: at(i + 1),
      updated_at: at(i + 1),
    })),
  ];
}

/** POST /v1/conversations/import with `body` as the file. */
export function importFile(app: TestApp, body: string, options: Call & { query?: string; contentType?: string } = {}) {
  const { query = '', contentType = 'application/x-ndjson', headers = {}, ...rest } = options;
  return call(app, 'POST', `/v1/conversations/import${query}`, { ...rest, body, headers: { 'content-type': contentType, ...headers } });
}

/** The export's text without its exported_at, the one thing two exports of the same rows may differ in. */
export const withoutExportedAt = (text: string) => text.replace(/"exported_at":"[^"]+"/, '"exported_at":"…"');

/**
 * Conversations with every kind of value a conversation can hold: Unicode, emoji, quotes and
 * SQL-looking text, nested metadata, content parts, tool calls, a function call, token counts,
 * an error, a deleted conversation, equal timestamps. Written through the store as the proxy
 * would, so nothing here depends on the import.
 */
export async function seedVaried(store: Store, owner: Principal): Promise<string[]> {
  const roomy = { maxPerSession: 1_000 };
  const first = await store.createConversation(owner, { title: 'Ünïcödé ✓ "quotes" \'; drop table x; --', model: 'gpt-4.1', metadata: { zeta: 1, alpha: { nested: [1, 'two', { b: true, a: null }] }, pinned: true } }, {
    ...roomy,
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Look 👀 at this', contentJson: [{ type: 'text', text: 'Look 👀 at this' }, { type: 'image_url', image_url: { url: 'https://example.test/cat.png', detail: 'low' } }] },
      {
        role: 'assistant',
        content: '',
        toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"cat"}' } }],
        finishReason: 'tool_calls',
        tokensIn: 42,
        tokensOut: 7,
        tokensSource: 'provider',
      },
      { role: 'tool', content: '{"result":"a cat"}', contentJson: { tool_call_id: 'call_1' } },
      { role: 'assistant', content: 'It is a cat.\n\nWith a second paragraph, and \u0000 a NUL.', finishReason: 'stop', tokensIn: 60, tokensOut: 9, tokensSource: 'estimated' },
    ],
  });
  const second = await store.createConversation(owner, { title: null, model: null }, roomy);
  await store.appendMessages(owner, second.id, [{ role: 'user', content: 'x'.repeat(3000) }, { role: 'assistant', status: 'error', content: 'half an ans', finishReason: 'client_abort', functionCall: { name: 'legacy', arguments: '{}' } }], {
    maxMessages: 1_000,
  });
  const deleted = await store.createConversation(owner, { title: 'deleted one' }, { ...roomy, messages: [{ role: 'user', content: 'gone' }] });
  await store.deleteConversation(owner, deleted.id);
  const empty = await store.createConversation(owner, { title: 'empty' }, roomy);
  return [first.id, second.id, deleted.id, empty.id];
}

/**
 * A ChatGPT conversations.json as its data export writes it: a conversation whose answer was
 * regenerated (two branches, the second on screen) with a hidden system message, custom
 * instructions, a browsing tool call and an image the user sent; and a plain one.
 */
export function chatgptExport() {
  const t0 = 1_700_000_000;
  const node = (id: string, parent: string | null, children: string[], message: object | null) => ({ id, parent, children, message });
  const msg = (id: string, role: string, time: number | null, content: object, extra: Record<string, unknown> = {}) => ({
    id,
    author: { role, name: role === 'tool' ? 'browser' : null, metadata: {} },
    create_time: time,
    update_time: null,
    content,
    status: 'finished_successfully',
    end_turn: role === 'assistant' ? true : null,
    weight: 1,
    metadata: {},
    recipient: 'all',
    ...extra,
  });
  const text = (...parts: string[]) => ({ content_type: 'text', parts });
  const branched = {
    title: 'Cats and branches',
    create_time: t0,
    update_time: t0 + 600,
    mapping: {
      'client-created-root': node('client-created-root', null, ['sys'], null),
      sys: node('sys', 'client-created-root', ['ctx'], msg('sys', 'system', null, text(''), { metadata: { is_visually_hidden_from_conversation: true } })),
      ctx: node('ctx', 'sys', ['u1'], msg('ctx', 'user', null, { content_type: 'user_editable_context', user_profile: 'I like cats', user_instructions: '' }, { metadata: { is_visually_hidden_from_conversation: true } })),
      u1: node(
        'u1',
        'ctx',
        ['a1-old', 'a1'],
        msg('u1', 'user', t0 + 10, {
          content_type: 'multimodal_text',
          parts: [{ content_type: 'image_asset_pointer', asset_pointer: 'file-service://file-abc', size_bytes: 12345, width: 512, height: 512 }, 'What is in this picture?'],
        }),
      ),
      'a1-old': node('a1-old', 'u1', [], msg('a1-old', 'assistant', t0 + 20, text('An old answer, regenerated away.'), { metadata: { model_slug: 'gpt-4' } })),
      a1: node('a1', 'u1', ['tool1'], msg('a1', 'assistant', t0 + 30, { content_type: 'code', language: 'unknown', text: 'search("cat breeds")' }, { recipient: 'browser', metadata: { model_slug: 'gpt-4o' } })),
      tool1: node('tool1', 'a1', ['a2'], msg('tool1', 'tool', t0 + 40, { content_type: 'tether_browsing_display', result: 'Maine Coon, Siamese', summary: null })),
      a2: node('a2', 'tool1', ['u2'], msg('a2', 'assistant', t0 + 50, text('A cat — probably a Maine Coon. 🐱'), { metadata: { model_slug: 'gpt-4o', finish_details: { type: 'stop', stop_tokens: [1] } } })),
      u2: node('u2', 'a2', ['a3'], msg('u2', 'user', t0 + 60, text('Thanks!'))),
      a3: node('a3', 'u2', [], msg('a3', 'assistant', t0 + 70, text('You are welcome.'), { metadata: { model_slug: 'gpt-4o', finish_details: { type: 'max_tokens' } } })),
    },
    moderation_results: [],
    current_node: 'a3',
    plugin_ids: null,
    conversation_id: 'c0ffee00-0000-4000-8000-000000000001',
    conversation_template_id: null,
    gizmo_id: null,
    is_archived: false,
    safe_urls: [],
    default_model_slug: 'gpt-4o',
    id: 'c0ffee00-0000-4000-8000-000000000001',
  };
  const plain = {
    title: 'Plain',
    create_time: t0 + 1000.5,
    update_time: t0 + 1100.25,
    mapping: {
      root: node('root', null, ['p1'], null),
      p1: node('p1', 'root', ['p2'], msg('p1-id', 'user', t0 + 1001.123, text('Hello'))),
      p2: node('p2', 'p1', [], msg('p2-id', 'assistant', t0 + 1002.456, text('Hi there'))),
    },
    current_node: 'p2',
    conversation_id: 'c0ffee00-0000-4000-8000-000000000002',
    default_model_slug: null,
    id: 'c0ffee00-0000-4000-8000-000000000002',
  };
  return [branched, plain];
}
