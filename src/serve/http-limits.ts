import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyBaseLogger } from 'fastify';
import { openAiError } from './openai.ts';

/**
 * Longest a client may take to send a whole request (Node checks every 30 s, so one that stalls is
 * cut off within a minute and a half: 83–84 s measured, src/serve/README.md); fastify's default is no
 * limit, and a body that never ended held its connection for ever. Answers, a stream of tokens say,
 * are not limited by it.
 */
export const REQUEST_TIMEOUT_MS = 30_000;

/** A request's id, in OpenAI's shape: its answer's `x-request-id` (the openai SDK's `_request_id`). */
export function newRequestId(): string {
  return `req_${randomUUID().replace(/-/g, '')}`;
}

/**
 * A fastify logger that writes errors only, as text on stderr: a server's log is for its failures (the
 * cause of a 500, which the client is told to look up there), not a JSON line per request.
 */
export function errorsToStderr(write: (line: string) => void = (l) => process.stderr.write(l), reqId?: string): FastifyBaseLogger {
  const quiet = () => {};
  // A request's lines name its id, which its client got in `x-request-id` (the openai SDK's `_request_id`) and,
  // for a 500, in the error's message: the one line of this log that is about its failure.
  const request = reqId === undefined ? '' : `request ${reqId}`;
  const log = (obj: unknown, msg?: string) => {
    const err = obj instanceof Error ? obj : (obj as { err?: unknown } | null)?.err;
    const what =
      err instanceof Error ? (err.stack ?? err.message) : typeof obj === 'string' ? obj : msg !== undefined ? '' : JSON.stringify(obj);
    write(`${new Date().toISOString()} ${[request, typeof obj === 'string' ? '' : msg, what].filter(Boolean).join(': ')}\n`);
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
    child: (bindings: { reqId?: unknown }) => (bindings?.reqId === undefined ? logger : errorsToStderr(write, String(bindings.reqId))),
  };
  return logger as unknown as FastifyBaseLogger;
}

/**
 * Answers what Node's HTTP parser refuses before fastify sees a request (fastify's `clientErrorHandler`): a request
 * that did not arrive in time, headers too large, bytes that are not HTTP. Fastify's own answer is a body of its own
 * shape; clients of this server read OpenAI's, `{ error: { message, type, param, code } }`, on every answer.
 * `answered` is told each status and code (no hook of fastify's sees these requests, so /metrics counts them here).
 */
export function clientErrorHandler(
  answered: (status: number, code: string) => void = () => {},
  headersFor: (socket: Socket) => ClientErrorContext = () => ({ headers: {}, answered: false }),
) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => answerClientError(err, socket, answered, headersFor);
}

/** What the server knows of the connection whose request Node's parser refused. */
export interface ClientErrorContext {
  /** Headers for the refusal (CORS, for the refused request's Origin). */
  headers: Record<string, string>;
  /** The refused request was answered already (a 401 sent while its body still came): no second answer. */
  answered: boolean;
  /** Settles once the answers to earlier requests on the connection (pipelined) are written whole; none: undefined. */
  earlier?: Promise<unknown>;
}

/** Connections whose refusal waits for the answers before it: Node's parser may report its error again meanwhile. */
const waiting = new WeakSet<Socket>();

function answerClientError(
  err: NodeJS.ErrnoException,
  socket: Socket,
  answered: (status: number, code: string) => void,
  headersFor: (socket: Socket) => ClientErrorContext,
): void {
  // A connection reset has nobody left to answer; a request already answered (a 401 sent while its body still came)
  // gets no second answer on its connection, which the client would read as the next response's bytes.
  if (err.code === 'ECONNRESET' || socket.destroyed) {
    socket.destroy();
    return;
  }
  if (waiting.has(socket)) return;
  const more = headersFor(socket);
  if (more.answered) {
    socket.destroy();
    return;
  }
  // Answers go out in the order of their requests: a refusal written while an earlier request (pipelined on the
  // connection) still waits for its answer would be read as that answer. So the refusal waits until those answers are
  // written whole, then goes out: closing at once lost them too (the earlier request's work done, its answer never sent).
  if (more.earlier) {
    waiting.add(socket);
    // Nothing more is read from a connection whose request could not be parsed.
    socket.pause();
    void more.earlier.then(() => {
      waiting.delete(socket);
      answerClientError(err, socket, answered, headersFor);
    });
    return;
  }
  // A connection that never sent a byte made no request: Node's check times it out as it does a stalled one, but a 408
  // on it was counted in /metrics as an error no client met. An HTTP client's pool opens such connections: undici's,
  // for a request aborted before it was written (24 requests at once, a few aborted: one 408 a run against SmolLM2).
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && socket.bytesRead === 0) {
    socket.destroy();
    return;
  }
  const [status, code, message] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [408, 'request_timeout', `the request did not arrive whole within ${REQUEST_TIMEOUT_MS / 1000} s`]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [431, 'headers_too_large', 'the request headers are larger than the server takes (16 KiB)']
        : [400, 'malformed_request', `the request is not HTTP this server can read (${err.code ?? 'parse error'})`];
  const body = JSON.stringify(openAiError(status, code, message));
  answered(status, code);
  const extra = Object.entries(more.headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  if (socket.writable)
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nX-Request-Id: ${newRequestId()}\r\n${extra}Connection: close\r\n\r\n${body}`,
    );
  socket.destroy();
}
