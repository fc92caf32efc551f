import { z } from 'zod';
import { storedBytesOf } from '../../db/shared.js';
import type { ImportedConversation, ImportedMessage, Json, JsonObject, MessageRole } from '../../db/store.js';
import { jsonDepth } from '../middleware/json-depth.js';
import { ImportFormatError, closedMessage, importIdSchema, type ImportItem, type ParseLimits } from './import.js';
import { readAll } from './lines.js';

/*
 * ChatGPT's data export (Settings → Data controls → Export) is a zip whose conversations.json is
 * one JSON array of conversations. Each holds its messages as a tree (`mapping`: node id →
 * {parent, children, message}), since editing a message or regenerating an answer starts a new
 * branch; `current_node` is the leaf of the branch on screen. That branch, read from the leaf up
 * to the root and reversed, becomes the conversation's messages.
 */

const seconds = z.number().finite().nullable().optional();
const node = z.object({
  id: z.string().optional(),
  parent: z.string().nullable().optional(),
  message: z.unknown().optional(),
});
const conversationSchema = z.object({
  id: z.string().optional(),
  conversation_id: z.string().optional(),
  title: z.string().nullable().optional(),
  create_time: seconds,
  update_time: seconds,
  mapping: z.record(z.string(), node),
  current_node: z.string().nullable().optional(),
  default_model_slug: z.string().nullable().optional(),
  is_archived: z.boolean().nullable().optional(),
});
const messageSchema = z.object({
  id: z.string().optional(),
  author: z.object({ role: z.string(), name: z.string().nullable().optional() }),
  create_time: seconds,
  update_time: seconds,
  content: z.record(z.string(), z.unknown()).nullable().optional(),
  status: z.string().nullable().optional(),
  metadata: z.record(z.string(), z.unknown()).nullable().optional(),
});
type ChatgptMessage = z.infer<typeof messageSchema>;

const ROLES: Record<string, MessageRole> = { system: 'system', user: 'user', assistant: 'assistant', tool: 'tool' };
/** finish_details.type as OpenAI's API names it. */
const FINISH: Record<string, string> = { stop: 'stop', max_tokens: 'length', interrupted: 'interrupted' };

const toDate = (s: number | null | undefined) => (s == null ? null : new Date(Math.round(s * 1000)));

/**
 * A conversations.json body, parsed. It is one JSON document, which can only be parsed whole,
 * so it is read whole, refused past `maxBytes` (BodyTooLargeError) before more is held.
 */
export async function readChatgptExport(body: ReadableStream<Uint8Array>, maxBytes: number): Promise<unknown> {
  const bytes = await readAll(body, maxBytes);
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    throw new ImportFormatError("The body is not JSON: a ChatGPT export's conversations.json (inside the zip ChatGPT mails) is one JSON array.");
  }
}

/**
 * The conversations of a parsed conversations.json. A conversation that cannot be read fails
 * alone, its `line` being its place in the array (from 1); a document that is not an array of
 * conversations is refused whole (ImportFormatError).
 */
export function* chatgptItems(document: unknown, limits: ParseLimits): Generator<ImportItem> {
  if (!Array.isArray(document)) {
    throw new ImportFormatError("A ChatGPT export's conversations.json is a JSON array of conversations; this body is not an array.");
  }
  for (let i = 0; i < document.length; i++) {
    const raw = document[i];
    const line = i + 1;
    const rawId = raw && typeof raw === 'object' ? ((raw as { id?: unknown }).id ?? (raw as { conversation_id?: unknown }).conversation_id) : undefined;
    const sourceId = typeof rawId === 'string' ? rawId.slice(0, 200) : null;
    const failed = (why: string): ImportItem => ({ line, sourceId, error: `conversation ${line}: ${why}` });
    if (jsonDepth(raw, limits.jsonDepth) > limits.jsonDepth) {
      yield failed(`nests JSON more than ${limits.jsonDepth} levels deep (JSON_MAX_DEPTH)`);
      continue;
    }
    const parsed = conversationSchema.safeParse(raw);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      yield failed(`field '${issue.path.map(String).join('.')}' ${issue.message}`);
      continue;
    }
    const c = parsed.data;
    const id = importIdSchema.safeParse(c.id ?? c.conversation_id);
    if (!id.success) {
      yield failed(`its id ${id.error.issues[0]!.message}`);
      continue;
    }
    const messages = branchMessages(c, limits);
    if (typeof messages === 'string') {
      yield failed(messages);
      continue;
    }
    const created = toDate(c.create_time) ?? messages[0]?.createdAt ?? new Date();
    const model = c.default_model_slug ?? lastModel(c) ?? null;
    const metadata: JsonObject = { imported_from: 'chatgpt' };
    if (c.is_archived) metadata.archived = true;
    const conversation: ImportedConversation = {
      id: id.data,
      sourceId: null,
      title: c.title ? c.title.slice(0, 500) : null,
      model: model ? model.slice(0, 200) : null,
      metadata,
      createdAt: created,
      updatedAt: toDate(c.update_time) ?? messages.at(-1)?.updatedAt ?? created,
      deletedAt: null,
      messages,
    };
    yield { line, sourceId: id.data, conversation };
  }
}

