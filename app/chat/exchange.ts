import type { Context } from 'hono';
import { ApiError } from '../errors.js';
import { sessionInfo } from '../middleware/session.js';
import type { AppEnv } from '../types.js';
import type { TurnContext } from './turn.js';

/** What recording a turn needs of the request's services, caller and session (persistence on). */
export function turnContext(c: Context<AppEnv>): TurnContext {
  const { store, history, config, metrics, inFlight } = c.get('services');
  return {
    store: store!,
    history: history!,
    owner: c.get('principal'),
    config,
    log: c.get('log'),
    metrics,
    lease: inFlight.lease(),
    session: sessionInfo(c),
    answers: inFlight.answers,
    bus: inFlight.bus,
  };
}

/** Why an exchange failed before its answer, as its finish_reason. */
export const failureReason = (err: unknown) => (err instanceof ApiError ? (err.code ?? 'upstream_error') : 'client_abort');
