import type { MessagesToAppend, NewMessage, Store } from '../../db/store.js';

/**
 * REDACT_SYSTEM_PROMPTS: every message write goes through the store's three message-writing
 * methods, so filtering there keeps system prompts out of the database on every path (proxy,
 * messages endpoint, imports).
 */
export function redactSystemPrompts(store: Store): Store {
  const withoutSystem = (messages: MessagesToAppend): MessagesToAppend =>
    typeof messages === 'function'
      ? (conversation) => messages(conversation).filter((m) => m.role !== 'system')
      : messages.filter((m) => m.role !== 'system');
  return Object.assign(Object.create(store) as Store, {
    appendMessages: ((owner, id, messages, options) => store.appendMessages(owner, id, withoutSystem(messages), options)) satisfies Store['appendMessages'],
    createConversation: ((owner, input, options) =>
      store.createConversation(owner, input, {
        ...options,
        messages: options.messages && (withoutSystem(options.messages) as NewMessage[]),
      })) satisfies Store['createConversation'],
    importConversation: ((owner, conversation, options) =>
      store.importConversation(owner, { ...conversation, messages: conversation.messages.filter((m) => m.role !== 'system') }, options)) satisfies Store['importConversation'],
  });
}
