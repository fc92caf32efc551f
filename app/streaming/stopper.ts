import type { StopCause } from './live-answer.js';
import type { Relay } from './relay.js';

/** What the client leaving does to its exchange (x-on-disconnect, STREAM_ON_DISCONNECT). */
export type OnDisconnect = 'abort' | 'continue';

export interface StopperOptions {
  /** The client's connection: aborted when it goes away. */
  clientSignal: AbortSignal;
  /** `abort`: the client leaving stops the upstream at once. `continue`: only after `detachedMaxMs`. */
  onDisconnect: OnDisconnect;
  detachedMaxMs: number;
}

/**
 * Stops one proxied exchange, once, for the first reason that comes: the client leaving (at
 * once, or with `continue` once it has been gone STREAM_DETACHED_MAX_MS), a cancel request, a
 * shutdown. Until the answer streams it aborts the upstream request (`signal`); once a relay is
 * attached, the relay ends the stream in order. `cause` says why it stopped, null when it was not
 * stopped from here (with `abort`, the relay and the request's signal see the client leave).
 */
export class Stopper {
  /** For the upstream request and its body. */
  readonly signal: AbortSignal;
  cause: StopCause | null = null;
  private readonly upstream = new AbortController();
  private relay: Pick<Relay, 'stop'> | null = null;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private over = false;

  constructor(private readonly options: StopperOptions) {
    const { clientSignal } = options;
    if (options.onDisconnect === 'abort') {
      this.signal = AbortSignal.any([clientSignal, this.upstream.signal]);
    } else {
      this.signal = this.upstream.signal;
      if (clientSignal.aborted) this.clientGone();
      else clientSignal.addEventListener('abort', this.clientGone, { once: true });
    }
  }

  /** Aborts the upstream request and its body (the relay does this to end a stream). */
  abortUpstream(reason: unknown): void {
    this.upstream.abort(reason);
  }

  /** With `continue`: the client went away; the exchange may go on for `detachedMaxMs` more. */
  readonly clientGone = (): void => {
    if (this.timer || this.cause || this.over) return;
    this.timer = setTimeout(() => this.stop('client_abort'), this.options.detachedMaxMs);
  };

  stop(cause: StopCause): void {
    if (this.cause || this.over) return;
    this.cause = cause;
    this.clearTimer();
    if (this.relay) this.relay.stop(cause);
    else this.upstream.abort(new Error(`stopped: ${cause}`));
  }

  /** From now on the relay ends the exchange. */
  attach(relay: Pick<Relay, 'stop'>): void {
    this.relay = relay;
    if (this.cause) relay.stop(this.cause);
  }

  /** The exchange is over: nothing is left to stop. */
  dispose(): void {
    this.over = true;
    this.clearTimer();
    this.options.clientSignal.removeEventListener('abort', this.clientGone);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
