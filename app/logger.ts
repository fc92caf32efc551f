import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/**
 * Structured JSON logs. Request and header objects are never logged whole; the redact list is a
 * second line of defence for anything that slips into a log call by mistake.
 */
export function createLogger(level: string = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: {
        paths: ['authorization', 'cookie', 'apiKey', 'api_key', '*.authorization', '*.cookie', '*.apiKey', 'headers', '*.headers'],
        censor: '[redacted]',
      },
    },
    destination,
  );
}
