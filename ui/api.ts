/*
 * Every call the web page makes to chat-proxy, and nothing of the page: copy this file into your
 * own frontend. It needs `fetch` only (no SDK, no EventSource: EventSource cannot send a bearer).
 *
 * Who is calling. A page served by the server itself (same origin) is identified by the
 * `cf_session_id` cookie the server sets on the first answer (HttpOnly: the page never sees it),
 * so the first call must finish before others start, or each would get a session of its own.
 * A signed-in caller sends `Authorization: Bearer <API key cpk_… or identity provider token>`.
 *
 *   GET    /v1/privacy                                     what is stored, for how long, consent
 *   POST   /v1/privacy/consent {consent}                   allow or refuse storage
 *   GET    /v1/me                                          who the server takes the caller for
 *   GET    /v1/models                                      the model picker
 *   GET    /v1/conversations?limit&cursor                  the history, newest first, paged
 *   GET    /v1/conversations/search?q&cursor               search messages and titles
 *   GET    /v1/conversations/:id?after_seq&limit           a conversation and its messages
 *   PATCH  /v1/conversations/:id {title | metadata}        rename, pin (metadata.pinned)
 *   DELETE /v1/conversations/:id                           delete
 *   POST   /v1/chat/completions {stream: true}             chat: x-conversation-id in and out,
 *                                                          x-on-disconnect: continue, x-persist: off
 *   GET    /v1/conversations/:id/messages/:mid/stream      an answer being written, from an offset
 *   POST   /v1/conversations/:id/messages/:mid/cancel      stop an answer, wherever it runs
 *   GET    /v1/conversations/export                        every conversation, JSON lines
 *   GET    /v1/conversations/:id/export?format             one, as JSON lines or Markdown
 *   POST   /v1/conversations/import?source                 an export file, or ChatGPT's
 *
 * Errors come in OpenAI's shape, {error: {message, type, code, param}}: `ApiError` carries them.
 */

export interface Conversation {
  id: string;
  title: string | null;
  model: string | null;
  metadata: Record<string, unknown>;
  access: 'owner' | 'editor' | 'viewer';
  message_count: number;
  /** The answer being written right now (watch it with `watch`), null when none. */
  streaming_message_id: string | null;
  usage: { tokens_in: number | null; tokens_out: number | null };
  created_at: string;
  updated_at: string;
}

export interface Message {
  id: string;
  seq: number;
  role: 'system' | 'user' | 'assistant' | 'tool';
  status: 'draft' | 'streaming' | 'final' | 'error';
  content: string;
  finish_reason: string | null;
  tokens_in: number | null;
  tokens_out: number | null;
  tokens_source: 'provider' | 'estimated' | null;
  created_at: string;
}

export interface Privacy {
  persistence: boolean;
  stored: string[];
  never_stored: string[];
  retention_days: number | null;
  deleted_retention_days: number | null;
  consent_required: boolean;
  consent: 'granted' | 'denied' | null;
  opt_out_header: string;
  notice: string;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface SearchResult {
  conversation_id: string;
  conversation_title: string | null;
  message_id: string | null;
  role: string | null;
  snippet: string;
  /** [start, end) offsets into `snippet` of the matched words. */
  highlights: [number, number][];
}

export interface ImportResult {
  imported: number;
  skipped: number;
  failed: { line: number; error: string }[];
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** One event of an answer, as the proxy streams it and as `watch` replays it. */
export type AnswerEvent =
  | { type: 'delta'; content: string }
  | { type: 'usage'; tokensIn: number; tokensOut: number }
  | { type: 'finish'; reason: string }
  | { type: 'error'; message: string; code: string };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: string | null,
    /** A chat refused by the upstream was still recorded (its answer as an error), here. */
    readonly conversationId: string | null = null,
  ) {
    super(message);
  }
}

export interface ClientOptions {
  /** Where the server is; '' for the page's own origin. */
  baseUrl?: string;
  /** An API key or a token from your identity provider, sent as a bearer; null when anonymous. */
  token?: () => string | null;
}

