import { createHash } from 'node:crypto';
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

/**
 * SHA-256 (hex) of what a message says: role, text, content parts or tool_call_id (both kept in
 * content_json), tool calls and function call. Status, tokens and times are not part of it.
 */
export function fingerprintOf(m: Fingerprinted): string {
  const said = [m.role, m.content, m.contentJson ?? null, normalToolCalls(m.toolCalls), normalFunctionCall(m.functionCall)];
  return createHash('sha256').update(canonicalJson(said)).digest('hex');
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
  const byId = new Map<string, TreeNode>();
  for (const node of nodes) {
    byId.set(node.id, node);
    const list = children.get(node.parentId);
    if (list) list.push(node);
    else children.set(node.parentId, [node]);
  }
  const onActivePath = new Set<string>();
  for (let id = activeLeafId; id != null && !onActivePath.has(id); id = byId.get(id)?.parentId ?? null) onActivePath.add(id);
  // Preferred first: the active path, then the newest.
  const preference = (a: TreeNode, b: TreeNode) => Number(onActivePath.has(b.id)) - Number(onActivePath.has(a.id)) || b.seq - a.seq;

  const candidates = (parentId: string | null, step: TurnStep): TreeNode[] => {
    const here = children.get(parentId) ?? [];
    let found: TreeNode[];
    if (step.clientId !== null) {
      const named = here.filter((c) => c.clientId === step.clientId);
      found = named.length ? named.filter((c) => c.fingerprint === step.fingerprint) : here.filter((c) => c.clientId === null && c.fingerprint === step.fingerprint);
    } else {
      found = here.filter((c) => c.fingerprint !== null && c.fingerprint === step.fingerprint);
    }
    return found.length > 1 ? found.sort(preference) : found;
  };

  // Depth-first, the preferred candidate first; a later one replaces the best only by reaching further.
  let best: { node: TreeNode | null; depth: number } = { node: null, depth: 0 };
  const stack: { node: TreeNode; depth: number }[] = steps.length ? candidates(null, steps[0]!).reverse().map((node) => ({ node, depth: 1 })) : [];
  while (stack.length) {
    const { node, depth } = stack.pop()!;
    if (depth > best.depth) best = { node, depth };
    if (best.depth === steps.length) break;
    if (depth < steps.length) for (const next of candidates(node.id, steps[depth]!).reverse()) stack.push({ node: next, depth: depth + 1 });
  }

  // Walked up from the end of the match, then put root first.
  const matched: string[] = [];
  const adopt: TurnPlan['adopt'] = [];
  for (let node = best.node, i = best.depth - 1; node; node = node.parentId === null ? null : byId.get(node.parentId)!, i--) {
    matched.push(node.id);
    const clientId = steps[i]!.clientId;
    if (clientId !== null && node.clientId === null) adopt.push({ id: node.id, clientId });
  }
  const parentId = best.node?.id ?? null;
  const pending = best.depth < steps.length ? (children.get(parentId) ?? []).filter((c) => c.fingerprint === null).map((c) => c.id) : [];
  return { matched: matched.reverse(), adopt: adopt.reverse(), parentId, pending };
}
