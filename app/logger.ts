import { createRequire } from 'node:module';
import { pino, type Logger } from 'pino';
import type { PrettyOptions } from 'pino-pretty';

export type { Logger } from 'pino';

/**
 * Structured JSON logs. Request and header objects are never logged whole; the redact list is a
 * second line of defence for anything that slips into a log call by mistake.
 */
export function createLogger(level: string = 'info', destination?: pino.DestinationStream, format: 'json' | 'pretty' = 'json'): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['authorization', 'cookie', 'apiKey', 'api_key', '*.authorization', '*.cookie', '*.apiKey', 'headers', '*.headers'],
        censor: '[redacted]',
      },
    },
    format === 'pretty' ? prettyStream(destination) : destination,
  );
}

/**
 * Human-readable lines for `npm run dev` (LOG_FORMAT=pretty): one line per record, local time.
 * pino-pretty is loaded only when asked for, so JSON logging (production, tests) never loads it;
 * it formats in this thread, synchronously, so lines are not lost when the process exits.
 */
function prettyStream(destination?: pino.DestinationStream): pino.DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as (options: PrettyOptions) => pino.DestinationStream;
  return pretty({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', singleLine: true, sync: true, ...(destination && { destination }) });
}
