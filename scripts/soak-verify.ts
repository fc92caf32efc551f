// Verification for `npm run soak`: every conversation as stored, against what its client saw.
import { answerPrefix, planLabel, type ConversationRecord, type TurnRecord } from './soak-client.js';

/** The fields checked, whether read from the store or from GET /v1/conversations/:id?view=tree. */
export interface StoredMessage {
  id: string;
  parentId: string | null;
  seq: number;
  role: string;
  status: string;
  content: string;
  finishReason: string | null;
}

export interface Mismatch {
  phase: string;
  /** 'client': what the client saw breaks the protocol; 'store'/'api': the record differs from it. */
  source: 'client' | 'store' | 'api';
  sessionId: string;
  conversationId: string | null;
  turn: number | null;
  seq: number | null;
  plan: string | null;
  what: string;
  expected?: string;
  actual?: string;
}

export interface Tally {
  conversations: number;
  turns: number;
  messages: number;
  /** "<plan> → <what happened>" → count */
  outcomes: Map<string, number>;
}

export const newTally = (): Tally => ({ conversations: 0, turns: 0, messages: 0, outcomes: new Map() });

const bump = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);

/** A string for a report: length, and the text itself up to a point. */
export function show(s: string | null | undefined, max = 160): string {
  if (s === null || s === undefined) return String(s);
  const cps = Array.from(s);
  const body = JSON.stringify(cps.length > max ? `${cps.slice(0, max).join('')}…` : s);
  return `${body} (${cps.length} code points)`;
}

/** Where two strings first differ, in code points, with a little context. */
export function firstDiff(a: string, b: string): string {
  const x = Array.from(a);
  const y = Array.from(b);
  let i = 0;
  while (i < x.length && i < y.length && x[i] === y[i]) i++;
  if (i === x.length && i === y.length) return 'identical';
  const ctx = (arr: string[]) => JSON.stringify(arr.slice(Math.max(0, i - 10), i + 20).join(''));
  return `first difference at code point ${i}: expected …${ctx(x)} vs stored …${ctx(y)}`;
}

/**
 * What the client saw, against what the plan should produce: the proxy's side of the contract
 * before any database is involved.
 */
function checkClientView(conv: ConversationRecord, t: TurnRecord, report: (m: Omit<Mismatch, 'source'>) => void): void {
  const { plan } = t;
  const base = { phase: conv.phase, sessionId: conv.sessionId, conversationId: conv.id, turn: t.index, seq: null, plan: planLabel(plan) };
  const bad = (what: string, expected?: string, actual?: string) => report({ ...base, what, expected, actual });
  const describe = () => `outcome ${t.outcome}, HTTP ${t.status}, code ${t.errorCode ?? '-'}${t.detail ? `, ${t.detail}` : ''}${t.errorBody ? `, body ${t.errorBody}` : ''}`;

  if (t.afterEnd) bad(`${t.afterEnd} event(s) after [DONE] or after the error event`);
  if (t.outcome === 'timeout' || t.outcome === 'network_error' || t.outcome === 'incomplete') {
    bad(`client stream failed: ${describe()}`);
    return;
  }
  if (t.index > 0 && t.conversationHeader !== conv.id) {
    bad('x-conversation-id answered differs from the one sent', String(conv.id), String(t.conversationHeader));
  }
  if (t.index === 0 && !t.conversationHeader) bad(`no x-conversation-id in the answer to the first turn (${describe()})`);

  // UPSTREAM_TIMEOUT_MS is short (hang faults); on a starved machine a healthy mock answer can
  // miss it too. That is the server doing its job: counted in the outcomes, not a mismatch, as
  // long as what the client got is a clean prefix of the answer.
  const timedOut =
    (t.outcome === 'http_error' && t.status === 504 && t.errorCode === 'upstream_timeout') ||
    (t.outcome === 'sse_error' && t.errorCode === 'upstream_timeout');
  if (timedOut && plan.fault !== 'hang' && plan.fault !== 'hang_after_first') {
    if (!plan.full.startsWith(t.seen)) bad('text seen before the timeout is not a prefix of the answer', show(plan.full), show(t.seen));
    return;
  }

  if (plan.abortAfter !== null) {
    const limit = plan.fault === 'hang_after_first' ? answerPrefix(plan, 1) : plan.full;
    if (t.outcome === 'abort' || (t.outcome === 'done' && plan.fault === 'none')) {
      if (t.outcome === 'done' ? t.seen !== plan.full : !limit.startsWith(t.seen)) {
        bad('text seen by the client is not a prefix of the answer', show(limit), show(t.seen));
      }
    } else bad(`expected the client to abort, got ${describe()}`);
    return;
  }
  switch (plan.fault) {
    case 'none':
    case 'malformed':
      if (t.outcome !== 'done') return bad(`expected a complete stream, got ${describe()}`);
      if (t.seen !== plan.full) bad(`streamed text differs from the answer; ${firstDiff(plan.full, t.seen)}`, show(plan.full), show(t.seen));
      if (plan.fault === 'malformed' && t.unreadable < 1) bad('the malformed event did not reach the client');
      return;
    case 'drop':
    case 'hang_after_first': {
      const code = plan.fault === 'drop' ? 'upstream_error' : 'upstream_timeout';
      if (t.outcome !== 'sse_error' || t.errorCode !== code) return bad(`expected an SSE error event ${code}, got ${describe()}`);
      const before = answerPrefix(plan, plan.fault === 'drop' ? (plan.mock.drop_after ?? 0) : 1);
      if (t.seen !== before) bad(`text before the error event differs; ${firstDiff(before, t.seen)}`, show(before), show(t.seen));
      return;
    }
    case 'status':
      if (t.outcome !== 'http_error' || t.status !== plan.mock.status) bad(`expected HTTP ${plan.mock.status}, got ${describe()}`);
      return;
    case 'reset':
      if (t.outcome !== 'http_error' || t.status !== 502) bad(`expected HTTP 502, got ${describe()}`);
      return;
    case 'hang':
      if (t.outcome !== 'http_error' || t.status !== 504) bad(`expected HTTP 504, got ${describe()}`);
      return;
  }
}

