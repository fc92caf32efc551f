import { isIP } from 'node:net';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { Context } from 'hono';
import type { AppEnv } from './types.js';

/**
 * The address of the client a request comes from: the socket's peer, or with TRUST_PROXY the
 * last X-Forwarded-For hop, the one our own reverse proxy appended (hops to its left are
 * whatever the client claimed). Without TRUST_PROXY the header is ignored: anyone can send it.
 * Null when there is no socket (app.request() in tests, without an `incoming` env).
 */
export function clientAddress<E extends AppEnv>(c: Context<E>): string | null {
  if (c.get('services').config.trustProxy) {
    const forwarded = normalizeAddress(lastHop(c.req.header('x-forwarded-for')));
    if (forwarded) return forwarded;
  }
  let socket: string | undefined;
  try {
    socket = getConnInfo(c).remote.address;
  } catch {
    // no socket
  }
  return normalizeAddress(socket);
}

/** Whether the client reached us over HTTPS; with TRUST_PROXY, as X-Forwarded-Proto's last hop says. */
export function requestIsHttps<E extends AppEnv>(c: Context<E>): boolean {
  if (c.get('services').config.trustProxy) {
    const proto = lastHop(c.req.header('x-forwarded-proto'));
    if (proto) return proto.toLowerCase() === 'https';
  }
  return new URL(c.req.url).protocol === 'https:';
}

/** The rightmost entry of a comma-separated forwarding header (repeated headers arrive joined). */
function lastHop(header: string | undefined): string | undefined {
  return header?.split(',').at(-1)?.trim() || undefined;
}

/** An IP address in one spelling, or null when `raw` is not one. */
function normalizeAddress(raw: string | undefined): string | null {
  if (!raw) return null;
  let address = raw.trim();
  // Some proxies add the port: [v6]:port, v4:port.
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed) address = bracketed[1]!;
  else if (/^[\d.]+:\d+$/.test(address)) address = address.slice(0, address.lastIndexOf(':'));
  address = address.replace(/%.*$/, ''); // IPv6 zone
  if (!isIP(address)) return null;
  // An IPv4 client on a dual-stack socket appears as ::ffff:a.b.c.d.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address.toLowerCase();
}
