/**
 * HTTP model server: `POST /predict`, `GET /health`, `GET /metrics`, with bearer-token auth,
 * request limits, Prometheus metrics and hot swap of the model when its alias moves
 * (see hot-swap.ts). The predictor is injected, so this file knows nothing of ONNX.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import cors from '@fastify/cors';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import secureJson from 'secure-json-parse';
import { HotSwapModel } from './hot-swap.ts';
import { bearerMatches, tokenProblem } from './auth.ts';
import { checkCorsOrigins, corsAnswerHeaders, corsOptions } from './cors.ts';
import { clientErrorHandler, errorsToStderr, newRequestId, REQUEST_TIMEOUT_MS } from './http-limits.ts';
import { bodyEncodingProblem } from './body-encoding.ts';
import { describeValidation } from './validation-message.ts';
import { Counter, Gauge, Histogram, MetricsRegistry, PROMETHEUS_CONTENT_TYPE } from './prometheus.ts';
import { ApiError, openAiError, registerOpenAiRoutes, type GenerationLimits } from './openai.ts';
import { retryAfterSpread, type GenerationGate } from './gate.ts';
import { isTextGenerator, type Prediction, type Predictor, type ResolveCurrent } from './types.ts';
import { UnfitTextError } from './worker-pool.ts';
import { InputError } from '../errors.ts';

export interface ServeOptions {
  resolveCurrent: ResolveCurrent;
  /** Required on every route but /health. Use a long random string. */
  token: string;
  /** How often to check whether the served alias moved. Default 5000 ms. */
  pollMs?: number;
  /** Most texts per request. Default 64. */
  maxBatch?: number;
  /** Most characters (code points) per text. Default 8192. */
  maxChars?: number;
  /** Largest request body in bytes; larger gets 413. Default 1 MiB. */
  bodyLimit?: number;
  /** Fastify logger: off by default (tests); `tempered serve` logs errors (a 500's cause) to stderr. */
  logger?: boolean | 'errors';
  /** Told about swaps and failed swaps, e.g. to write `serve.swapped` audit records. */
  /** Runs before the new model is served; if it throws, the old model keeps serving and it is retried. */
  onSwap?: (from: string, to: string) => unknown;
  onError?: (err: unknown, phase: 'resolve' | 'load' | 'notify' | 'close', detail?: { wanted?: string; retryInMs?: number }) => void;
  /** Limits of the text-generation routes (prompt length, max_tokens, concurrent and queued generations). */
  generation?: GenerationLimits;
  /**
   * How long a stop keeps serving first, with /health at 503 `draining` and every answer closing its connection, so a
   * load balancer takes this replica out and its keep-alive clients move on before the listener closes (they lost
   * requests to a listener that closed at once). Default 0.
   */
  drainMs?: number;
  /**
   * Origins of browser apps allowed to call the server (CORS, cors.ts), e.g. `https://app.example.com`; none by
   * default, and no CORS headers then. `*` is refused (the server always takes a token).
   */
  corsOrigins?: string[];
}

export interface ModelServer {
  app: FastifyInstance;
  model: HotSwapModel;
  /** Admission of generations (running and queued counts). */
  gate: GenerationGate;
  /** Starts listening; returns the base URL, e.g. http://127.0.0.1:43121. */
  listen(port?: number, host?: string): Promise<string>;
  /**
   * Stops accepting requests, lets in-flight ones finish (generations for up to `stopGraceMs`), then closes the
   * predictor.
   */
  close(): Promise<void>;
  /** Ends the generations running now (a second Ctrl-C), their clients told so; close() then finishes at once. */
  halt(): void;
}

/**
 * How long a stop lets the generations running go on by default: within the 10 s `docker stop` waits before its
 * kill (Kubernetes waits 30), so clients hear why their answer ended rather than lose the connection.
 */
export const DEFAULT_STOP_GRACE_MS = 8_000;

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** Errors in the OpenAI shape (`message`, `type`, `param`, `code`), which every route shares. */
function errorBody(code: string, message: string, status = 400) {
  return openAiError(status, code, message);
}

function positiveInt(v: number, field: string): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new InputError(`must be a positive integer, got ${v}`, { where: `serve.${field}` });
  return v;
}

