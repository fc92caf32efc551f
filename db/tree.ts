import * as crypto from 'node:crypto';
import type { Json, Message } from './store.js';

/**
 * A conversation is a tree of messages: each follows its parent, the first ones (roots) none.
 * A chat request carries a whole history; recording it means finding how much of that history
 * the tree already holds. Both are compared by fingerprint: what a message says, as stored.
 */

/** What a fingerprint covers: a message as stored, text already cleaned (messageRow). */
export type Fingerprinted = Pick<Message, 'role' | 'content' | 'contentJson' | 'toolCalls' | 'functionCall'>;

/** JSON with object keys sorted at every level, so key order never tells two values apart. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[key] = sortKeys((value as Record<string, unknown>)[key]);
    return out;
  }
  return value;
}

const str = (v: unknown) => (typeof v === 'string' ? v : null);

/**
 * Tool calls as a client resends them and as either recording path stored them: id, name and
 * arguments only. A stream's deltas carry `index` and the assembled calls may carry `type`; a
 * provider's JSON may order keys any way. None of that changes what was called.
 */
function normalToolCalls(calls: Json | null): unknown {
  if (!Array.isArray(calls) || calls.length === 0) return null;
  return calls.map((c) => {
    const call = c && typeof c === 'object' && !Array.isArray(c) ? c : {};
    const fn = call.function && typeof call.function === 'object' && !Array.isArray(call.function) ? call.function : {};
    return [str(call.id), str(fn.name), str(fn.arguments)];
  });
}

function normalFunctionCall(call: Json | null): unknown {
  if (!call || typeof call !== 'object' || Array.isArray(call)) return null;
  return [str(call.name), str(call.arguments)];
}

// One-shot hashing (Node 20.12+) costs a third of a Hash object's; a request may hold a thousand messages.
const sha256: (text: string) => string =
  typeof (crypto as { hash?: unknown }).hash === 'function'
    ? (text) => (crypto as unknown as { hash(algorithm: string, data: string): string }).hash('sha256', text)
    : (text) => crypto.createHash('sha256').update(text).digest('hex');

const jsonOrNull = (value: unknown) => (value == null ? 'null' : JSON.stringify(value));

/**
 * SHA-256 (hex) of what a message says: role, text, content parts or tool_call_id (both kept in
 * content_json), tool calls and function call, as the canonical JSON of
 * `[role, content, content_json, tool calls, function call]`. Status, tokens and times are not part of it.
 */
export function fingerprintOf(m: Fingerprinted): string {
  // Built piece by piece: most messages are plain text, with nothing to canonicalise.
  const parts = m.contentJson == null ? 'null' : canonicalJson(m.contentJson);
  return sha256(`[${JSON.stringify(m.role)},${JSON.stringify(m.content)},${parts},${jsonOrNull(normalToolCalls(m.toolCalls))},${jsonOrNull(normalFunctionCall(m.functionCall))}]`);
}

/** What matching needs of a stored message. */
export interface TreeNode {
  id: string;
  parentId: string | null;
  /** Null for a message that cannot match (still streaming). */
  fingerprint: string | null;
  seq: number;
  clientId: string | null;
}

/** A request message to match: its fingerprint and the client's id for it, if any. */
export interface TurnStep {
  fingerprint: string;
  clientId: string | null;
}

export interface TurnPlan {
  /** Stored messages that are the request's first messages, root first. */
  matched: string[];
  /** Matched messages stored without a client id that take the one the request gives them. */
  adopt: { id: string; clientId: string }[];
  /** Where the rest of the request (and then the answer) goes: the last matched message, or null (a new root). */
  parentId: string | null;
  /**
   * Messages still being written where the match ended, when the request goes on past that
   * point: the next message the request sends may be one of them once finished (a client that
   * sends its next turn the moment a stream ends, before the server has recorded its end).
   */
  pending: string[];
}

