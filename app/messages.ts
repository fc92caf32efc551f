import type { Json, MessageRole, NewMessage } from '../db/store.js';

type Content = string | null | undefined | readonly { type: string; text?: unknown }[];

/**
 * A message's content as stored: `content` always holds the readable text; multimodal part
 * arrays are kept whole in `content_json` as well.
 */
export function toNewMessage(role: MessageRole, content: Content, extra: Partial<NewMessage> = {}): NewMessage {
  if (Array.isArray(content)) {
    const text = content
      .filter((p) => p.type === 'text' && typeof p.text === 'string')
      .map((p) => p.text as string)
      .join('');
    return { role, status: 'final', content: text, contentJson: content as unknown as Json, ...extra };
  }
  return { role, status: 'final', content: typeof content === 'string' ? content : '', ...extra };
}
