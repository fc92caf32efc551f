import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { StreamEnd, StreamObserver } from './relay.js';

/**
 * Wraps a stream observer with what operators want to know of every stream: time to first
 * byte, duration and how it ended, as metrics and one log line. Never content.
 */
export function withTelemetry(observer: StreamObserver, metrics: Metrics, log: Logger, startedAt: number): StreamObserver {
  let firstByteAt = 0;
  metrics.activeStreams.inc();
  return {
    push(bytes) {
      if (!firstByteAt) {
        firstByteAt = performance.now();
        metrics.timeToFirstByte.observe(firstByteAt - startedAt);
      }
      observer.push(bytes);
    },
    end(how: StreamEnd) {
      const duration = performance.now() - startedAt;
      metrics.activeStreams.dec();
      metrics.streamDuration.observe({ outcome: how }, duration);
      log.info(
        {
          stream_outcome: how,
          ttfb_ms: firstByteAt ? round(firstByteAt - startedAt) : null,
          stream_duration_ms: round(duration),
        },
        'stream ended',
      );
      return observer.end(how);
    },
  };
}

const round = (ms: number) => Math.round(ms * 10) / 10;
