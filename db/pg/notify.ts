import type postgres from 'postgres';
import type { NotificationChannel } from '../store.js';

/** The channel the server processes of one database talk on. */
export const NOTIFY_CHANNEL = 'chat_proxy_answers';
/** Postgres refuses NOTIFY payloads of 8000 bytes or more. */
const MAX_PAYLOAD_BYTES = 7999;

/**
 * LISTEN/NOTIFY on one channel, through the store's own client: postgres.js listens on a
 * dedicated connection of its own (re-listening after it drops, which `onListen` hears of),
 * and notifies through the pool.
 */
export function pgNotifications(client: postgres.Sql): NotificationChannel {
  return {
    async listen(onPayload, onListen) {
      const { unlisten } = await client.listen(NOTIFY_CHANNEL, onPayload, onListen);
      return unlisten;
    },
    async notify(payload) {
      if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) throw new RangeError(`NOTIFY payload of ${Buffer.byteLength(payload)} bytes; Postgres takes under 8000`);
      await client.notify(NOTIFY_CHANNEL, payload);
    },
  };
}
