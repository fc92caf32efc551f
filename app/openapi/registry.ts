import { z } from 'zod';

/*
 * What the API reference says of each route, declared by the route's own module next to its
 * handlers: the request parts are the very zod schemas the handlers validate with, so the
 * document (app/openapi/document.ts) cannot drift from what the server accepts. A route the
 * document does not describe fails a test (tests/openapi.test.ts).
 */

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

export interface ResponseDoc {
  description: string;
  /** The JSON body; absent for an empty answer (204) or a body of another media type only. */
  schema?: z.ZodType;
  /** Media type of a body that is not JSON (`text/event-stream`, `text/html`…), instead of or beside it. */
  mediaType?: string;
  /** Response headers worth knowing, by name: their descriptions. */
  headers?: Record<string, string>;
}

export interface RouteDoc {
  method: Method;
  /** As Hono writes it: `/v1/conversations/:id`. */
  path: string;
  summary: string;
  description?: string;
  tag: string;
  /** Descriptions of the path parameters (all strings); undescribed ones still appear. */
  params?: Record<string, string>;
  query?: z.ZodType;
  body?: z.ZodType;
  /** Headers the route reads, by name: their descriptions. */
  headers?: Record<string, string>;
  responses: Record<number, ResponseDoc>;
  /** Statuses answered with the error shape, beyond those every route of its kind may give. */
  errors?: number[];
  /** Who may call it: any caller (the default under /v1), nobody needs credentials, or an admin. */
  auth?: 'caller' | 'public' | 'admin';
  /** Answers 501 persistence_disabled when PERSIST_TRANSCRIPTS is off. */
  persistence?: boolean;
}

/** One route's description; a typed identity, so a route module's list reads as data. */
export const route = (doc: RouteDoc): RouteDoc => doc;

/** OpenAI's error shape, the only one any route fails in. */
export const errorSchema = z
  .object({
    error: z.object({
      message: z.string(),
      type: z.string().describe('invalid_request_error, authentication_error, permission_error, not_found_error, rate_limit_error, …'),
      code: z.string().nullable(),
      param: z.string().nullable(),
    }),
  })
  .meta({ id: 'Error' });

/** What each error status means, for every route that may answer it. */
export const errorMeanings: Record<number, string> = {
  400: 'Invalid input (the message names the field), or a session id this server did not issue',
  401: 'A credential that failed (unknown, revoked or expired key; bad token), or none where one is required',
  403: 'Not allowed: may read the conversation but not do this, no consent, or not an admin',
  404: 'Not found, or not readable by the caller (no existence leak)',
  409: 'Conflict with what exists',
  413: 'Request body larger than BODY_LIMIT_BYTES',
  415: 'A write whose body is not JSON',
  429: 'Rate limit, concurrency cap or storage limit reached',
  500: 'A fault of this server',
  501: 'Persistence is off (PERSIST_TRANSCRIPTS=false)',
  502: 'The upstream provider failed or could not be reached',
  503: 'The database is briefly unavailable, or no upstream is configured',
  504: 'The upstream provider did not answer in time',
};