/**
 * The OpenAI `code` of an error answer (every error this server writes is an `openAiError` object), read from the
 * object before it is serialized; undefined for a payload of another shape (a plugin's own, a string).
 */
function errorCode(payload: unknown): string | undefined {
  const code = (payload as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Builds the server and loads the first model (throws if it cannot be loaded). */
export async function createModelServer(opts: ServeOptions): Promise<ModelServer> {
  if (typeof opts.token !== 'string' || opts.token.length < 8) {
    throw new InputError('a bearer token of at least 8 characters is required', {
      where: 'serve.token',
      hint: 'set TEMPERED_SERVE_TOKEN to a long random string',
    });
  }
  const unusable = tokenProblem(opts.token);
  if (unusable)
    throw new InputError(`the bearer token cannot be used: ${unusable}`, {
      where: 'serve.token',
      hint: 'set TEMPERED_SERVE_TOKEN to a long random string of letters, digits and -._~+/ (e.g. `openssl rand -hex 32`)',
    });
  const maxBatch = positiveInt(opts.maxBatch ?? 64, 'maxBatch');
  const maxChars = positiveInt(opts.maxChars ?? 8192, 'maxChars');
  const bodyLimit = positiveInt(opts.bodyLimit ?? 1024 * 1024, 'bodyLimit');
  const pollMs = positiveInt(opts.pollMs ?? 5000, 'pollMs');
  const corsOrigins = checkCorsOrigins(opts.corsOrigins ?? []);

  const metrics = new MetricsRegistry();
  const requests = metrics.add(new Counter('tempered_http_requests_total', 'HTTP requests by route and status code.'));
  const latency = metrics.add(new Histogram('tempered_http_request_duration_seconds', 'HTTP request latency by route.', LATENCY_BUCKETS));
  // Every error answer by status and its OpenAI `code`, those fastify's hooks never see included (bytes Node's parser
  // refused, 408, 431, a path that is not valid percent-encoding): a client sending bad JSON, or a scanner's 404s, show
  // here apart from the model's own failures.
  const refused = metrics.add(
    new Counter(
      'tempered_http_errors_total',
      "Error answers by status and reason (the answer's error code), those refused before any route included.",
    ),
  );
  /** An answer no fastify hook sees (Node's parser refused the request, or fastify did before routing it). */
  const countUnparsed = (status: number, reason: string) => {
    refused.inc({ status: String(status), reason });
    requests.inc({ route: 'unparsed', status: String(status) });
  };
  const predicted = metrics.add(new Counter('tempered_predictions_total', 'Texts classified, by model.'));
  const generated = metrics.add(new Counter('tempered_generated_tokens_total', 'Tokens generated, by model.'));
  const cachedPromptTokens = metrics.add(
    new Counter(
      'tempered_cached_prompt_tokens_total',
      "Prompt tokens a generation thread's kept cache held (not computed again), by model.",
    ),
  );
  const swapFailures = metrics.add(
    new Counter('tempered_model_swap_failures_total', 'Failed checks or loads of a new model version.', true),
  );

  const model = new HotSwapModel(opts.resolveCurrent, {
    pollMs,
    onSwap: opts.onSwap,
    onError: (e, phase, detail) => {
      if (phase !== 'close') swapFailures.inc();
      opts.onError?.(e, phase, detail);
    },
  });
  await model.start();
  const started = process.hrtime.bigint();
  const uptime = () => Number(process.hrtime.bigint() - started) / 1e9;

  metrics.add(
    new Gauge('tempered_model_info', 'The model version being served (value is always 1).', () => [
      { labels: { model: model.current.id, key: model.key ?? '' }, value: 1 },
    ]),
  );
  metrics.add(
    new Gauge('tempered_model_swaps_total', 'Times the served model was replaced since start.', () => [{ value: model.swaps }], 'counter'),
  );
  // Classifiers served through worker-pool.ts report their queue; other models show no series.
  const pool = (pick: 'queued' | 'inflight' | 'batches' | 'rejected') => () => {
    // A language model's generation pool has stats of its own, without these: no series, not `undefined`.
    const st = (model.current as { stats?: Predictor['stats'] }).stats?.();
    const value = st?.[pick];
    return typeof value === 'number' ? [{ value }] : [];
  };
  metrics.add(new Gauge('tempered_inference_queued_texts', 'Texts waiting for an inference thread.', pool('queued')));
  metrics.add(new Gauge('tempered_inference_inflight_batches', 'Batches onnxruntime is running now.', pool('inflight')));
  metrics.add(
    new Gauge(
      'tempered_inference_batches_total',
      "Batches run by the served model's pool (concurrent requests are batched together); starts again at 0 with each swap.",
      pool('batches'),
      'counter',
    ),
  );
  metrics.add(
    new Gauge(
      'tempered_inference_rejected_total',
      "Requests refused with 429 because the inference queue was full, by the served model's pool; starts again at 0 with each swap.",
      pool('rejected'),
      'counter',
    ),
  );
  metrics.add(
    new Gauge('tempered_uptime_seconds', 'Seconds since the server started.', () => [{ value: Math.round(uptime() * 1000) / 1000 }]),
  );

  const unauthorized = (reply: FastifyReply) =>
    // Closed after the answer: whatever body it was sending is not read.
    reply
      .header('www-authenticate', 'Bearer')
      .header('connection', 'close')
      .code(401)
      .send(errorBody('unauthorized', 'missing or wrong bearer token: send Authorization: Bearer <token>', 401));
  const app = Fastify({
    ...(opts.logger === 'errors' ? { loggerInstance: errorsToStderr() } : { logger: opts.logger ?? false }),
    bodyLimit,
    requestTimeout: REQUEST_TIMEOUT_MS,
    clientErrorHandler: clientErrorHandler(countUnparsed, (socket) => {
      // The request Node was reading when its parser failed, if its headers were read: a body that did not arrive
      // whole in time, or chunked framing that is not HTTP. Its Origin is known, so an allowed page can read why;
      // where the headers themselves failed (431, bytes that are not HTTP, a request that never sent them whole) no
      // Origin was read, and none of an earlier request on the connection is taken for it.
      const conn = connections.get(socket);
      const current = conn !== undefined && !conn.latest.req.complete ? conn.latest : undefined;
      // The answers to earlier requests on the connection (pipelined) not yet written whole: the refusal goes after them.
      const earlier = [...(conn?.unanswered ?? [])].filter((res) => res !== current?.res);
      return {
        headers: current ? corsAnswerHeaders(corsOrigins, current.req.headers.origin) : {},
        answered: current?.res.headersSent ?? false,
        earlier: earlier.length === 0 ? undefined : Promise.all(earlier.map((res) => new Promise((done) => res.once('close', done)))),
      };
    }),
    // OpenAI's shape of request id; every answer carries it in `x-request-id` (the openai SDK's `_request_id`,
    // `APIError.requestID`), and the log's lines about the request name it.
    genReqId: newRequestId,
    // A path fastify cannot decode (`GET /v1/models/%E0%A4%A`) is answered before any hook runs: without this, in
    // fastify's own shape, with no request id, and to a client with no token too.
    frameworkErrors: (err, req, genericReply) => {
      const reply = genericReply as unknown as FastifyReply;
      reply.header('x-request-id', req.id).headers(corsAnswerHeaders(corsOrigins, req.headers.origin));
      // No hook runs for this answer: it is counted here.
      if (!bearerMatches(req.headers.authorization, opts.token)) {
        countUnparsed(401, 'unauthorized');
        return unauthorized(reply);
      }
      const status = err.code === 'FST_ERR_BAD_URL' ? 400 : (err.statusCode ?? 500);
      countUnparsed(status, status < 500 ? 'invalid_request' : 'internal');
      const message =
        err.code === 'FST_ERR_BAD_URL'
          ? `the path ${JSON.stringify(req.url.split('?')[0])} is not valid percent-encoding (a "%" must begin a UTF-8 byte as two hex digits); encode a model's name with encodeURIComponent`
          : err.message;
      return reply.code(status).send(errorBody(status < 500 ? 'invalid_request' : 'internal', message, status));
    },
    // Strict validation: no type coercion, no silently dropped fields.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true, allowUnionTypes: true } },
  });

  // Each connection's latest request, for what Node's parser refuses in its body (clientErrorHandler above), and the
  // answers on it not yet written whole.
  const connections = new WeakMap<Socket, { latest: { req: IncomingMessage; res: ServerResponse }; unanswered: Set<ServerResponse> }>();
  app.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    let conn = connections.get(req.socket);
    if (conn) conn.latest = { req, res };
    else connections.set(req.socket, (conn = { latest: { req, res }, unanswered: new Set() }));
    const open = conn.unanswered;
    open.add(res);
    const done = () => open.delete(res);
    res.once('finish', done);
    res.once('close', done);
  });
  const startTimes = new WeakMap<object, bigint>();
  // A client that went away before its answer (a generation it gave up on, streamed or not) reached no onResponse and
  // was not counted at all; it is counted as 499, nginx's "client closed request", so abandoned requests show.
  const record = (req: FastifyRequest, status: string) => {
    const route = req.routeOptions.url ?? 'unmatched';
    requests.inc({ route, status });
    const t0 = startTimes.get(req);
    if (t0 !== undefined) latency.observe({ route }, Number(process.hrtime.bigint() - t0) / 1e9);
  };
  // Before CORS's hook, which answers a preflight itself: that answer carries its request id and is timed too.
  app.addHook('onRequest', async (req, reply) => {
    startTimes.set(req, process.hrtime.bigint());
    // On the raw response, so a stream's own writeHead (a hijacked reply) carries it too.
    reply.raw.setHeader('x-request-id', req.id);
    reply.raw.once('close', () => {
      if (!reply.raw.writableFinished) record(req, '499');
    });
  });
  // Before the token check: a browser's preflight comes without the Authorization header it asks to send.
  if (corsOrigins.length > 0) await app.register(cors, corsOptions(corsOrigins));
  app.addHook('onRequest', async (req, reply) => {
    if (req.url === '/health' || req.url.startsWith('/health?')) return;
    if (!bearerMatches(req.headers.authorization, opts.token)) return unauthorized(reply);
  });
  // While shutting down, answer in-flight requests with `Connection: close`: otherwise their
  // keep-alive sockets would hold app.close() open until the keep-alive timeout.
  let closing = false;
  let draining = false;
  // A second stop ends the drain at once.
  const drainCut = new AbortController();
  let closed: Promise<void> | undefined;
  // An error answer's reason is its OpenAI `code`, taken from the error object where the route or handler made it
  // (before serialization), not parsed back out of the body: a body over 64 KiB (a refused field's name can be that
  // long) was counted as `other`, and every error's body was parsed a second time. `other` for a payload of another shape.
  const reasons = new WeakMap<FastifyReply, string>();
  app.addHook('preSerialization', async (_req, reply, payload) => {
    const code = reply.statusCode >= 400 ? errorCode(payload) : undefined;
    if (code !== undefined) reasons.set(reply, code);
    return payload;
  });
  app.addHook('onSend', async (_req, reply) => {
    if (closing || draining) reply.header('connection', 'close');
    if (reply.statusCode >= 400) refused.inc({ status: String(reply.statusCode), reason: reasons.get(reply) ?? 'other' });
  });
  app.addHook('onResponse', async (req, reply) => {
    if (closing) setImmediate(() => app.server.closeIdleConnections());
    record(req, String(reply.statusCode));
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      const { message, param } = describeValidation(err.validation);
      return reply.code(400).send(openAiError(400, 'invalid_request', message, param));
    }
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return reply.code(413).send(errorBody('body_too_large', `request body exceeds ${bodyLimit} bytes`, 413));
    if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
      return reply.code(415).send(errorBody('unsupported_media_type', 'send Content-Type: application/json', 415));
    if (err.code === 'unsupported_content_encoding' || err.code === 'unsupported_charset')
      return reply.code(415).send(errorBody(err.code, err.message, 415));
    if (err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return reply.code(400).send(errorBody('malformed_json', 'request body is empty'));
    // secure-json-parse refuses these keys (they could reach an object's prototype); the body is
    // valid JSON, so saying "not valid JSON" would send the client looking for a syntax error.
    if (err instanceof SyntaxError && /forbidden prototype property/.test(err.message))
      return reply
        .code(400)
        .send(
          errorBody(
            'invalid_request',
            'request body has a "__proto__" key, or a "constructor" object with a "prototype" key: this server refuses them; leave them out',
          ),
        );
    if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY')
      return reply.code(400).send(errorBody('malformed_json', `request body is not valid JSON: ${err.message}`));
    if (err.code === 'overloaded') {
      // A classifier's batch takes well under a second; spread as the generation gate's (gate.ts), for the same reason.
      reply.header('retry-after', String(retryAfterSpread(1, req.id)));
      return reply.code(429).send(errorBody('server_busy', err.message, 429));
    }
    if (err.statusCode && err.statusCode < 500)
      return reply.code(err.statusCode).send(errorBody('bad_request', err.message, err.statusCode));
    req.log.error(err);
    // The openai SDK retries a 5xx twice by default, and a failure of the model or of this server is most often the
    // same again for the same request: three failed generations for one. `x-should-retry: false` (the SDK's own
    // header) stops that; 429 and 503 (busy, shutting down) go without it, since waiting or another replica helps.
    return reply
      .code(500)
      .header('x-should-retry', 'false')
      .send(errorBody('internal', `the server failed on this request; its log names the cause under request ${req.id}`, 500));
  });
  // fastify's own JSON parser answers every failure "Body is not valid JSON": this one keeps
  // JSON.parse's word of where, and tells a refused "__proto__" key (valid JSON) apart from it.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const encoding = bodyEncodingProblem(req.headers);
    if (encoding) return done(Object.assign(new Error(encoding.message), { code: encoding.code, statusCode: 415 }));
    if (body.length === 0) return done(Object.assign(new Error('request body is empty'), { code: 'FST_ERR_CTP_EMPTY_JSON_BODY' }));
    try {
      done(null, secureJson.parse(body as string, { protoAction: 'error', constructorAction: 'error' }));
    } catch (e) {
      done(e as Error);
    }
  });
  // Only JSON is accepted; without this, fastify would parse text/plain and answer a vaguer 400.
  app.removeContentTypeParser('text/plain');
  // A known path asked with another method is 405 with Allow (RFC 9110), not "no route": `GET /predict` is a wrong method.
  const methodsOf = new Map<string, Set<string>>();
  app.addHook('onRoute', (r) => {
    const methods = methodsOf.get(r.url) ?? new Set<string>();
    for (const m of [r.method].flat()) methods.add(m);
    methodsOf.set(r.url, methods);
  });
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allowed = methodsOf.get(path);
    if (allowed) {
      const allow = [...allowed].sort().join(', ');
      return reply
        .code(405)
        .header('allow', allow)
        .send(errorBody('method_not_allowed', `${req.method} is not allowed on ${path}; use ${allow}`, 405));
    }
    const routes = isTextGenerator(model.current)
      ? 'POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{model}'
      : 'POST /predict';
    return reply
      .code(404)
      .send(errorBody('not_found', `no route ${req.method} ${req.url}; this server has ${routes}, GET /health and GET /metrics`, 404));
  });

  // Behind its alias, a replica still answers 200 (with the version it has): were every replica behind for one cause (a
  // corrupt artifact in the store), a load balancer that took them out would end a service that still works. The
  // status and the reason are for monitoring to alert on.
  app.get('/health', async (_req, reply) => {
    // A load balancer's health check takes the replica out while it drains; it still answers what reaches it.
    if (draining) reply.code(503);
    return {
      status: draining ? 'draining' : model.behind ? 'behind' : 'ok',
      model: model.current.id,
      uptimeSeconds: Math.round(uptime() * 1000) / 1000,
      swaps: model.swaps,
      ...(model.behind ? { behind: model.behind } : {}),
    };
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', PROMETHEUS_CONTENT_TYPE);
    return metrics.render();
  });

  app.post<{ Body: { inputs: string[] } }>(
    '/predict',
    {
      schema: {
        body: {
          type: 'object',
          required: ['inputs'],
          additionalProperties: false,
          properties: {
            inputs: { type: 'array', minItems: 1, maxItems: maxBatch, items: { type: 'string', maxLength: maxChars } },
          },
        },
      },
    },
    async (req, reply) => {
      const lease = model.acquire();
      try {
        const { inputs } = req.body;
        const p = lease.predictor;
        // `inputs` is what a classifier takes; a language model takes `messages` or `prompt` on its own routes.
        if (isTextGenerator(p))
          return reply
            .code(400)
            .send(
              openAiError(
                400,
                'model_not_supported',
                `${p.id} is a language model; use POST /v1/chat/completions or /v1/completions`,
                'inputs',
              ),
            );
        let predictions: Prediction[];
        try {
          predictions = await p.predict(inputs);
        } catch (e) {
          if (!(e instanceof InputError)) throw e;
          // A text the model cannot take (its token ids, type ids or length past the model's embedding rows, as when
          // the folder's tokenizer is another model's): this request's fault to its client, the model's to the
          // operator. The client is told which input, and not the server's paths (the error's `where` names the
          // folder). Logged as an error, one line: `tempered serve`'s log writes nothing below that, and a model that
          // cannot take its own tokenizer's ids is the operator's to fix.
          req.log.error(`a text of this request is one the model cannot take: ${e.message}${e.hint ? ` (${e.hint})` : ''}`);
          if (e instanceof UnfitTextError) {
            const others = e.indices.filter((i) => i !== e.index).map((i) => `inputs[${i}]`);
            const more = others.length > 0 ? `; the model cannot take ${others.join(', ')} either` : '';
            const param = `inputs[${e.index}]`;
            return reply.code(400).send(openAiError(400, 'invalid_request', `${param}: ${e.reason}${more}`, param));
          }
          return reply.code(400).send(openAiError(400, 'invalid_request', `inputs: ${e.bareMessage}`, 'inputs'));
        }
        if (!Array.isArray(predictions) || predictions.length !== inputs.length) {
          throw new Error(
            `predictor ${lease.predictor.id} returned ${Array.isArray(predictions) ? predictions.length : 'no'} predictions for ${inputs.length} inputs`,
          );
        }
        predicted.inc({ model: lease.predictor.id }, inputs.length);
        return { model: lease.predictor.id, predictions };
      } finally {
        lease.release();
      }
    },
  );

  const gate = registerOpenAiRoutes(app, {
    model,
    limits: opts.generation,
    tokens: generated,
    cachedPromptTokens,
    // Its answer was 200 (its headers went before the error); counted by the error its event names.
    streamError: (status, code) => refused.inc({ status: String(status), reason: code }),
  });
  metrics.add(new Gauge('tempered_generations_running', 'Generations running now.', () => [{ value: gate.active }]));
  metrics.add(new Gauge('tempered_generations_queued', 'Generations waiting for a slot.', () => [{ value: gate.queued }]));

  const halted = (when: string) =>
    gate.halt(
      new ApiError(
        503,
        'server_shutting_down',
        `the server is shutting down and ended this generation ${when}; retry in a moment (here once it is back, or elsewhere)`,
      ),
    );
  return {
    app,
    model,
    gate,
    async listen(port = 0, host = '127.0.0.1') {
      await app.listen({ port, host });
      const addr = app.server.address();
      if (addr === null || typeof addr === 'string') throw new Error(`unexpected server address ${String(addr)}`);
      return `http://${host.includes(':') ? `[${host}]` : host}:${addr.port}`;
    },
    close() {
      // Once: a second call waits for the first (a test's cleanup after its own stop, a signal after a close).
      return (closed ??= closeOnce());
    },
    halt: () => {
      drainCut.abort();
      halted('at once, as the server was told twice to stop');
    },
  };

  async function closeOnce(): Promise<void> {
    if ((opts.drainMs ?? 0) > 0 && !drainCut.signal.aborted) {
      draining = true;
      await sleep(opts.drainMs, undefined, { signal: drainCut.signal }).catch(() => undefined);
    }
    closing = true;
    // Requests still waiting for a generation slot would hold the stop for minutes: they are told to go elsewhere.
    gate.drain(
      new ApiError(503, 'server_shutting_down', 'the server is shutting down; retry in a moment (here once it is back, or elsewhere)'),
    );
    // The generations running may finish within the grace; then they end, their clients told why.
    const graceMs = opts.generation?.stopGraceMs ?? DEFAULT_STOP_GRACE_MS;
    const halt = setTimeout(() => halted(`after ${graceMs / 1000} s`), graceMs);
    try {
      await app.close();
    } finally {
      clearTimeout(halt);
    }
    await model.stop();
  }
}
