import { createParser } from 'eventsource-parser';
import { expect } from 'vitest';
import { call, type TestApp } from './app.js';
import { waitFor } from './streams.js';

/**
 * The `data` of every event a spec-following SSE client dispatches from this text: events end at
 * a blank line, and an unterminated event at the end of the stream is dropped, as browsers and
 * the openai SDK do. Unlike a line-by-line read, this shows when two events run into each other.
 */
export function sseEvents(text: string): string[] {
  const events: string[] = [];
  const parser = createParser({ onEvent: (e) => events.push(e.data) });
  parser.feed(text);
  return events;
}

/** The assistant text a client assembles from those events (unreadable events are skipped). */
export function eventsContent(events: string[]): string {
  let out = '';
  for (const data of events) {
    try {
      out += JSON.parse(data)?.choices?.[0]?.delta?.content ?? '';
    } catch {
      // not JSON: a client skips it or fails; either way it shows no text
    }
  }
  return out;
}

/** Parses an event's data, or null. */
export function eventJson(data: string | undefined): any {
  if (data === undefined) return null;
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

/** GET /v1/conversations/:id with every message, all branches (pages followed to the end). */
export async function readConversation(app: TestApp, id: string, session: string) {
  const first = await call(app, 'GET', `/v1/conversations/${id}?view=tree&limit=200`, { session });
  expect(first.status, `GET conversation ${id}: ${first.text}`).toBe(200);
  const conversation = first.json;
  let after = conversation.next_after_seq;
  while (after !== null) {
    const page = await call(app, 'GET', `/v1/conversations/${id}?view=tree&limit=200&after_seq=${after}`, { session });
    conversation.messages.push(...page.json.messages);
    after = page.json.next_after_seq;
  }
  return conversation;
}

/**
 * Waits until the conversation's last message is an assistant message and nothing in it is still
 * draft or streaming, then returns it.
 */
export async function settledConversation(app: TestApp, id: string, session: string, ms = 10_000) {
  return waitFor(async () => {
    const conversation = await readConversation(app, id, session);
    const last = conversation.messages.at(-1);
    const open = conversation.messages.some((m: any) => m.status === 'draft' || m.status === 'streaming');
    return last?.role === 'assistant' && !open ? conversation : null;
  }, ms);
}

/** Seqs dense from 1, the counter matching them, every message in a terminal status. */
export function expectConsistent(conversation: any) {
  const seqs = conversation.messages.map((m: any) => m.seq);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
  expect(conversation.message_count).toBe(seqs.length);
  for (const m of conversation.messages) expect(['final', 'error'], `message ${m.seq} status`).toContain(m.status);
}

/** Every 4xx/5xx body must be OpenAI's error shape. */
export function expectErrorShape(json: any) {
  expect(json, 'error body').toBeTypeOf('object');
  expect(json).not.toBeNull();
  expect(Object.keys(json)).toEqual(['error']);
  expect(json.error.message).toBeTypeOf('string');
  expect(json.error.message.length).toBeGreaterThan(0);
  expect(json.error.type).toBeTypeOf('string');
  expect(json.error).toHaveProperty('code');
  expect(json.error).toHaveProperty('param');
  expect(json.error.code === null || typeof json.error.code === 'string').toBe(true);
  expect(json.error.param === null || typeof json.error.param === 'string').toBe(true);
}
