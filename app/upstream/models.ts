import { ApiError } from '../errors.js';
import { readAll } from './answer.js';
import { endpointUrl } from './base-url.js';
import { callUpstream, type UpstreamOptions, type UpstreamResponse } from './client.js';

/** What the upstream answered to `GET /models`: the list when it worked, its error otherwise. */
export type ModelsAnswer = { ok: true; body: { object: 'list'; data: { id: string; [key: string]: unknown }[] } } | { ok: false; response: UpstreamResponse; text: string };

/** How long a successful list is reused: a UI asks often, the upstream's list rarely changes. */
export const MODELS_TTL_MS = 60_000;

/**
 * The upstream's model list, fetched with the server's key and kept for MODELS_TTL_MS in this
 * process; callers that ask while it is being fetched share that one request. Failures are
 * never kept: the next caller asks again.
 */
export class UpstreamModels {
  private cached: { at: number; answer: ModelsAnswer & { ok: true } } | null = null;
  private fetching: Promise<ModelsAnswer> | null = null;

  constructor(
    private readonly options: UpstreamOptions,
    private readonly now: () => number = Date.now,
  ) {}

  get endpoint(): string | null {
    return this.options.baseUrl ? endpointUrl(this.options.baseUrl, 'models') : null;
  }

  list(): Promise<ModelsAnswer> {
    if (this.cached && this.now() - this.cached.at < MODELS_TTL_MS) return Promise.resolve(this.cached.answer);
    this.fetching ??= this.fetch().finally(() => {
      this.fetching = null;
    });
    return this.fetching;
  }

  private async fetch(): Promise<ModelsAnswer> {
    // Not tied to one client's connection: the answer serves whoever asked meanwhile.
    const response = await callUpstream(this.options, { method: 'GET', url: (base) => endpointUrl(base, 'models'), accept: 'application/json', signal: new AbortController().signal });
    const text = await readAll(response, this.options.timeoutMs);
    if (!response.ok) return { ok: false, response, text };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      // handled below
    }
    const data = (body as { data?: unknown } | undefined)?.data;
    if (!Array.isArray(data)) {
      throw new ApiError(502, 'upstream_error', 'The upstream provider answered GET /models with something other than a list of models.', 'upstream_invalid_response');
    }
    const answer = { ok: true as const, body: { object: 'list' as const, data: data.filter((m): m is { id: string } => typeof m?.id === 'string') } };
    this.cached = { at: this.now(), answer };
    return answer;
  }
}