export class ChatClient {
  private readonly base: string;
  private readonly token: () => string | null;

  constructor({ baseUrl = '', token = () => null }: ClientOptions = {}) {
    this.base = baseUrl.replace(/\/+$/, '');
    this.token = token;
  }

  /** Any call: credentials added, an answer that is not 2xx thrown as ApiError. */
  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    const token = this.token();
    if (token) headers.set('authorization', `Bearer ${token}`);
    if (typeof init.body === 'string' && !headers.has('content-type')) headers.set('content-type', 'application/json');
    // Same origin: the session cookie goes along. Another origin (ALLOWED_ORIGIN) needs 'include'.
    const res = await fetch(this.base + path, { ...init, headers, credentials: 'include' });
    if (!res.ok) throw await errorOf(res);
    return res;
  }

  private async json<T>(path: string, init?: RequestInit): Promise<T> {
    return (await this.request(path, init)).json() as Promise<T>;
  }

  privacy = () => this.json<Privacy>('/v1/privacy');
  setConsent = (consent: 'granted' | 'denied') => this.json('/v1/privacy/consent', { method: 'POST', body: JSON.stringify({ consent }) });
  me = () => this.json<{ type: 'user' | 'session' | 'admin'; user: { name: string } | null }>('/v1/me');
  models = async () => (await this.json<{ data: { id: string }[] }>('/v1/models')).data.map((m) => m.id);

  listConversations = (cursor: string | null, limit = 30) =>
    this.json<Page<Conversation>>(`/v1/conversations?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);

  search = async (q: string, cursor: string | null): Promise<Page<SearchResult>> => {
    const page = await this.json<{ data: SearchResult[]; next_cursor: string | null }>(
      `/v1/conversations/search?limit=20&q=${encodeURIComponent(q)}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    return { items: page.data, next_cursor: page.next_cursor };
  };

  /** A conversation with every message of the branch it shows, read page by page. */
  async conversation(id: string): Promise<Conversation & { messages: Message[] }> {
    type Answer = Conversation & { messages: Message[]; next_after_seq: number | null };
    const first = await this.json<Answer>(`/v1/conversations/${encodeURIComponent(id)}?limit=200`);
    const messages = [...first.messages];
    for (let after = first.next_after_seq; after !== null; ) {
      const page = await this.json<Answer>(`/v1/conversations/${encodeURIComponent(id)}?limit=200&after_seq=${after}`);
      messages.push(...page.messages);
      after = page.next_after_seq;
    }
    return { ...first, messages };
  }

  /** The conversation alone (one message read), e.g. to learn which answer is being written. */
  conversationHead = (id: string) => this.json<Conversation>(`/v1/conversations/${encodeURIComponent(id)}?limit=1`);

  update = (id: string, patch: { title?: string; metadata?: Record<string, unknown> }) =>
    this.json<Conversation>(`/v1/conversations/${encodeURIComponent(id)}`, { method: 'PATCH', body: JSON.stringify(patch) });

  remove = (id: string) => this.request(`/v1/conversations/${encodeURIComponent(id)}`, { method: 'DELETE' });

  /**
   * Sends the whole history (as OpenAI expects) and streams the answer. `conversationId` null
   * starts a conversation; its id comes back in `x-conversation-id`, null when nothing is stored
   * (`persist: false` sends x-persist: off; consent refused or not yet given does the same).
   * `x-on-disconnect: continue` lets the answer finish on the server if this page goes away (a
   * reload), so it can be picked up again with `watch`.
   */
  async chat(
    body: { messages: ChatMessage[]; model?: string },
    { conversationId, persist, signal }: { conversationId: string | null; persist: boolean; signal?: AbortSignal },
  ): Promise<{ conversationId: string | null; events: AsyncGenerator<AnswerEvent> }> {
    const headers: Record<string, string> = { 'x-on-disconnect': 'continue' };
    if (conversationId) headers['x-conversation-id'] = conversationId;
    if (!persist) headers['x-persist'] = 'off';
    const res = await this.request('/v1/chat/completions', {
      method: 'POST',
      headers,
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
      ...(signal && { signal }),
    });
    return { conversationId: res.headers.get('x-conversation-id'), events: answerEvents(res.body!) };
  }

  /**
   * An answer being written (or written), from `offset` characters (UTF-16 units, what
   * `string.length` counts) on: after a reload, pass the length of the text already shown.
   */
  async watch(conversationId: string, messageId: string, offset: number, signal?: AbortSignal): Promise<AsyncGenerator<AnswerEvent>> {
    const res = await this.request(`/v1/conversations/${encodeURIComponent(conversationId)}/messages/${encodeURIComponent(messageId)}/stream`, {
      headers: { 'last-event-id': String(offset) },
      ...(signal && { signal }),
    });
    return answerEvents(res.body!);
  }

  cancel = (conversationId: string, messageId: string) =>
    this.request(`/v1/conversations/${encodeURIComponent(conversationId)}/messages/${encodeURIComponent(messageId)}/cancel`, { method: 'POST' });

  /** An export as a file to save: every conversation (JSON lines), or one (JSON lines or Markdown). */
  async export(id: string | null, format: 'jsonl' | 'markdown' = 'jsonl'): Promise<{ blob: Blob; filename: string }> {
    const res = await this.request(id ? `/v1/conversations/${encodeURIComponent(id)}/export?format=${format}` : '/v1/conversations/export');
    const named = /filename="?([^";]+)"?/i.exec(res.headers.get('content-disposition') ?? '')?.[1];
    return { blob: await res.blob(), filename: named ?? (format === 'markdown' ? 'conversation.md' : 'conversations.jsonl') };
  }

  /** An export file (.jsonl) or ChatGPT's conversations.json (.json), sent as it is read. */
  import = (file: File) => {
    const chatgpt = /\.json$/i.test(file.name);
    return this.json<ImportResult>(`/v1/conversations/import?source=${chatgpt ? 'chatgpt' : 'chat-proxy'}`, {
      method: 'POST',
      headers: { 'content-type': chatgpt ? 'application/json' : 'application/x-ndjson' },
      body: file,
    });
  };
}

