import type { Conversation, ListPosition, Message } from '../../db/store.js';
import { conversationLine, errorLine, headerLine, messageLine } from './format.js';

/** Rows per read: conversations per list page, messages per conversation page. */
export const EXPORT_PAGE = { conversations: 100, messages: 500 };
/** Text gathered before it is handed to the stream: few, large chunks rather than one per line. */
const CHUNK_CHARS = 64 * 1024;

/** Where an export reads from, a page at a time (the store, seen as one owner or one conversation). */
export interface ExportSource {
  /** The conversations after `after`, newest first, at most EXPORT_PAGE.conversations. */
  conversations(after: ListPosition | null): Promise<{ items: Conversation[]; hasMore: boolean }>;
  /** A conversation's messages after `afterSeq`, seq ascending, at most EXPORT_PAGE.messages. */
  messages(conversationId: string, afterSeq: number): Promise<Message[]>;
}

/** Every conversation of the source with its messages, in order: one page of rows in memory at a time. */
export async function* conversationsWithMessages(source: ExportSource): AsyncGenerator<{ conversation: Conversation } | { messages: Message[] }> {
  let after: ListPosition | null = null;
  for (;;) {
    const page = await source.conversations(after);
    for (const conversation of page.items) {
      yield { conversation };
      for (let afterSeq = 0; ; ) {
        const messages = await source.messages(conversation.id, afterSeq);
        if (messages.length) yield { messages };
        if (messages.length < EXPORT_PAGE.messages) break;
        afterSeq = messages.at(-1)!.seq;
      }
    }
    const last = page.items.at(-1);
    if (!page.hasMore || !last) return;
    after = { createdAt: last.createdAt, id: last.id };
  }
}

/** The JSON-lines export (format.ts) of everything the source gives. */
export async function* ndjsonLines(source: ExportSource, exportedAt: Date): AsyncGenerator<string> {
  yield headerLine(exportedAt);
  for await (const part of conversationsWithMessages(source)) {
    if ('conversation' in part) yield conversationLine(part.conversation);
    else for (const m of part.messages) yield messageLine(m);
  }
}

const ROLE: Record<Message['role'], string> = { system: 'System', user: 'User', assistant: 'Assistant', tool: 'Tool' };

/**
 * A conversation as a readable Markdown transcript: its title and times, then each message under
 * its role and time, content as it is stored. Tool calls follow as JSON; parts that are not
 * text are named; an answer that did not finish says so.
 */
export async function* markdownLines(source: ExportSource): AsyncGenerator<string> {
  for await (const part of conversationsWithMessages(source)) {
    if ('conversation' in part) {
      const c = part.conversation;
      yield `# ${c.title?.replace(/\s+/g, ' ').trim() || 'Untitled conversation'}\n\n`;
      yield `- Conversation: \`${c.id}\`\n`;
      if (c.model) yield `- Model: ${c.model}\n`;
      yield `- Created: ${c.createdAt.toISOString()}\n- Updated: ${c.updatedAt.toISOString()}\n`;
      if (c.deletedAt) yield `- Deleted: ${c.deletedAt.toISOString()}\n`;
      continue;
    }
    for (const m of part.messages) {
      yield `\n---\n\n## ${ROLE[m.role]} · ${m.createdAt.toISOString()}\n\n`;
      if (m.content) yield `${m.content}\n`;
      const others = Array.isArray(m.contentJson)
        ? m.contentJson.flatMap((p) => (p && typeof p === 'object' && !Array.isArray(p) && p.type !== 'text' ? [String(p.type ?? 'part')] : []))
        : [];
      if (others.length) yield `\n*Attached: ${others.join(', ')}*\n`;
      if (m.toolCalls != null) yield `\nTool calls:\n\n\`\`\`json\n${JSON.stringify(m.toolCalls, null, 2)}\n\`\`\`\n`;
      if (m.functionCall != null) yield `\nFunction call:\n\n\`\`\`json\n${JSON.stringify(m.functionCall, null, 2)}\n\`\`\`\n`;
      if (m.status !== 'final') yield `\n*Not finished (${m.status}${m.finishReason ? `: ${m.finishReason}` : ''}).*\n`;
    }
  }
}

/**
 * A byte stream of `lines` that pulls from them only as the reader asks, so memory holds one
 * page of rows and one chunk of text, however much is exported. The status is sent before the
 * first byte: a failure after it ends the stream with `onError`'s last words (an error line),
 * and a reader that goes away stops the reads.
 */
export function pullStream(lines: AsyncGenerator<string>, onError: (err: unknown) => string): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let done = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        if (done) return;
        let text = '';
        try {
          while (text.length < CHUNK_CHARS) {
            const next = await lines.next();
            if (next.done) {
              done = true;
              break;
            }
            text += next.value;
          }
        } catch (err) {
          done = true;
          text += onError(err);
        }
        if (text) controller.enqueue(encoder.encode(text));
        if (done) controller.close();
      },
      async cancel() {
        done = true;
        await lines.return(undefined);
      },
    },
    // One chunk waits for the reader at most.
    { highWaterMark: 1 },
  );
}

/** What an NDJSON export ends with when the database fails midway: a line no import accepts as complete. */
export const exportErrorLine = () => errorLine('The export stopped early: the database failed while it was being read. This file is incomplete; export again.');
