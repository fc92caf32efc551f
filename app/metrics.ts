import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics of one app instance. Each app has its own registry (tests build many);
 * label values are bounded: route patterns, never raw paths or ids.
 */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const ms = [1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
  return {
    registry,
    requests: new Counter({
      name: 'chat_proxy_http_requests_total',
      help: 'HTTP requests by route pattern, method and status.',
      labelNames: ['route', 'method', 'status'] as const,
      registers: [registry],
    }),
    requestDuration: new Histogram({
      name: 'chat_proxy_http_request_duration_ms',
      help: 'Time until the response headers were ready, by route pattern.',
      labelNames: ['route'] as const,
      buckets: ms,
      registers: [registry],
    }),
    activeStreams: new Gauge({ name: 'chat_proxy_active_streams', help: 'Streams being relayed now.', registers: [registry] }),
    timeToFirstByte: new Histogram({
      name: 'chat_proxy_stream_ttfb_ms',
      help: 'Time from request to the first upstream byte sent to the client.',
      buckets: ms,
      registers: [registry],
    }),
    streamDuration: new Histogram({
      name: 'chat_proxy_stream_duration_ms',
      help: 'Time from request to the end of the stream, by how it ended.',
      labelNames: ['outcome'] as const,
      buckets: [100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000],
      registers: [registry],
    }),
    tokens: new Counter({
      name: 'chat_proxy_tokens_total',
      help: 'Tokens recorded, by direction (in = prompt, out = completion) and source (provider or estimated).',
      labelNames: ['direction', 'source'] as const,
      registers: [registry],
    }),
    dbFlushDuration: new Histogram({
      name: 'chat_proxy_db_flush_duration_ms',
      help: 'Latency of batched history writes.',
      buckets: [0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000],
      registers: [registry],
    }),
    dbFlushFailures: new Counter({ name: 'chat_proxy_db_flush_failures_total', help: 'Batched history writes that failed (and were retried).', registers: [registry] }),
    skippedEvents: new Counter({ name: 'chat_proxy_sse_skipped_events_total', help: 'Upstream SSE events that could not be read.', registers: [registry] }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
