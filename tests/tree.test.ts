import { describe, expect, it } from 'vitest';
import { canonicalJson, fingerprintOf, planTurn, type Fingerprinted, type TreeNode, type TurnStep } from '../db/tree.js';

// Matching a request's history against a conversation's tree, as pure functions: no database.

const said = (role: Fingerprinted['role'], content: string, extra: Partial<Fingerprinted> = {}): Fingerprinted => ({
  role,
  content,
  contentJson: null,
  toolCalls: null,
  functionCall: null,
  ...extra,
});

describe('fingerprintOf', () => {
  it('tells apart role, text, parts, tool calls and tool_call_id', () => {
    const all = [
      said('user', 'hi'),
      said('assistant', 'hi'),
      said('user', 'hi '),
      said('user', 'hi', { contentJson: [{ type: 'text', text: 'hi' }] }),
      said('tool', '{}', { contentJson: { tool_call_id: 'call_1' } }),
      said('tool', '{}', { contentJson: { tool_call_id: 'call_2' } }),
      said('assistant', '', { toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{}' } }] }),
      said('assistant', '', { toolCalls: [{ id: 'call_1', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }] }),
      said('assistant', '', { toolCalls: [{ id: 'call_2', type: 'function', function: { name: 'f', arguments: '{}' } }] }),
      said('assistant', '', { functionCall: { name: 'f', arguments: '{}' } }),
    ];
    expect(new Set(all.map(fingerprintOf)).size).toBe(all.length);
  });

  it("ignores what does not change a tool call: key order, the stream's index, the type", () => {
    const recorded = said('assistant', '', { toolCalls: [{ index: 0, id: 'c', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }] });
    const resent = said('assistant', '', { toolCalls: [{ function: { arguments: '{"x":1}', name: 'f' }, id: 'c' }] });
    expect(fingerprintOf(resent)).toBe(fingerprintOf(recorded));
    // An empty list is no tool call at all.
    expect(fingerprintOf(said('assistant', 'a', { toolCalls: [] }))).toBe(fingerprintOf(said('assistant', 'a')));
  });

  it('reads content parts whatever their key order', () => {
    const a = said('user', 'x', { contentJson: [{ type: 'image_url', image_url: { url: 'u', detail: 'low' } }] });
    const b = said('user', 'x', { contentJson: [{ image_url: { detail: 'low', url: 'u' }, type: 'image_url' }] });
    expect(fingerprintOf(a)).toBe(fingerprintOf(b));
    expect(canonicalJson({ b: 1, a: [{ d: 1, c: 2 }] })).toBe('{"a":[{"c":2,"d":1}],"b":1}');
  });
});

describe('planTurn', () => {
  /** A tree from lines "id parent fingerprint [clientId]"; seqs in line order. */
  const tree = (...lines: string[]): TreeNode[] =>
    lines.map((line, i) => {
      const [id, parent, fingerprint, clientId] = line.split(' ');
      return { id: id!, parentId: parent === '-' ? null : parent!, fingerprint: fingerprint === '?' ? null : fingerprint!, seq: i + 1, clientId: clientId ?? null };
    });
  const steps = (...list: string[]): TurnStep[] =>
    list.map((s) => {
      const [fingerprint, clientId] = s.split('#');
      return { fingerprint: fingerprint!, clientId: clientId ?? null };
    });
  // u1 → a1 → u2 → a2
  const linear = tree('m1 - U1', 'm2 m1 A1', 'm3 m2 U2', 'm4 m3 A2');

  it('an empty conversation matches nothing: the request is a new root', () => {
    expect(planTurn([], null, steps('U1'))).toEqual({ matched: [], adopt: [], parentId: null, pending: [] });
  });

  it('an extension of the active path matches it whole', () => {
    expect(planTurn(linear, 'm4', steps('U1', 'A1', 'U2', 'A2', 'U3'))).toEqual({ matched: ['m1', 'm2', 'm3', 'm4'], adopt: [], parentId: 'm4', pending: [] });
  });

  it('a regenerate matches up to its last user message', () => {
    expect(planTurn(linear, 'm4', steps('U1', 'A1', 'U2'))).toMatchObject({ matched: ['m1', 'm2', 'm3'], parentId: 'm3' });
  });

  it('an edit stops where the request diverges', () => {
    expect(planTurn(linear, 'm4', steps('U1', 'A1', 'U2x'))).toMatchObject({ matched: ['m1', 'm2'], parentId: 'm2' });
    expect(planTurn(linear, 'm4', steps('U1x'))).toMatchObject({ matched: [], parentId: null });
  });

  it('follows a branch that is not active', () => {
    // u1 → a1 → {u2 → a2, u2' → a2'}; active on the first.
    const branched = tree('m1 - U1', 'm2 m1 A1', 'm3 m2 U2', 'm4 m3 A2', 'm5 m2 U2x', 'm6 m5 A2x');
    expect(planTurn(branched, 'm4', steps('U1', 'A1', 'U2x', 'A2x', 'U3'))).toMatchObject({ matched: ['m1', 'm2', 'm5', 'm6'], parentId: 'm6' });
  });

  it('among equal children takes the one that matches furthest, then the active path, then the newest', () => {
    // Two roots with the same text, each with its own answer.
    const twins = tree('r1 - U1', 'r1a r1 A1', 'r2 - U1', 'r2a r2 A2');
    expect(planTurn(twins, 'r1a', steps('U1', 'A2')).matched).toEqual(['r2', 'r2a']);
    expect(planTurn(twins, 'r1a', steps('U1', 'A1')).matched).toEqual(['r1', 'r1a']);
    expect(planTurn(twins, 'r1a', steps('U1')).matched).toEqual(['r1']);
    expect(planTurn(twins, 'r2a', steps('U1')).matched).toEqual(['r2']);
    expect(planTurn(twins, null, steps('U1')).matched).toEqual(['r2']);
  });

  it('never matches a message still streaming (no fingerprint), and says when the request goes on past one', () => {
    const open = tree('m1 - U1', 'm2 m1 ?');
    expect(planTurn(open, 'm2', steps('U1', 'A1'))).toMatchObject({ matched: ['m1'], pending: ['m2'] });
    // A regenerate stops before it: nothing to wait for.
    expect(planTurn(open, 'm2', steps('U1'))).toMatchObject({ matched: ['m1'], pending: [] });
  });

  describe('client message ids', () => {
    it('match by id and fingerprint; a stored message without an id takes the one the request gives it', () => {
      const withIds = tree('m1 - U1 c1', 'm2 m1 A1', 'm3 m2 U2 c3');
      expect(planTurn(withIds, 'm3', steps('U1#c1', 'A1#c2', 'U2#c3', 'A2#c4'))).toEqual({ matched: ['m1', 'm2', 'm3'], adopt: [{ id: 'm2', clientId: 'c2' }], parentId: 'm3', pending: [] });
    });

    it('a child with another id is another message, even with the same text', () => {
      const withIds = tree('m1 - U1 c1');
      expect(planTurn(withIds, 'm1', steps('U1#c9')).matched).toEqual([]);
      // Without an id, the text decides.
      expect(planTurn(withIds, 'm1', steps('U1')).matched).toEqual(['m1']);
    });

    it('the same id with other text is an edit that kept its id: nothing matches there', () => {
      const withIds = tree('m1 - U1 c1', 'm2 m1 A1');
      expect(planTurn(withIds, 'm2', steps('U1x#c1'))).toMatchObject({ matched: [], parentId: null });
      // Once both versions are stored, each matches its own text.
      const both = tree('m1 - U1 c1', 'm2 m1 A1', 'm3 - U1x c1', 'm4 m3 A1x');
      expect(planTurn(both, 'm4', steps('U1#c1', 'A1')).matched).toEqual(['m1', 'm2']);
      expect(planTurn(both, 'm2', steps('U1x#c1', 'A1x')).matched).toEqual(['m3', 'm4']);
    });
  });

  it('visits a long chain without recursion', () => {
    const n = 50_000;
    const chain: TreeNode[] = Array.from({ length: n }, (_, i) => ({ id: `m${i}`, parentId: i ? `m${i - 1}` : null, fingerprint: `F${i % 2}`, seq: i + 1, clientId: null }));
    const request = Array.from({ length: n }, (_, i) => ({ fingerprint: `F${i % 2}`, clientId: null }));
    const plan = planTurn(chain, `m${n - 1}`, request);
    expect(plan.matched).toHaveLength(n);
    expect(plan.parentId).toBe(`m${n - 1}`);
  });
});
