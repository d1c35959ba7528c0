import type { FastifyBaseLogger } from 'fastify';

/**
 * Longest a client may take to send a whole request (Node checks every 30 s, so one that stalls is
 * cut off within a minute or so); fastify's default is no limit, and a body that never ended held
 * its connection for ever. Answers, a stream of tokens say, are not limited by it.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

/**
 * A fastify logger that writes errors only, as text on stderr: a server's log is for its failures (the
 * cause of a 500, which the client is told to look up there), not a JSON line per request.
 */
export function errorsToStderr(write: (line: string) => void = (l) => process.stderr.write(l)): FastifyBaseLogger {
  const quiet = () => {};
  const log = (obj: unknown, msg?: string) => {
    const err = obj instanceof Error ? obj : (obj as { err?: unknown } | null)?.err;
    const what =
      err instanceof Error ? (err.stack ?? err.message) : typeof obj === 'string' ? obj : msg !== undefined ? '' : JSON.stringify(obj);
    write(`${new Date().toISOString()} ${[typeof obj === 'string' ? '' : msg, what].filter(Boolean).join(': ')}\n`);
  };
  const logger = {
    level: 'error',
    fatal: log,
    error: log,
    warn: quiet,
    info: quiet,
    debug: quiet,
    trace: quiet,
    silent: quiet,
    child: () => logger,
  };
  return logger as unknown as FastifyBaseLogger;
}
