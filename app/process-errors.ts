import type { Logger } from './logger.js';

type Kind = 'unhandledRejection' | 'uncaughtException';

const messages: Record<Kind, string> = {
  unhandledRejection: 'unhandled promise rejection; exiting',
  uncaughtException: 'uncaught exception; exiting',
};

/**
 * An error that nothing handled leaves the process in a state nobody planned for. Log it as one
 * JSON line (name, code, message, stack) and exit non-zero, so the supervisor starts a clean
 * process; the streams this one leaves open are closed by the orphan sweep (leases). Installed
 * by every server entry point (`npm start`, `npm run dev`).
 */
export function exitOnUncaughtErrors(logger: Logger): void {
  const handler = (kind: Kind) => (reason: unknown) => {
    const err = describe(reason);
    logger.fatal({ err, event: kind }, messages[kind]);
    // A silenced logger must not swallow the reason the process died.
    if (!logger.isLevelEnabled('fatal')) console.error(`${messages[kind]}:`, reason);
    process.exit(1);
  };
  process.on('unhandledRejection', handler('unhandledRejection'));
  process.on('uncaughtException', handler('uncaughtException'));
}

/**
 * Plain fields, so the line reads the same whatever was thrown (an Error, a string, anything).
 * No prototype: pino's `err` serializer then names the type after `name`, not after `Object`.
 */
function describe(reason: unknown): { name: string; code: string | null; message: string; stack?: string } {
  const fields =
    reason instanceof Error
      ? { name: reason.name, code: (reason as { code?: unknown }).code ?? null, message: reason.message, stack: reason.stack }
      : { name: typeof reason, code: null, message: String(reason) };
  return Object.assign(Object.create(null), { ...fields, code: fields.code == null ? null : String(fields.code) });
}