/**
 * Checks one stored assistant message against the turn; returns the outcome label to count
 * (or null when `label` is not wanted).
 */
function checkAssistant(t: TurnRecord, m: StoredMessage, bad: (what: string, expected?: string, actual?: string) => void): string {
  const { plan } = t;
  const label = `${planLabel(plan)} → ${t.outcome === 'http_error' ? `HTTP ${t.status}` : t.outcome}`;
  if (m.role !== 'assistant') {
    bad('expected the assistant message here', 'assistant', m.role);
    return label;
  }
  switch (t.outcome) {
    case 'done':
      if (m.status !== 'final') bad('status', 'final', m.status);
      if (m.finishReason !== 'stop') bad('finish_reason', 'stop', String(m.finishReason));
      if (m.content !== t.seen) bad(`content differs from what the client assembled; ${firstDiff(t.seen, m.content)}`, show(t.seen), show(m.content));
      return label;
    case 'sse_error':
      if (m.status !== 'error') bad('status', 'error', m.status);
      if (m.finishReason !== t.errorCode) bad('finish_reason', String(t.errorCode), String(m.finishReason));
      if (m.content !== t.seen) {
        bad(`content differs from what the client received before the error event; ${firstDiff(t.seen, m.content)}`, show(t.seen), show(m.content));
      }
      return label;
    case 'http_error':
      if (m.status !== 'error') bad('status', 'error', m.status);
      if (m.content !== '') bad('content of a failed request', show(''), show(m.content));
      if (!m.finishReason) bad('finish_reason', 'an error reason', String(m.finishReason));
      return `${label} (${m.finishReason})`;
    case 'abort': {
      // The server may have read a little more than the client: stored ⊇ seen, and ⊆ the answer.
      if (m.status === 'final' && m.content === plan.full) return `${label}, server had already completed (final)`;
      if (m.status !== 'error') bad('status', 'error', m.status);
      if (m.finishReason !== 'client_abort') bad('finish_reason', 'client_abort', String(m.finishReason));
      if (!m.content.startsWith(t.seen)) bad(`stored content does not start with what the client saw; ${firstDiff(t.seen, m.content)}`, show(t.seen), show(m.content));
      if (!plan.full.startsWith(m.content)) bad(`stored content is not a prefix of the answer; ${firstDiff(plan.full, m.content)}`, show(plan.full), show(m.content));
      const extra = Array.from(m.content).length - Array.from(t.seen).length;
      return `${label}${extra > 0 ? ', server kept more than the client read' : ''}`;
    }
    default:
      // The client side already failed (reported); the record must still be closed and sane.
      if (m.status !== 'error' && m.status !== 'final') bad('status of a failed stream', 'error', m.status);
      if (!plan.full.startsWith(m.content)) bad('stored content is not a prefix of the answer', show(plan.full), show(m.content));
      return label;
  }
}

/**
 * One conversation: messages in seq order 1..N with no gap or duplicate, the system prompt and
 * every user message exactly once with its exact content, each following what the client sent
 * before it, and each turn's assistant message after its user message. `stored` null means the
 * conversation was not found.
 */
