import type { MessagesToAppend, NewMessage, Store } from '../../db/store.js';

/**
 * REDACT_SYSTEM_PROMPTS: every message write goes through the store's message-writing methods,
 * so filtering there keeps system prompts out of the database on every path (proxy, messages
 * endpoint, imports). A chat turn is matched against the tree over the messages that are kept,
 * so a request's system prompt never makes its history look new.
 */
export function redactSystemPrompts(store: Store): Store {
  const withoutSystem = (messages: MessagesToAppend): MessagesToAppend =>
    typeof messages === 'function' ? (conversation) => dropSystem(messages(conversation)) : dropSystem(messages);
  return Object.assign(Object.create(store) as Store, {
    appendMessages: ((owner, id, messages, options) => store.appendMessages(owner, id, withoutSystem(messages), options)) satisfies Store['appendMessages'],
    appendTurn: ((owner, id, turn, options) => store.appendTurn(owner, id, { ...turn, messages: dropSystem(turn.messages) }, options)) satisfies Store['appendTurn'],
    createConversation: ((owner, input, options) =>
      store.createConversation(owner, input, {
        ...options,
        messages: options.messages && dropSystem(options.messages),
      })) satisfies Store['createConversation'],
    importConversation: ((owner, conversation, options) =>
      store.importConversation(owner, { ...conversation, messages: conversation.messages.filter((m) => m.role !== 'system') }, options)) satisfies Store['importConversation'],
  });
}

/**
 * The messages without the system ones. A message that named a dropped one as its parent (an
 * imported tree) follows that one's parent instead, so the tree stays whole.
 */
function dropSystem(messages: NewMessage[]): NewMessage[] {
  if (!messages.some((m) => m.role === 'system')) return messages;
  const parentOfDropped = new Map<string, string | null | undefined>();
  const kept: NewMessage[] = [];
  for (const m of messages) {
    if (m.role === 'system') {
      if (m.id) parentOfDropped.set(m.id, m.parentMessageId != null && parentOfDropped.has(m.parentMessageId) ? parentOfDropped.get(m.parentMessageId) : m.parentMessageId);
      continue;
    }
    // (undefined: the dropped one followed the message before it, and so does this one now.)
    kept.push(m.parentMessageId != null && parentOfDropped.has(m.parentMessageId) ? { ...m, parentMessageId: parentOfDropped.get(m.parentMessageId) } : m);
  }
  return kept;
}
