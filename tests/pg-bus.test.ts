import { describe, expect, it } from 'vitest';
import type { NotificationChannel } from '../db/store.js';
import { PgAnswerBus } from '../app/streaming/pg-bus.js';
import type { AnswerEvent } from '../app/streaming/bus.js';
import { createLogger } from '../app/logger.js';

/** Two buses on one in-memory channel, as two processes on one database. */
async function pair() {
  const sent: string[] = [];
  const listeners: ((payload: string) => void)[] = [];
  const channel: NotificationChannel = {
    async listen(onPayload) {
      listeners.push(onPayload);
      return async () => {};
    },
    async notify(payload) {
      if (Buffer.byteLength(payload) > 7999) throw new RangeError('too long');
      sent.push(payload);
      for (const l of listeners) l(payload);
    },
  };
  const log = createLogger('silent');
  return { sent, a: await PgAnswerBus.start(channel, log), b: await PgAnswerBus.start(channel, log) };
}

const settle = () => new Promise((r) => setImmediate(r));

describe('PgAnswerBus: answer events between processes', () => {
  it('sends what is published in one moment as one notification, the furthest offset of each answer', async () => {
    const { sent, a, b } = await pair();
    const heard: [string, AnswerEvent][] = [];
    for (const id of ['m1', 'm2', 'm3']) b.subscribe(id, (e) => heard.push([id, e]));
    a.publish('m1', { kind: 'grew', offset: 10 });
    a.publish('m1', { kind: 'grew', offset: 25 });
    a.publish('m2', { kind: 'grew', offset: 3 });
    a.publish('m2', { kind: 'ended' });
    a.publish('m3', { kind: 'cancel' });
    await settle();
    expect(sent).toHaveLength(1);
    expect(heard).toEqual([
      ['m1', { kind: 'grew', offset: 25 }],
      ['m2', { kind: 'grew', offset: 3 }],
      ['m2', { kind: 'ended' }],
      ['m3', { kind: 'cancel' }],
    ]);
  });

  it('splits a large moment into notifications Postgres takes, losing none', async () => {
    const { sent, a, b } = await pair();
    const ids = Array.from({ length: 500 }, () => crypto.randomUUID());
    const heard = new Set<string>();
    for (const id of ids) b.subscribe(id, () => heard.add(id));
    for (const id of ids) a.publish(id, { kind: 'ended' });
    await settle();
    expect(sent.length).toBeGreaterThan(1);
    for (const payload of sent) expect(Buffer.byteLength(payload)).toBeLessThan(8000);
    expect(heard.size).toBe(500);
  });

  it("still reads a single event in the one-event form, and ignores its own and malformed notifications", async () => {
    const { a, b } = await pair();
    const heard: AnswerEvent[] = [];
    b.subscribe('m', (e) => heard.push(e));
    const channel = (b as unknown as { heard(p: string): void });
    channel.heard(JSON.stringify(['other', 'grew', 'm', 7]));
    channel.heard('not json');
    channel.heard(JSON.stringify(['other', [['grew', 'm'], 'x', ['ended', 5, 0]]]));
    a.publish('m', { kind: 'ended' });
    await settle();
    expect(heard).toEqual([{ kind: 'grew', offset: 7 }, { kind: 'ended' }]);
  });
});