export function verifyConversation(
  conv: ConversationRecord,
  stored: StoredMessage[] | null,
  lastSeq: number | null,
  source: 'store' | 'api',
  report: (m: Mismatch) => void,
  tally: Tally | null,
): void {
  const base = { phase: conv.phase, source, sessionId: conv.sessionId, conversationId: conv.id };
  if (source === 'store') {
    // The client's own view is checked once, with the store pass.
    for (const t of conv.turns) checkClientView(conv, t, (m) => report({ ...m, source: 'client' }));
  }
  if (tally) {
    tally.conversations++;
    tally.turns += conv.turns.length;
  }
  if (!conv.id) {
    for (const t of conv.turns) if (tally) bump(tally.outcomes, `${planLabel(t.plan)} → no conversation id`);
    return;
  }
  if (!stored) {
    report({ ...base, turn: null, seq: null, plan: null, what: 'conversation not found' });
    return;
  }
  if (tally) tally.messages += stored.length;

  for (let i = 0; i < stored.length; i++) {
    const m = stored[i]!;
    if (m.seq !== i + 1) {
      report({ ...base, turn: null, seq: m.seq, plan: null, what: `seq out of order, gap or duplicate at position ${i + 1}`, expected: String(i + 1), actual: String(m.seq) });
      break;
    }
  }
  if (lastSeq !== null && lastSeq !== stored.length) {
    report({ ...base, turn: null, seq: null, plan: null, what: 'conversation last_seq differs from the number of messages', expected: String(stored.length), actual: String(lastSeq) });
  }
  for (const m of stored) {
    if (m.status === 'streaming' || m.status === 'draft') {
      report({ ...base, turn: null, seq: m.seq, plan: null, what: `message left ${m.status}`, actual: `${m.role}: ${show(m.content)}` });
    }
  }

  // The tree, walked as the client's requests went: each turn's request is the previous one, the
  // answer as the client saw it, and the new user message. When the client saw less than was
  // stored (it aborted; the server had read on), the next turn resent what it saw: that is
  // another assistant message, a sibling of the recorded answer, and the branch goes on from it.
  const children = new Map<string | null, StoredMessage[]>();
  for (const m of stored) children.set(m.parentId, [...(children.get(m.parentId) ?? []), m]);
  const visited = new Set<string>();
  const shape = () => stored.map((m) => `${m.seq}:${m.role}/${m.status}${m.parentId ? `<${stored.find((p) => p.id === m.parentId)?.seq ?? '?'}` : ''}`).join(' ');
  const childOf = (parent: string | null, role: string, content: string) => children.get(parent)?.find((m) => !visited.has(m.id) && m.role === role && m.content === content);
  let at: string | null = null;
  if (conv.system !== null) {
    const m = childOf(null, 'system', conv.system);
    if (!m) {
      report({ ...base, turn: null, seq: null, plan: null, what: `system message (conversation shape: ${shape()})`, expected: show(conv.system), actual: 'missing' });
      return;
    }
    visited.add(m.id);
    at = m.id;
  }
  for (const [i, t] of conv.turns.entries()) {
    const label = planLabel(t.plan);
    const u = childOf(at, 'user', t.user);
    if (!u || u.status !== 'final') {
      report({ ...base, turn: t.index, seq: u?.seq ?? null, plan: label, what: `user message (conversation shape: ${shape()})`, expected: show(t.user), actual: u ? `${u.status}` : 'missing' });
      return; // the walk is off from here; one report per conversation is enough
    }
    visited.add(u.id);
    // The answer recorded for this turn: the first assistant message after the user message.
    const a = children.get(u.id)?.find((m) => !visited.has(m.id) && m.role === 'assistant');
    if (!a) {
      report({ ...base, turn: t.index, seq: null, plan: label, what: `assistant message missing (conversation shape: ${shape()})` });
      return;
    }
    visited.add(a.id);
    const outcome = checkAssistant(t, a, (what, expected, actual) => report({ ...base, turn: t.index, seq: a.seq, plan: label, what, expected, actual }));
    at = a.id;
    if (i + 1 < conv.turns.length && a.content !== t.seen) {
      // The next turn sent what this client saw: stored once, beside the recorded answer.
      const resent = childOf(u.id, 'assistant', t.seen);
      if (!resent || resent.status !== 'final') {
        report({ ...base, turn: t.index, seq: null, plan: label, what: `the answer as the client resent it is not stored beside the recorded one (conversation shape: ${shape()})`, expected: show(t.seen) });
        return;
      }
      visited.add(resent.id);
      at = resent.id;
      if (tally) bump(tally.outcomes, `${outcome}, resent as seen: a branch`);
    } else if (tally) bump(tally.outcomes, outcome);
  }
  if (visited.size !== stored.length) {
    const extra = stored.filter((m) => !visited.has(m.id));
    report({
      ...base,
      turn: null,
      seq: extra[0]?.seq ?? null,
      plan: null,
      what: `${extra.length} unexpected extra message(s) (conversation shape: ${shape()})`,
      actual: extra.map((m) => `${m.seq}:${m.role}/${m.status} ${show(m.content, 40)}`).join('; '),
    });
  }
}

export function formatMismatch(m: Mismatch): string {
  const where = [
    `[${m.phase}/${m.source}]`,
    `conversation ${m.conversationId ?? '(none)'}`,
    `session ${m.sessionId}`,
    m.turn !== null ? `turn ${m.turn + 1}` : null,
    m.seq !== null ? `seq ${m.seq}` : null,
    m.plan ? `(${m.plan})` : null,
  ]
    .filter(Boolean)
    .join(' ');
  const lines = [`${where}: ${m.what}`];
  if (m.expected !== undefined) lines.push(`    expected: ${m.expected}`);
  if (m.actual !== undefined) lines.push(`    actual:   ${m.actual}`);
  return lines.join('\n');
}