/**
 * How much of a request's history the tree holds, read from the root: at each step, the
 * children of the point reached that are the request's next message. A step with a client id
 * matches the child with that id and fingerprint; a child with that id but other content means
 * the client edited the message keeping its id, so nothing matches and a new sibling follows; a
 * child without an id matches by fingerprint and takes the id. A step without an id matches any
 * child with its fingerprint.
 *
 * Where several children match (the same text sent twice on purpose), the match that reaches
 * furthest wins; among equals, the one on the active path, else the newest. Each node sits at one
 * depth and is reached only through its parent, so the search visits every node at most once.
 */
export function planTurn(nodes: readonly TreeNode[], activeLeafId: string | null, steps: readonly TurnStep[]): TurnPlan {
  const children = new Map<string | null, TreeNode[]>();
  for (const node of nodes) {
    const list = children.get(node.parentId);
    if (list) list.push(node);
    else children.set(node.parentId, [node]);
  }
  // Only where several children match does the active path matter: read it then, once.
  let onActivePath: Set<string> | null = null;
  const activePath = () => {
    if (onActivePath) return onActivePath;
    const byId = new Map(nodes.map((n) => [n.id, n]));
    onActivePath = new Set<string>();
    for (let id = activeLeafId; id != null && !onActivePath.has(id); id = byId.get(id)?.parentId ?? null) onActivePath.add(id);
    return onActivePath;
  };
  // Preferred first: the active path, then the newest.
  const preference = (a: TreeNode, b: TreeNode) => Number(activePath().has(b.id)) - Number(activePath().has(a.id)) || b.seq - a.seq;

  const none: TreeNode[] = [];
  const candidates = (parentId: string | null, step: TurnStep): TreeNode[] => {
    const here = children.get(parentId) ?? none;
    // The usual case, a message with one child: no arrays to build.
    if (here.length === 1 && step.clientId === null) return here[0]!.fingerprint === step.fingerprint ? here : none;
    let found: TreeNode[];
    if (step.clientId !== null) {
      const named = here.filter((c) => c.clientId === step.clientId);
      found = named.length ? named.filter((c) => c.fingerprint === step.fingerprint) : here.filter((c) => c.clientId === null && c.fingerprint === step.fingerprint);
    } else {
      found = here.filter((c) => c.fingerprint !== null && c.fingerprint === step.fingerprint);
    }
    return found.length > 1 ? found.sort(preference) : found;
  };

  // Depth-first, the preferred candidate first; a later one replaces the best only by reaching
  // further. Each visit keeps the one it came from, so the match is read back without lookups.
  type Visit = { node: TreeNode; depth: number; from: Visit | null };
  let best: Visit | null = null;
  const stack: Visit[] = [];
  const push = (list: TreeNode[], from: Visit | null) => {
    for (let i = list.length - 1; i >= 0; i--) stack.push({ node: list[i]!, depth: (from?.depth ?? 0) + 1, from });
  };
  if (steps.length) push(candidates(null, steps[0]!), null);
  while (stack.length) {
    const visit = stack.pop()!;
    if (visit.depth > (best?.depth ?? 0)) best = visit;
    if (visit.depth === steps.length) break;
    push(candidates(visit.node.id, steps[visit.depth]!), visit);
  }

  // Read up from the end of the match, then put root first.
  const matched: string[] = [];
  const adopt: TurnPlan['adopt'] = [];
  for (let visit = best; visit; visit = visit.from) {
    matched.push(visit.node.id);
    const clientId = steps[visit.depth - 1]!.clientId;
    if (clientId !== null && visit.node.clientId === null) adopt.push({ id: visit.node.id, clientId });
  }
  const parentId = best?.node.id ?? null;
  const pending = (best?.depth ?? 0) < steps.length ? (children.get(parentId) ?? none).filter((c) => c.fingerprint === null).map((c) => c.id) : [];
  return { matched: matched.reverse(), adopt: adopt.reverse(), parentId, pending };
}
