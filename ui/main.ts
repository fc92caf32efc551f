import { ApiError, ChatClient, type AnswerEvent, type ChatMessage, type Conversation, type Message, type Privacy } from './api.js';
import { renderMarkdown } from './markdown.js';

/*
 * The page: a history on the left, a conversation on the right. Every server call goes through
 * ChatClient (api.ts); this file is DOM only. A conversation's place is in the URL (#/c/<id>),
 * so a reload reopens it, and an answer still being written there goes on where it was.
 */

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

// --- Credentials: an API key the user typed (kept in localStorage), or a token the host page
// passed in the URL fragment (#token=…, kept for this tab only, taken out of the address bar).
const KEY_STORAGE = 'chat-proxy.api-key';
const TOKEN_STORAGE = 'chat-proxy.token';
const MODEL_STORAGE = 'chat-proxy.model';
{
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_STORAGE, decodeURIComponent(m[1]!));
    history.replaceState(null, '', `${location.pathname}${location.search}#/`);
  }
}
const credential = () => sessionStorage.getItem(TOKEN_STORAGE) ?? localStorage.getItem(KEY_STORAGE);
const api = new ChatClient({ token: credential });

// --- State.
interface Shown {
  id: string | null;
  role: Message['role'];
  content: string;
  status: Message['status'];
  /** finish_reason: why it ended (stop, length, cancelled, upstream_error…). */
  reason: string | null;
  error: string | null;
  tokensIn: number | null;
  tokensOut: number | null;
  tokensSource: Message['tokens_source'];
  el?: HTMLElement;
}
interface Open {
  /** The stored conversation this chat is, null until something was stored. */
  id: string | null;
  conversation: Conversation | null;
  messages: Shown[];
}
interface Running {
  abort: AbortController;
  answer: Shown;
  conversationId: string | null;
  /** Stop was asked before the server said which conversation the answer is in. */
  stopAsked: boolean;
}

let privacy: Privacy | null = null;
let open: Open = { id: null, conversation: null, messages: [] };
let running: Running | null = null;
let listCursor: string | null = null;
let searchCursor: string | null = null;
let privacyOpened = false;

const messagesEl = $('messages');
const input = $<HTMLTextAreaElement>('composer-input');
const noSave = $<HTMLInputElement>('no-save');
const modelSelect = $<HTMLSelectElement>('model');

// --- Small DOM helpers.
function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Partial<Record<string, string>> = {}, ...children: (Node | string)[]) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) if (v !== undefined) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

function say(text: string | null, kind: 'alert' | 'info' = 'alert') {
  const el = $(kind);
  el.textContent = text ?? '';
  el.hidden = !text;
}

function failed(err: unknown, doing: string) {
  if (err instanceof ApiError && err.status === 401) return openAccount(err.message);
  say(`${doing} failed: ${err instanceof Error ? err.message : String(err)}`);
}

/** True when what is sent now is stored, and why not otherwise. */
function saving(): { on: boolean; why: string } {
  if (!privacy?.persistence) return { on: false, why: 'Nothing is saved: this server keeps no history. This chat lasts until you leave the page.' };
  if (privacy.consent === 'denied') return { on: false, why: 'Nothing is being saved: you chose not to save anything (change it under Privacy).' };
  if (privacy.consent_required && privacy.consent !== 'granted') return { on: false, why: 'Nothing is being saved until you allow it in the privacy notice.' };
  if (noSave.checked) return { on: false, why: "This chat is not being saved: “Don't save this chat” is on." };
  return { on: true, why: '' };
}

// --- Messages.
const ROLE_NAMES: Record<string, string> = { user: 'You', assistant: 'Assistant', system: 'System', tool: 'Tool' };

function fromStored(m: Message): Shown {
  return {
    id: m.id,
    role: m.role,
    content: m.content,
    status: m.status === 'draft' ? 'streaming' : m.status,
    reason: m.finish_reason,
    error: null,
    tokensIn: m.tokens_in,
    tokensOut: m.tokens_out,
    tokensSource: m.tokens_source,
  };
}