/** The current branch's messages, root first; or why they cannot be read. */
function branchMessages(c: z.infer<typeof conversationSchema>, limits: ParseLimits): ImportedMessage[] | string {
  const branch: ChatgptMessage[] = [];
  const seen = new Set<string>();
  let at = c.current_node ?? newestLeaf(c.mapping);
  while (at != null) {
    if (seen.has(at)) return `its message tree loops at node '${at.slice(0, 100)}'`;
    seen.add(at);
    const n = c.mapping[at];
    if (!n) return `current_node or a parent names node '${at.slice(0, 100)}', which is not in its mapping`;
    if (n.message != null) {
      const m = messageSchema.safeParse(n.message);
      if (!m.success) {
        const issue = m.error.issues[0]!;
        return `node '${at.slice(0, 100)}': field 'message.${issue.path.map(String).join('.')}' ${issue.message}`;
      }
      branch.push(m.data);
    }
    at = n.parent ?? null;
  }
  branch.reverse();

  const out: ImportedMessage[] = [];
  const ids = new Set<string>();
  let previous = toDate(c.create_time) ?? new Date(0);
  for (const m of branch) {
    const role = ROLES[m.author.role];
    // Hidden messages (the system prompt, custom instructions, memory) were never on screen.
    if (!role || m.metadata?.is_visually_hidden_from_conversation === true) continue;
    if (role === 'system' && limits.dropSystem) continue;
    const { text, parts } = contentOf(m.content ?? null);
    if (!text.trim() && !parts) continue;
    const createdAt = toDate(m.create_time) ?? previous;
    previous = createdAt;
    const validId = typeof m.id === 'string' && importIdSchema.safeParse(m.id).success && !ids.has(m.id);
    const id = validId ? m.id! : crypto.randomUUID();
    ids.add(id);
    const finish = (m.metadata?.finish_details as { type?: unknown } | undefined)?.type;
    out.push(
      closedMessage({
        id,
        role,
        status: m.status === 'in_progress' ? 'streaming' : 'final',
        content: text,
        contentJson: parts,
        parentMessageId: out.at(-1)?.id ?? null,
        finishReason: role === 'assistant' && typeof finish === 'string' ? (FINISH[finish] ?? finish.slice(0, 200)) : null,
        createdAt,
        updatedAt: toDate(m.update_time) ?? createdAt,
      }),
    );
    if (out.length > limits.maxMessages) return `its current branch has more than ${limits.maxMessages} messages (MAX_MESSAGES_PER_CONVERSATION)`;
  }
  if (storedBytesOf(out) > limits.maxBytes) return `its messages hold more than ${limits.maxBytes} bytes (MAX_BYTES_PER_SESSION)`;
  return out;
}

/** Without current_node: the leaf last written to. */
function newestLeaf(mapping: Record<string, z.infer<typeof node>>): string | null {
  const parents = new Set(Object.values(mapping).map((n) => n.parent));
  let best: string | null = null;
  let bestTime = -Infinity;
  for (const [id, n] of Object.entries(mapping)) {
    if (parents.has(id)) continue;
    const t = messageSchema.safeParse(n.message).data?.create_time ?? 0;
    if (t >= bestTime) [best, bestTime] = [id, t];
  }
  return best;
}

function lastModel(c: z.infer<typeof conversationSchema>): string | null {
  let model: string | null = null;
  for (const n of Object.values(c.mapping)) {
    const slug = (n.message as { metadata?: { model_slug?: unknown } } | null | undefined)?.metadata?.model_slug;
    if (typeof slug === 'string') model = slug;
  }
  return model;
}

/**
 * A message's text, and its parts when some are not text (an image, a file), kept whole in
 * content_json the way the proxy keeps OpenAI's content parts: text parts as {type: 'text'},
 * the others as ChatGPT wrote them with their content_type as `type`.
 */
function contentOf(content: Record<string, unknown> | null): { text: string; parts: Json | null } {
  if (!content) return { text: '', parts: null };
  const rawParts = Array.isArray(content.parts) ? content.parts : null;
  if (rawParts) {
    const text = rawParts.filter((p): p is string => typeof p === 'string').join('');
    if (rawParts.every((p) => typeof p === 'string')) return { text, parts: null };
    const parts = rawParts.map((p) =>
      typeof p === 'string' ? { type: 'text', text: p } : p && typeof p === 'object' ? { type: String((p as { content_type?: unknown }).content_type ?? 'unknown'), ...(p as JsonObject) } : p,
    ) as Json;
    return { text, parts };
  }
  // code, execution_output, tether_quote…: `text`; browsing results: `result`.
  for (const key of ['text', 'result', 'content']) if (typeof content[key] === 'string') return { text: content[key] as string, parts: null };
  return { text: '', parts: null };
}
