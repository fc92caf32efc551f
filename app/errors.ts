import type { Context } from 'hono';
import { HTTPException } from 'hono/http-exception';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import {
  ConversationAccessError,
  ConversationNotFoundError,
  DuplicateError,
  LimitExceededError,
  MessageNotFoundError,
  UserNotFoundError,
  isTransientDbError,
} from '../db/store.js';

export type ErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'rate_limit_error'
  | 'not_implemented_error'
  | 'upstream_error'
  | 'timeout_error'
  | 'server_error';

/** The one error type the app throws; `onError` renders it in OpenAI's shape. */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: ContentfulStatusCode,
    readonly type: ErrorType,
    message: string,
    readonly code: string | null = null,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface ErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export function errorBody(message: string, type: string, code: string | null = null, param: string | null = null): ErrorBody {
  return { error: { message, type, code, param } };
}

export const notFound = (what: string, id: string) =>
  new ApiError(404, 'not_found_error', `No ${what} found with id '${id}'.`, 'not_found', 'id');

/** The caller is known but may not do this (may read a conversation but not change it, not an admin). */
export const permissionDenied = (message: string) => new ApiError(403, 'permission_error', message, 'permission_denied');

/** Maps anything thrown to an ApiError; unknown errors become a 500 that leaks nothing. */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err;
  if (err instanceof ConversationNotFoundError) return notFound('conversation', err.conversationId);
  if (err instanceof ConversationAccessError) return permissionDenied(err.message);
  if (err instanceof MessageNotFoundError) return new ApiError(404, 'not_found_error', err.message, 'not_found', err.param);
  if (err instanceof UserNotFoundError) return new ApiError(404, 'not_found_error', err.message, 'not_found', 'user_id');
  if (err instanceof DuplicateError) return new ApiError(409, 'invalid_request_error', err.message, 'conflict');
  if (err instanceof LimitExceededError) return new ApiError(429, 'rate_limit_error', err.message, 'limit_exceeded');
  if (isTransientDbError(err)) {
    return new ApiError(503, 'server_error', 'The conversation database is busy or briefly unavailable. Please retry in a moment.', 'database_unavailable', null, {
      'retry-after': '1',
    });
  }
  if (err instanceof HTTPException) {
    const status = err.status;
    if (status === 413) return new ApiError(413, 'invalid_request_error', err.message, 'request_too_large');
    if (status === 400) {
      // Hono's JSON validator throws this for bodies that are not JSON.
      const message = /malformed json/i.test(err.message)
        ? 'The request body is not valid JSON. Send a JSON object with Content-Type: application/json.'
        : err.message || 'Bad request.';
      return new ApiError(400, 'invalid_request_error', message, 'invalid_json');
    }
    return new ApiError(status, status >= 500 ? 'server_error' : 'invalid_request_error', err.message || 'Request failed.');
  }
  return new ApiError(500, 'server_error', 'The server hit an unexpected error. Please retry; if it persists, report it with the x-request-id header.', 'internal_error');
}

export function renderError(err: ApiError, c: Context): Response {
  for (const [k, v] of Object.entries(err.headers)) c.header(k, v);
  return c.json(errorBody(err.message, err.type, err.code, err.param), err.status);
}