const REASONS: Record<string, string> = {
  cancelled: 'stopped',
  client_abort: 'the page left before it ended',
  upstream_error: 'the model provider failed',
  upstream_timeout: 'the model provider went silent',
  interrupted: 'the server stopped mid-answer',
  incomplete: 'part of it could not be saved',
  length: 'cut at the length limit',
  content_filter: 'cut by the content filter',
};

function metaText(m: Shown): string {
  if (m.role !== 'assistant') return '';
  const parts: string[] = [];
  if (m.status === 'streaming') parts.push('Writing…');
  else if (m.status === 'error') parts.push(`Error: ${REASONS[m.reason ?? ''] ?? m.reason ?? 'failed'}${m.error ? ` (${m.error})` : ''}`);
  else parts.push(m.reason && m.reason !== 'stop' ? `Done, ${REASONS[m.reason] ?? m.reason}` : 'Done');
  if (m.tokensIn !== null || m.tokensOut !== null) {
    parts.push(`${m.tokensIn ?? '?'} tokens in, ${m.tokensOut ?? '?'} out${m.tokensSource === 'estimated' ? ' (estimated)' : ''}`);
  }
  return parts.join(' · ');
}

function messageEl(m: Shown): HTMLElement {
  const body = h('div', { class: 'message-body' });
  const el = h('article', { class: `message role-${m.role}` }, h('h2', { class: 'message-role' }, ROLE_NAMES[m.role] ?? m.role), body, h('p', { class: 'message-meta' }));
  m.el = el;
  paint(m);
  return el;
}

/** Puts a message's text and status on screen; answers as markdown, everything else as text. */
function paint(m: Shown) {
  const el = m.el;
  if (!el) return;
  el.dataset.status = m.status;
  el.setAttribute('aria-busy', String(m.status === 'streaming'));
  const body = el.querySelector<HTMLElement>('.message-body')!;
  if (m.role === 'assistant') {
    body.replaceChildren(renderMarkdown(m.content));
    for (const pre of body.querySelectorAll('pre')) {
      const copy = h('button', { type: 'button', class: 'copy' }, 'Copy');
      copy.addEventListener('click', () => void navigator.clipboard?.writeText(pre.querySelector('code')?.textContent ?? pre.textContent ?? ''));
      pre.before(h('div', { class: 'code-tools' }, copy));
    }
  } else {
    body.textContent = m.content;
  }
  const meta = el.querySelector<HTMLElement>('.message-meta')!;
  meta.textContent = metaText(m);
  meta.hidden = !meta.textContent;
  if (m.role === 'assistant' && m.status !== 'streaming' && m === open.messages.at(-1)) {
    const again = h('button', { type: 'button', class: 'regenerate' }, 'Regenerate');
    again.addEventListener('click', () => void regenerate());
    meta.append(' ', again);
    meta.hidden = false;
  }
}

// Streamed text is painted once per frame at most, however fast it comes.
const dirty = new Set<Shown>();
let frame = 0;
function schedulePaint(m: Shown) {
  dirty.add(m);
  frame ||= requestAnimationFrame(() => {
    frame = 0;
    const follow = nearBottom();
    for (const d of dirty) paint(d);
    dirty.clear();
    if (follow) scrollToEnd();
  });
}

const nearBottom = () => messagesEl.scrollHeight - messagesEl.scrollTop - messagesEl.clientHeight < 80;
const scrollToEnd = () => messagesEl.scrollTo({ top: messagesEl.scrollHeight });

function renderMessages() {
  const shown = open.messages;
  messagesEl.replaceChildren(...(shown.length ? shown.map(messageEl) : [h('p', { class: 'empty muted' }, 'Ask anything. Answers appear here as they are written.')]));
  scrollToEnd();
}