async function errorOf(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as { error: { message: string; code: string | null } };
    return new ApiError(res.status, error.message, error.code ?? null, res.headers.get('x-conversation-id'));
  } catch {
    return new ApiError(res.status, `The server answered ${res.status}.`, null);
  }
}

/** The events of a `chat.completion.chunk` stream: text, usage, how it ended, or its error. */
export async function* answerEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<AnswerEvent> {
  for await (const data of sseData(body)) {
    if (data === '[DONE]') return;
    let chunk: any;
    try {
      chunk = JSON.parse(data);
    } catch {
      continue;
    }
    if (chunk.error) {
      yield { type: 'error', message: String(chunk.error.message ?? 'The answer failed.'), code: String(chunk.error.code ?? 'error') };
      return;
    }
    const choice = chunk.choices?.[0];
    if (typeof choice?.delta?.content === 'string' && choice.delta.content) yield { type: 'delta', content: choice.delta.content };
    if (choice?.finish_reason) yield { type: 'finish', reason: choice.finish_reason };
    if (chunk.usage) yield { type: 'usage', tokensIn: chunk.usage.prompt_tokens, tokensOut: chunk.usage.completion_tokens };
  }
}

/** The `data` of each server-sent event, by the SSE spec's line ends (CR, LF or CR LF). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      // A CR at the very end may be the first half of a CR LF: it waits for the next chunk.
      const end = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
      const lines = buffer.slice(0, end).split(/\r\n|\r|\n/);
      buffer = lines.pop()! + buffer.slice(end);
      for (const line of lines) {
        if (line === '') {
          if (data.length) yield data.join('\n');
          data = [];
        } else if (line.startsWith('data:')) {
          data.push(line.slice(line[5] === ' ' ? 6 : 5));
        }
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
