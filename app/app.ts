import { Hono, type MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { requestId } from 'hono/request-id';
import { dbErrorCode } from '../db/store.js';
import { ApiError, renderError, toApiError } from './errors.js';
import { accessLog } from './middleware/access-log.js';
import { corsPolicy } from './middleware/cors.js';
import { limitJsonDepth } from './middleware/json-depth.js';
import { jsonOnly } from './middleware/json-only.js';
import { rateLimit } from './rate-limit/middleware.js';
import { createMemoryRateLimitStore } from './rate-limit/stores.js';
import { identify } from './auth/identify.js';
import { Credentials } from './auth/credentials.js';
import { createJwtVerifier } from './auth/jwt.js';
import { SessionIds } from './session-ids.js';
import { HistoryWriter } from './streaming/history-writer.js';
import { chat } from './chat/route.js';
import { storedCompletions } from './chat/stored-route.js';
import { UpstreamModels } from './upstream/models.js';
import { models } from './routes/models.js';
import { responses } from './routes/responses.js';
import { reference } from './routes/reference.js';
import { ui } from './routes/ui.js';
import { admin } from './routes/admin.js';
import { conversations } from './routes/conversations/index.js';
import { portability } from './routes/conversations/portability.js';
import { health } from './routes/health.js';
import { createMetrics } from './metrics.js';
import { Consents } from './privacy/consents.js';
import { redactSystemPrompts } from './privacy/redact.js';
import { metrics } from './routes/metrics.js';
import { privacy } from './routes/privacy.js';
import { me } from './routes/me.js';
import { shared } from './routes/shared.js';
import type { Logger } from './logger.js';
import type { AppDeps, AppEnv, Services } from './types.js';

/** Builds the HTTP app around its dependencies; no I/O happens here. */
export function createApp(input: AppDeps) {
  const { config } = input;
  // REDACT_SYSTEM_PROMPTS applies to the store itself, so no write path can miss it.
  const store = input.store && config.redactSystemPrompts ? redactSystemPrompts(input.store) : input.store;
  const deps: Services = {
    ...input,
    store,
    metrics: input.metrics ?? createMetrics(),
    consents: store ? new Consents(store) : null,
    sessionIds: new SessionIds(config.session, store, input.logger),
    credentials: new Credentials(store, createJwtVerifier(config.auth), input.logger),
    models: new UpstreamModels(config.upstream),
    history: store ? new HistoryWriter(store) : null,
  };
  const app = new Hono<AppEnv>();

  // Our own id for every request, never the client's: a client's X-Request-Id is logged beside
  // it as client_request_id (cut short, printable ASCII only), so it cannot forge our log lines.
  app.use(requestId({ headerName: '' }));
  app.use(async (c, next) => {
    c.set('services', deps);
    c.header('x-request-id', c.get('requestId'));
    const clientId = c.req.header('x-request-id')?.slice(0, 128).replace(/[^\x21-\x7e]/g, '');
    c.set('log', deps.logger.child(clientId ? { request_id: c.get('requestId'), client_request_id: clientId } : { request_id: c.get('requestId') }));
    await next();
  });
  app.use(accessLog());
  app.use(
    corsPolicy(config.allowedOrigins, {
      exposeHeaders: [
        'x-session-id',
        'x-conversation-id',
        'x-chat-completion-id',
        'x-request-id',
        'retry-after',
        'ratelimit-limit',
        'ratelimit-remaining',
        'ratelimit-reset',
        'ratelimit-policy',
      ],
      maxAge: 600,
    }),
  );
  // An import reads its body itself, as a stream, under its own limit (IMPORT_MAX_BYTES) and
  // media types: the body limit would buffer it, the depth check parse it whole, and both refuse
  // what an import is for.
  const ownBodies = ['/v1/conversations/import'];
  // An exact path check: hono/combine's except() matched through a router on every request.
  const exceptOwnBodies = (middleware: MiddlewareHandler<AppEnv>): MiddlewareHandler<AppEnv> => (c, next) =>
    ownBodies.includes(c.req.path) ? next() : middleware(c, next);
  app.use(
    exceptOwnBodies(
      bodyLimit({
        maxSize: config.bodyLimitBytes,
        onError: () => {
          throw new ApiError(
            413,
            'invalid_request_error',
            `The request body is larger than this server accepts (${config.bodyLimitBytes} bytes, BODY_LIMIT_BYTES).`,
            'request_too_large',
          );
        },
      }),
    ),
  );

  app.use(exceptOwnBodies(limitJsonDepth(config.limits.jsonDepth)));
  app.use('/v1/*', jsonOnly({ exempt: ownBodies }));
  app.route('/healthz', health);
  app.route('/metrics', metrics);
  app.route('/', reference);
  app.route('/', ui);
  app.use('/v1/*', identify());
  app.use('/v1/*', rateLimit({ store: deps.rateLimitStore ?? createMemoryRateLimitStore(), ...config.rateLimit }));
  app.route('/v1/chat', chat);
  // Before the conversations routes: /export and /import are not conversation ids.
  app.route('/v1/conversations', portability);
  app.route('/v1/chat', storedCompletions);
  app.route('/v1/models', models);
  app.route('/v1/responses', responses);
  app.route('/v1/conversations', conversations);
  app.route('/v1/privacy', privacy);
  app.route('/v1/me', me);
  app.route('/v1/shared', shared);
  app.route('/v1/admin', admin);

  app.notFound((c) =>
    renderError(
      new ApiError(404, 'invalid_request_error', `Unknown route: ${c.req.method} ${c.req.path}.`, 'unknown_route'),
      c,
    ),
  );
  app.onError((err, c) => {
    const apiError = toApiError(err);
    if (apiError.status >= 500) logFailure(c.get('log'), err, apiError);
    return renderError(apiError, c);
  });
  return app;
}

export type App = ReturnType<typeof createApp>;

/**
 * A fault of this server is logged as an error with its stack. A 5xx given on purpose
 * (501 persistence_disabled, 503 upstream_not_configured or database_unavailable, 502/504 from
 * the upstream) is an answer, not a fault: one line without a stack, 501 at info.
 */
function logFailure(log: Logger | undefined, err: unknown, apiError: ApiError): void {
  if (apiError.code === null || apiError.code === 'internal_error') {
    log?.error({ err }, 'request failed');
    return;
  }
  const cause = err === apiError ? undefined : dbErrorCode(err);
  log?.[apiError.status === 501 ? 'info' : 'warn']({ status: apiError.status, code: apiError.code, ...(cause !== undefined && { cause_code: cause }) }, apiError.message);
}