function renderHeader() {
  const c = open.conversation;
  const first = open.messages.find((m) => m.role === 'user')?.content.slice(0, 80);
  const title = c?.title ?? (!open.messages.length ? 'New chat' : open.id ? (first ?? 'Untitled') : 'Unsaved chat');
  $('chat-title').textContent = title;
  document.title = `${title} · Chat`;
  const owner = !!c && c.access === 'owner';
  for (const id of ['rename', 'delete']) $<HTMLButtonElement>(id).disabled = !owner;
  const pin = $<HTMLButtonElement>('pin');
  pin.disabled = !owner;
  const pinned = c?.metadata?.pinned === true;
  pin.setAttribute('aria-pressed', String(pinned));
  pin.textContent = pinned ? 'Unpin' : 'Pin';
  $<HTMLButtonElement>('export-one').disabled = !c;
  const state = saving();
  const status = $('save-status');
  status.textContent = state.why;
  status.hidden = state.on;
  for (const a of document.querySelectorAll<HTMLAnchorElement>('.conversation-list a')) {
    if (a.dataset.id === open.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

// --- Answers: one loop reads both a fresh answer and one picked up after a reload.
async function consume(events: AsyncGenerator<AnswerEvent>, m: Shown): Promise<boolean> {
  let ended = false;
  for await (const e of events) {
    if (e.type === 'delta') {
      m.content += e.content;
    } else if (e.type === 'usage') {
      Object.assign(m, { tokensIn: e.tokensIn, tokensOut: e.tokensOut, tokensSource: 'provider' });
    } else {
      Object.assign(m, e.type === 'finish' ? { status: 'final', reason: e.reason } : { status: 'error', reason: e.code, error: e.message });
      ended = true;
    }
    schedulePaint(m);
  }
  return ended;
}

function setRunning(r: Running | null) {
  running = r;
  $('send').hidden = !!r;
  const stop = $<HTMLButtonElement>('stop');
  stop.hidden = !r;
  stop.disabled = false;
  messagesEl.setAttribute('aria-busy', String(!!r));
}

/** Leaves an answer this page follows; one being stored goes on on the server. */
function leaveRunning() {
  if (!running) return;
  running.abort.abort();
  setRunning(null);
}

const blank = (role: Shown['role'], content: string, status: Shown['status']): Shown => ({
  id: null,
  role,
  content,
  status,
  reason: null,
  error: null,
  tokensIn: null,
  tokensOut: null,
  tokensSource: null,
});

function send() {
  const text = input.value.trim();
  if (!text || running) return;
  input.value = '';
  return exchange([...open.messages, blank('user', text, 'final')]);
}

/**
 * Another answer to the last question: the history up to it, sent again. The server records the
 * new answer beside the old one (a branch) and shows it from then on.
 */
function regenerate() {
  const last = open.messages.findLastIndex((m) => m.role === 'user');
  if (last < 0 || running) return;
  return exchange(open.messages.slice(0, last + 1));
}

/** Sends the whole history, as OpenAI expects, and shows the answer as it streams. */
async function exchange(kept: Shown[]) {
  say(null);
  say(null, 'info');
  const history: ChatMessage[] = kept
    .filter((m) => (m.role === 'user' || m.role === 'system' || m.role === 'assistant') && m.content !== '')
    .map((m) => ({ role: m.role as ChatMessage['role'], content: m.content }));
  const answer = blank('assistant', '', 'streaming');
  open.messages = [...kept, answer];
  renderMessages();
  renderHeader();
  input.focus();
  const persist = !noSave.checked;
  const run: Running = { abort: new AbortController(), answer, conversationId: null, stopAsked: false };
  const chat = open;
  setRunning(run);
  try {
    const model = modelSelect.value;
    const reply = await api.chat(
      { messages: history, ...(model && { model }) },
      { conversationId: persist ? chat.id : null, persist, signal: run.abort.signal },
    );
    run.conversationId = reply.conversationId;
    if (reply.conversationId) adopt(chat, reply.conversationId);
    if (run.stopAsked) void stop();
    if (!(await consume(reply.events, answer)) && answer.status === 'streaming') {
      Object.assign(answer, { status: 'error', reason: 'upstream_error', error: 'the answer ended before it was complete' });
    }
  } catch (err) {
    if (run.abort.signal.aborted && running !== run) return; // the page moved on
    const reason = run.stopAsked ? 'cancelled' : err instanceof ApiError ? (err.code ?? 'error') : 'client_abort';
    Object.assign(answer, { status: 'error', reason, error: run.stopAsked ? null : err instanceof Error ? err.message : null });
    if (err instanceof ApiError && err.status === 401) openAccount(err.message);
    // The upstream refused, but the exchange was recorded: this chat is that conversation now.
    if (err instanceof ApiError && err.conversationId && persist) adopt(chat, (run.conversationId = err.conversationId));
  } finally {
    if (running === run) setRunning(null);
    paint(answer);
  }
  // The stored version: ids, statuses and token counts as the server recorded them, once it has
  // recorded the end (its stream ends just after ours did).
  if (chat === open && run.conversationId) {
    await settled(run.conversationId, answer.content.length).catch(() => {});
    await reopen(run.conversationId);
    // The store keeps why an answer failed (its finish_reason), not the words it was told in.
    const last = open.messages.at(-1);
    if (answer.error && last?.role === 'assistant' && last.status === 'error' && !last.error) {
      last.error = answer.error;
      paint(last);
    }
  }
}

/** The conversation the server recorded this chat in: where a reload comes back to. */
function adopt(chat: Open, id: string) {
  if (chat.id === id) return;
  chat.id = id;
  if (chat !== open) return;
  // No hashchange: nothing to reopen.
  replaceHash(`#/c/${id}`);
  renderHeader();
  void refreshList();
}

/** Resolves once the server has recorded the end of the conversation's answer. */
async function settled(conversationId: string, shown: number) {
  const { streaming_message_id: live } = await api.conversationHead(conversationId);
  if (live) for await (const _ of await api.watch(conversationId, live, shown));
}

/** Follows an answer still being written (after a reload, or a return to its conversation). */
async function follow(conversationId: string, m: Shown) {
  const run: Running = { abort: new AbortController(), answer: m, conversationId, stopAsked: false };
  setRunning(run);
  try {
    // A dropped connection is picked up from the text already shown, a few times at most.
    for (let attempt = 0; attempt < 5 && !run.abort.signal.aborted; attempt++) {
      if (await consume(await api.watch(conversationId, m.id!, m.content.length, run.abort.signal), m)) break;
    }
  } catch (err) {
    if (!run.abort.signal.aborted) failed(err, 'Following the answer');
    return;
  } finally {
    if (running === run) setRunning(null);
    paint(m);
  }
  if (open.id === conversationId) await reopen(conversationId);
}

async function stop() {
  const run = running;
  if (!run) return;
  $<HTMLButtonElement>('stop').disabled = true;
  const conversationId = run.conversationId ?? (open.conversation ? open.id : null);
  if (conversationId) {
    try {
      const messageId = run.answer.id ?? (await api.conversationHead(conversationId)).streaming_message_id;
      // The cancel stops it wherever it runs; the stream then ends with a `cancelled` event.
      if (messageId) return void (await api.cancel(conversationId, messageId));
    } catch (err) {
      failed(err, 'Stopping');
    }
  }
  if (run.conversationId === null && saving().on) {
    // A stored answer the server has not named yet: stopped as soon as it does. Leaving it
    // would not stop it (x-on-disconnect: continue), unless nothing comes for a while.
    run.stopAsked = true;
    setTimeout(() => run.conversationId === null && run.abort.abort(), 5_000);
    return;
  }
  run.abort.abort();
}

// --- Conversations.
async function openConversation(id: string) {
  leaveRunning();
  say(null);
  open = { id, conversation: null, messages: [] };
  renderMessages();
  $('chat-title').textContent = 'Loading…';
  await reopen(id);
}

/** Reads the conversation again and shows it; an answer still being written is followed. */
async function reopen(id: string) {
  let c: Awaited<ReturnType<ChatClient['conversation']>>;
  try {
    c = await api.conversation(id);
  } catch (err) {
    if (open.id !== id) return;
    if (err instanceof ApiError && err.status === 404) {
      say('That conversation does not exist, or it was deleted.');
      return newChat();
    }
    return failed(err, 'Opening the conversation');
  }
  if (open.id !== id || running) return;
  open = { id, conversation: c, messages: c.messages.map(fromStored) };
  renderMessages();
  renderHeader();
  const live = c.streaming_message_id && open.messages.find((m) => m.id === c.streaming_message_id);
  if (live) void follow(id, live);
}

function newChat() {
  leaveRunning();
  open = { id: null, conversation: null, messages: [] };
  noSave.checked = false;
  renderMessages();
  renderHeader();
  input.focus();
}

function replaceHash(hash: string) {
  history.replaceState(null, '', `${location.pathname}${location.search}${hash}`);
}

function route() {
  const id = /^#\/c\/([^/?#]+)$/.exec(location.hash)?.[1];
  if (id) void openConversation(decodeURIComponent(id));
  else newChat();
}

function conversationItem(c: Conversation): HTMLElement {
  const link = h('a', { href: `#/c/${encodeURIComponent(c.id)}`, 'data-id': c.id }, c.title ?? 'Untitled');
  if (c.id === open.id) link.setAttribute('aria-current', 'page');
  return h('li', {}, link);
}

async function refreshList() {
  if (!privacy?.persistence) return;
  try {
    const page = await api.listConversations(null);
    $('pinned-list').replaceChildren();
    $('conversation-list').replaceChildren();
    showList(page.items, page.next_cursor);
  } catch (err) {
    failed(err, 'Loading your history');
  }
}

function showList(items: Conversation[], next: string | null) {
  for (const c of items) $(c.metadata?.pinned === true ? 'pinned-list' : 'conversation-list').append(conversationItem(c));
  listCursor = next;
  $('load-more').hidden = !next;
  $('pinned-heading').hidden = !$('pinned-list').children.length;
  const none = !$('pinned-list').children.length && !$('conversation-list').children.length;
  $('history-note').textContent = none ? 'No conversations yet.' : '';
}

async function loadMore() {
  try {
    const page = await api.listConversations(listCursor);
    showList(page.items, page.next_cursor);
  } catch (err) {
    failed(err, 'Loading more');
  }
}

// --- Search: results as text, the matched words wrapped in <mark> (never HTML from the server).
let searchTimer = 0;
async function search(more = false) {
  const q = $<HTMLInputElement>('search-input').value.trim();
  $('search-results').hidden = !q;
  $('history').hidden = !!q;
  if (!q) return;
  try {
    const page = await api.search(q, more ? searchCursor : null);
    if (q !== $<HTMLInputElement>('search-input').value.trim()) return;
    const list = $('search-list');
    if (!more) list.replaceChildren();
    for (const r of page.items) {
      const snippet = h('span', { class: 'snippet' });
      let at = 0;
      for (const [start, end] of r.highlights) {
        if (start < at || end > r.snippet.length) continue;
        snippet.append(r.snippet.slice(at, start), h('mark', {}, r.snippet.slice(start, end)));
        at = end;
      }
      snippet.append(r.snippet.slice(at));
      list.append(h('li', {}, h('a', { href: `#/c/${encodeURIComponent(r.conversation_id)}`, 'data-id': r.conversation_id }, h('strong', {}, r.conversation_title ?? 'Untitled'), snippet)));
    }
    if (!list.children.length) list.append(h('li', { class: 'muted' }, 'Nothing found.'));
    searchCursor = page.next_cursor;
    $('search-more').hidden = !page.next_cursor;
  } catch (err) {
    failed(err, 'Searching');
  }
}

// --- Conversation actions.
function ask(dialogId: string): Promise<string> {
  const dialog = $<HTMLDialogElement>(dialogId);
  dialog.returnValue = '';
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener('close', () => resolve(dialog.returnValue), { once: true }));
}

async function rename() {
  const c = open.conversation;
  if (!c) return;
  const field = $<HTMLInputElement>('rename-input');
  field.value = c.title ?? '';
  if ((await ask('rename-dialog')) !== 'save' || !field.value.trim()) return;
  try {
    open.conversation = await api.update(c.id, { title: field.value.trim() });
    renderHeader();
    await refreshList();
  } catch (err) {
    failed(err, 'Renaming');
  }
}

async function togglePin() {
  const c = open.conversation;
  if (!c) return;
  try {
    open.conversation = await api.update(c.id, { metadata: { ...c.metadata, pinned: c.metadata?.pinned !== true } });
    renderHeader();
    await refreshList();
  } catch (err) {
    failed(err, 'Pinning');
  }
}

async function remove() {
  const c = open.conversation;
  if (!c || (await ask('delete-dialog')) !== 'delete') return;
  try {
    await api.remove(c.id);
    location.hash = '#/';
    await refreshList();
    say(`Deleted “${c.title ?? 'Untitled'}”.`, 'info');
  } catch (err) {
    failed(err, 'Deleting');
  }
}

function save({ blob, filename }: { blob: Blob; filename: string }) {
  const url = URL.createObjectURL(blob);
  const a = h('a', { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function exportOne() {
  const c = open.conversation;
  if (!c) return;
  const format = await ask('export-dialog');
  if (format !== 'jsonl' && format !== 'markdown') return;
  try {
    save(await api.export(c.id, format));
  } catch (err) {
    failed(err, 'Exporting');
  }
}

async function importFile(file: File) {
  say(`Importing ${file.name}…`, 'info');
  try {
    const r = await api.import(file);
    say(`Imported ${r.imported} conversation${r.imported === 1 ? '' : 's'}, ${r.skipped} already here${r.failed.length ? `, ${r.failed.length} failed (${r.failed[0]!.error})` : ''}.`, 'info');
    await refreshList();
  } catch (err) {
    say(null, 'info');
    failed(err, 'Importing');
  }
}

// --- Privacy and consent.
function showPrivacy(force = false) {
  const p = privacy;
  const panel = $('privacy-panel');
  if (!p) return;
  // Shown on a first visit and until a choice is made; and whenever the user opens it.
  panel.hidden = !(force || privacyOpened || (p.persistence && p.consent === null));
  if (force) privacyOpened = true;
  $('privacy-notice').textContent = p.persistence ? p.notice : 'This server does not store conversations: it passes them to the model provider and keeps nothing.';
  $('privacy-stored').replaceChildren(...(p.stored.length ? p.stored : ['nothing']).map((s) => h('li', {}, s)));
  $('privacy-never').replaceChildren(...p.never_stored.map((s) => h('li', {}, s)));
  $('privacy-retention').textContent = !p.persistence
    ? ''
    : `${p.retention_days ? `Conversations unused for ${p.retention_days} days are deleted, unless pinned.` : 'Conversations are kept until you delete them.'} ${
        p.deleted_retention_days !== null ? `What you delete is erased for good ${p.deleted_retention_days} days later.` : ''
      }`;
  $('privacy-choice').textContent = !p.persistence
    ? ''
    : p.consent === 'granted'
      ? 'You allowed saving.'
      : p.consent === 'denied'
        ? 'You chose not to save anything: chats still work, nothing new is stored.'
        : p.consent_required
          ? 'Nothing is saved until you allow it.'
          : 'You have not chosen yet: conversations are saved unless you refuse.';
  for (const id of ['consent-allow', 'consent-refuse']) $(id).hidden = !p.persistence;
  $('privacy-close').hidden = !(p.persistence ? p.consent !== null : true);
  for (const el of document.querySelectorAll<HTMLElement>('[data-needs-history]')) el.hidden = !p.persistence;
  if (!p.persistence) {
    $('recent-heading').hidden = true;
    $('history-note').textContent = 'This server keeps no history.';
  }
  renderHeader();
}

async function choose(consent: 'granted' | 'denied') {
  try {
    await api.setConsent(consent);
    privacy = await api.privacy();
    privacyOpened = false;
    showPrivacy();
    say(consent === 'granted' ? 'Saving is on: your conversations are kept in your history.' : 'Nothing new will be saved.', 'info');
  } catch (err) {
    failed(err, 'Recording your choice');
  }
}

// --- Signing in.
function openAccount(reason?: string) {
  const dialog = $<HTMLDialogElement>('account-dialog');
  if (reason) $('account-state').textContent = reason;
  if (!dialog.open) dialog.showModal();
}

async function showIdentity() {
  try {
    const me = await api.me();
    const signedIn = me.type === 'user';
    $('open-account').textContent = signedIn ? `Account: ${me.user?.name ?? 'signed in'}` : 'Sign in';
    $('account-state').textContent = signedIn ? `Signed in as ${me.user?.name ?? 'a user'}.` : 'Not signed in: this browser has an anonymous session.';
  } catch {
    // /v1/me is informative only.
  }
}

// --- Models.
async function loadModels() {
  try {
    const models = await api.models();
    const saved = localStorage.getItem(MODEL_STORAGE) ?? '';
    modelSelect.append(...models.map((id) => h('option', { value: id }, id)));
    if (models.includes(saved)) modelSelect.value = saved;
  } catch {
    // No list (the upstream is down): the server's default model answers.
  }
}

// --- Wiring.
function wire() {
  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    void send();
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      void send();
    } else if (e.key === 'Escape' && running) {
      void stop();
    }
  });
  $('stop').addEventListener('click', () => void stop());
  window.addEventListener('hashchange', route);
  // Already at #/ (an unsaved chat), the link changes nothing: start afresh all the same.
  $('new-chat').addEventListener('click', () => {
    if (location.hash === '#/' || location.hash === '') newChat();
  });
  $('load-more').addEventListener('click', () => void loadMore());
  $('search-input').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = window.setTimeout(() => void search(), 250);
  });
  $('search-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void search();
  });
  $('search-more').addEventListener('click', () => void search(true));
  $('rename').addEventListener('click', () => void rename());
  $('pin').addEventListener('click', () => void togglePin());
  $('delete').addEventListener('click', () => void remove());
  $('export-one').addEventListener('click', () => void exportOne());
  $('export-all').addEventListener('click', () => void api.export(null).then(save, (err) => failed(err, 'Exporting')));
  $('import').addEventListener('click', () => $('import-file').click());
  $('import-file').addEventListener('change', () => {
    const picker = $<HTMLInputElement>('import-file');
    const file = picker.files?.[0];
    picker.value = '';
    if (file) void importFile(file);
  });
  noSave.addEventListener('change', renderHeader);
  modelSelect.addEventListener('change', () => localStorage.setItem(MODEL_STORAGE, modelSelect.value));
  $('open-privacy').addEventListener('click', () => {
    showPrivacy(true);
    $('privacy-heading').scrollIntoView();
    $<HTMLButtonElement>(privacy?.persistence ? 'consent-allow' : 'privacy-close').focus();
  });
  $('privacy-close').addEventListener('click', () => {
    privacyOpened = false;
    showPrivacy();
  });
  $('consent-allow').addEventListener('click', () => void choose('granted'));
  $('consent-refuse').addEventListener('click', () => void choose('denied'));
  $('open-account').addEventListener('click', () => openAccount());
  $<HTMLDialogElement>('account-dialog').addEventListener('close', () => {
    const action = $<HTMLDialogElement>('account-dialog').returnValue;
    const key = $<HTMLInputElement>('api-key');
    if (action === 'save' && key.value.trim()) localStorage.setItem(KEY_STORAGE, key.value.trim());
    else if (action === 'signout') {
      localStorage.removeItem(KEY_STORAGE);
      sessionStorage.removeItem(TOKEN_STORAGE);
    } else return;
    key.value = '';
    location.reload();
  });
}

async function start() {
  wire();
  try {
    // First, alone: this answer sets the session cookie the other calls then share.
    privacy = await api.privacy();
    showPrivacy();
    void loadModels();
    void showIdentity();
    route();
    await refreshList();
  } catch (err) {
    failed(err, 'Reaching the server');
  } finally {
    // For tests and scripts driving the page: it has talked to the server.
    document.body.dataset.ready = 'true';
  }
}

void start();
