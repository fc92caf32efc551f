import type { Config } from '../env.js';
import { ApiError } from '../errors.js';
import { allowsModel } from './model-allowlist.js';
import type { ChatRequest } from './schemas.js';

const OUTPUT_LIMIT_FIELDS = ['max_tokens', 'max_completion_tokens'] as const;

/**
 * What one chat request may spend on the operator's key, all checked here, after validation and
 * before anything is recorded or sent: the model (the default filling a missing one) must be in
 * MODEL_ALLOWLIST, `max_tokens` / `max_completion_tokens` within MAX_OUTPUT_TOKENS, `n` within
 * MAX_CHOICES. Over a limit → 400 naming the field and the limit. Returns what to change in the
 * request sent upstream: the cap, in MAX_OUTPUT_TOKENS_FIELD, when the request set no limit.
 */
export function limitChatRequest(request: ChatRequest, config: Config): Record<string, unknown> {
  const { modelAllowlist, maxOutputTokens, maxOutputTokensField, maxChoices } = config.chatLimits;
  const model = request.model ?? config.upstream.defaultModel;
  if (modelAllowlist && !allowsModel(modelAllowlist, model)) {
    const name = model.length > 100 ? `${model.slice(0, 100)}…` : model;
    throw new ApiError(
      400,
      'invalid_request_error',
      `The model ${JSON.stringify(name)} is not available on this server. Allowed models: ${modelAllowlist.join(', ')}.`,
      'model_not_allowed',
      'model',
    );
  }
  checkAtMost(request, 'n', maxChoices, 'MAX_CHOICES');
  if (maxOutputTokens === 0) return {};
  let limited = false;
  for (const field of OUTPUT_LIMIT_FIELDS) limited = checkAtMost(request, field, maxOutputTokens, 'MAX_OUTPUT_TOKENS') || limited;
  if (limited) return {};
  // A null limit means "none" to OpenAI: it is dropped (undefined is left out of the JSON), not
  // sent beside the cap.
  return { max_tokens: undefined, max_completion_tokens: undefined, [maxOutputTokensField]: maxOutputTokens };
}

/**
 * Refuses a `field` above `limit`; false when the request leaves it unset (or null). Only whole
 * numbers are accepted: some servers would read "100000" as a number, past the check.
 */
function checkAtMost(request: ChatRequest, field: string, limit: number, setting: string): boolean {
  const value = request[field];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new ApiError(400, 'invalid_request_error', `Invalid body '${field}': must be a whole number.`, 'invalid_value', field);
  }
  if (value > limit) {
    throw new ApiError(
      400,
      'invalid_request_error',
      `Invalid body '${field}': ${value} is more than this server allows; at most ${limit} (${setting}).`,
      'invalid_value',
      field,
    );
  }
  return true;
}
