import type { Config } from '../env.js';
import { limitChatRequest } from './limits.js';
import { LOCAL_FIELDS, LOCAL_MESSAGE_FIELDS, type ChatRequest } from './schemas.js';

export interface UpstreamRequest {
  /** The JSON body to send upstream. */
  body: string;
  stream: boolean;
  /** Usage was asked for on the client's behalf: strip it from what the client gets. */
  stripUsage: boolean;
}

/**
 * What goes upstream for a client's request: its fields as they are, except those this server
 * consumes (`conversation_id`, `store`, `metadata`, a message's `id`), the model filled in, the operator's limits applied (a 400 when
 * the request is over one), and, when the exchange is recorded, usage asked for on a stream
 * (honest accounting: the client's stream is filtered back to exactly what it asked for).
 */
export function buildUpstreamRequest(request: ChatRequest, config: Config, { recording }: { recording: boolean }): UpstreamRequest {
  const stream = request.stream === true;
  const upstream: Record<string, unknown> = { ...request, model: request.model ?? config.upstream.defaultModel };
  for (const field of LOCAL_FIELDS) delete upstream[field];
  // Messages are copied only when one carries a field of ours: most requests have none.
  if (request.messages.some((m) => LOCAL_MESSAGE_FIELDS.some((f) => f in m))) {
    upstream.messages = request.messages.map((m) => {
      const copy: Record<string, unknown> = { ...m };
      for (const field of LOCAL_MESSAGE_FIELDS) delete copy[field];
      return copy;
    });
  }
  Object.assign(upstream, limitChatRequest(request, config));
  const streamOptions = request.stream_options as { include_usage?: unknown } | undefined;
  const stripUsage = stream && recording && streamOptions?.include_usage !== true;
  if (stripUsage) upstream.stream_options = { ...streamOptions, include_usage: true };
  return { body: JSON.stringify(upstream), stream, stripUsage };
}
