/**
 * OpenAI-compatible text generation: `POST /v1/chat/completions`, `POST /v1/completions` (with
 * `stream: true` as server-sent events) and `GET /v1/models`, in the wire format of the OpenAI API so
 * its SDKs and other clients work unchanged. Generations go through a bounded gate (429 when full), hold
 * a lease on the model they started with (hot swap never breaks one), and stop when the client leaves.
 */
import { randomInt, randomUUID } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { GenerateOptions, GenerateResult, TokenEvent } from '../generate/generate.ts';
import { InputError } from '../errors.ts';
import { MAX_CHARS_PER_TOKEN } from '../generate/text-generator.ts';
import { REPETITION_PENALTY } from '../generate/sampling.ts';
import { GenerationGate } from './gate.ts';
import type { HotSwapModel } from './hot-swap.ts';
import type { Counter } from './prometheus.ts';
import { isTextGenerator, type ChatMessage, type TextGenerator } from './types.ts';

export interface GenerationLimits {
  /** Most prompt tokens (after the chat template); longer gets 400 context_length_exceeded. Default: the model's context. */
  maxPromptTokens?: number;
  /** Largest `max_tokens` a request may ask for. Default 1024. */
  maxTokens?: number;
  /** `max_tokens` when the request gives none (capped by what the context leaves). Default 256. */
  defaultMaxTokens?: number;
  /** Generations running at once. Default 1 (a CPU generation already uses every core). */
  maxConcurrent?: number;
  /** Generations waiting for a slot; beyond that requests get 429. Default 16. */
  maxQueue?: number;
  /** Most sequences per request (`n` × prompts). Default 8. */
  maxChoices?: number;
  /**
   * Most tokens one request may hold at once, prompt and answer of every sequence together (what its KV cache and
   * prompt pass grow with). Default: twice the model's context, so one sequence always fits, and n = 8 does with
   * 2,048 tokens each at SmolLM2's 8,192.
   */
  maxRequestTokens?: number;
  /**
   * When the server stops, how long the generations running may go on; then they end, and their clients
   * get 503 `server_shutting_down` (as an error event where streaming). Default 8 s (DEFAULT_STOP_GRACE_MS in
   * server.ts): within the 10 s `docker stop` waits before its kill, which would cut answers off unsaid.
   */
  stopGraceMs?: number;
  /**
   * Longest a stream's write may wait for its client to read (a slow reader slows its generation): past it the client
   * is taken as gone and the generation stops, its slot free. Without it, one client that stopped reading held a
   * generation slot for ever (at the default of one, the whole server). Default 30 s (STREAM_STALL_MS).
   */
  streamStallMs?: number;
}

/** How long a stream's write waits for its client to read before the client is taken as gone. */
export const STREAM_STALL_MS = 30_000;

/** An error in the OpenAI shape: `{ error: { message, type, param, code } }`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

function errorType(status: number): string {
  return status === 401
    ? 'authentication_error'
    : status === 404
      ? 'not_found_error'
      : status === 429
        ? 'rate_limit_error'
        : status >= 500
          ? 'server_error'
          : 'invalid_request_error';
}

export function openAiError(status: number, code: string, message: string, param: string | null = null) {
  return { error: { message, type: errorType(status), param, code } };
}

const samplingProps = {
  model: { type: 'string' },
  max_tokens: { type: ['integer', 'null'], minimum: 1 },
  temperature: { type: ['number', 'null'], minimum: 0, maximum: 2 },
  top_p: { type: ['number', 'null'], exclusiveMinimum: 0, maximum: 1 },
  n: { type: ['integer', 'null'], minimum: 1 },
  stream: { type: ['boolean', 'null'] },
  // `include_obfuscation: false` is what OpenAI's docs tell bandwidth-minded clients to send; this server pads no chunk either way.
  stream_options: {
    type: ['object', 'null'],
    additionalProperties: false,
    properties: { include_usage: { type: 'boolean' }, include_obfuscation: { type: 'boolean' } },
  },
  stop: { anyOf: [{ type: 'string' }, { type: 'array', maxItems: 4, items: { type: 'string' } }, { type: 'null' }] },
  seed: { type: ['integer', 'null'] },
  user: { type: 'string' },
  // Which requests may share kept prompt caches (with `user`; see TextGenerator.generate's cacheScope).
  prompt_cache_key: { type: 'string' },
  // OpenAI's successor to `user` for naming an app's end user (the openai SDK marks `user` deprecated): it scopes
  // the kept cache as `user` does, so apps that moved to it keep their users' caches apart.
  safety_identifier: { type: ['string', 'null'] },
  // Accepted for compatibility at their defaults only (see checkUnsupported).
  presence_penalty: { type: ['number', 'null'] },
  frequency_penalty: { type: ['number', 'null'] },
  logprobs: { type: ['boolean', 'integer', 'null'] },
  // Extensions other OpenAI-compatible servers (vLLM) accept too.
  top_k: { type: ['integer', 'null'], minimum: 0 },
  // The library's bounds (see REPETITION_PENALTY), refused here naming the API's field.
  repetition_penalty: { type: ['number', 'null'], minimum: REPETITION_PENALTY.min, maximum: REPETITION_PENALTY.max },
} as const;

/**
 * Fields of OpenAI's API for what this server does not do (tool calling, structured output, token logprobs, stored
 * completions, audio, reasoning): refused as `unsupported_parameter` saying what they ask for, not as unknown fields.
 * Each is taken at the value that asks for nothing, which is what libraries and frameworks send when the app did not
 * ask (`response_format: {type: "text"}`, `tools: []`, `store: false`, `parallel_tool_calls`).
 */
/** Tools or functions given as none or an empty list. */
const noList = (v: unknown) => isNone(v) || (Array.isArray(v) && v.length === 0);
/** A tool or function choice that forces no call. */
const noCall = (v: unknown) => isNone(v) || v === 'none' || v === 'auto';

const UNSUPPORTED_FIELDS: Record<string, { idle: (v: unknown) => boolean; why: string; chatOnly?: true }> = {
  tools: {
    idle: noList,
    why: 'this server does not support tool (function) calling; leave tools out',
    chatOnly: true,
  },
  tool_choice: {
    idle: noCall,
    why: 'this server does not support tool (function) calling; leave tool_choice out',
    chatOnly: true,
  },
  functions: {
    idle: noList,
    why: 'this server does not support function calling; leave functions out',
    chatOnly: true,
  },
  function_call: {
    idle: noCall,
    why: 'this server does not support function calling; leave function_call out',
    chatOnly: true,
  },
  // Says how tool calls may be made; with no tools it asks for nothing, whatever its value.
  parallel_tool_calls: {
    idle: (v) => isNone(v) || typeof v === 'boolean',
    why: 'must be true or false (it has no effect: this server does not support tool calling)',
    chatOnly: true,
  },
  response_format: {
    idle: (v) => isNone(v) || (isObject(v) && v.type === 'text' && Object.keys(v).length === 1),
    why: 'this server does not support structured output (JSON mode, JSON schemas), only {"type": "text"}: ask for JSON in the prompt and parse the answer yourself',
    chatOnly: true,
  },
  top_logprobs: { idle: (v) => isNone(v) || v === 0, why: 'this server does not return logprobs; leave top_logprobs out', chatOnly: true },
  logit_bias: {
    idle: (v) => isNone(v) || (isObject(v) && Object.keys(v).length === 0),
    why: 'this server does not support logit_bias; leave it out',
  },
  store: { idle: (v) => isNone(v) || v === false, why: 'this server stores no completions; leave store out or false', chatOnly: true },
  metadata: {
    idle: (v) => isNone(v) || (isObject(v) && Object.keys(v).length === 0),
    why: 'metadata labels stored completions, and this server stores none; leave it out',
    chatOnly: true,
  },
  service_tier: {
    idle: (v) => isNone(v) || v === 'auto' || v === 'default',
    why: 'this server has one service tier; leave it out',
    chatOnly: true,
  },
  modalities: {
    idle: (v) => isNone(v) || (Array.isArray(v) && v.length === 1 && v[0] === 'text'),
    why: 'this server answers in text only; leave modalities out',
    chatOnly: true,
  },
  audio: { idle: isNone, why: 'this server answers in text only; leave audio out', chatOnly: true },
  prediction: { idle: isNone, why: 'this server does not support predicted outputs; leave prediction out', chatOnly: true },
  reasoning_effort: { idle: isNone, why: 'the served model is not a reasoning model; leave it out', chatOnly: true },
  verbosity: { idle: isNone, why: 'this server does not support verbosity; ask for a short or long answer in the prompt', chatOnly: true },
  web_search_options: { idle: isNone, why: 'this server does not search the web; leave it out', chatOnly: true },
};

function isNone(v: unknown): boolean {
  return v === undefined || v === null;
}
function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
/** Schema entries for those fields: any JSON, so the route says what they ask for instead of "does not take this field". */
const unsupportedProps = (chat: boolean) =>
  Object.fromEntries(
    Object.entries(UNSUPPORTED_FIELDS)
      .filter(([, f]) => chat || !f.chatOnly)
      .map(([k]) => [k, {}]),
  );

const chatSchema = {
  type: 'object',
  required: ['messages'],
  additionalProperties: false,
  properties: {
    ...samplingProps,
    ...unsupportedProps(true),
    max_completion_tokens: { type: ['integer', 'null'], minimum: 1 },
    messages: {
      type: 'array',
      minItems: 1,
      maxItems: 1024,
      items: {
        type: 'object',
        required: ['role'],
        additionalProperties: false,
        properties: {
          // Checked by chatTurns: an enum here listed `tool` and `function` as allowed, which are refused as unsupported.
          role: { type: 'string' },
          name: { type: 'string' },
          content: {
            anyOf: [
              { type: 'string' },
              {
                type: 'array',
                items: {
                  type: 'object',
                  required: ['type'],
                  additionalProperties: false,
                  // Image, audio and file parts are OpenAI's too; chatTurns refuses them, saying why.
                  properties: {
                    type: { type: 'string' },
                    text: { type: 'string' },
                    refusal: { type: 'string' },
                    image_url: {},
                    input_audio: {},
                    file: {},
                  },
                },
              },
              { type: 'null' },
            ],
          },
          // What the OpenAI SDK hands back in an assistant message (`choices[0].message`; the stream helpers'
          // `finalChatCompletion()` adds `refusal: null, parsed: null`), so an app can send its conversation again
          // as the SDK gave it. chatTurns takes them at the values that ask for nothing.
          refusal: { type: ['string', 'null'] },
          parsed: {},
          annotations: { type: 'array' },
          audio: {},
          tool_calls: { type: ['array', 'null'] },
          function_call: {},
          tool_call_id: { type: 'string' },
        },
      },
    },
  },
} as const;

const completionSchema = {
  type: 'object',
  required: ['prompt'],
  additionalProperties: false,
  properties: {
    ...samplingProps,
    ...unsupportedProps(false),
    // A string, a list of strings, a list of token ids, or a list of such lists, as OpenAI's API takes it: which of
    // them a list is, and every id, is checked by promptParts, naming the element that is wrong.
    prompt: { anyOf: [{ type: 'string' }, { type: 'array', minItems: 1 }] },
    echo: { type: ['boolean', 'null'] },
    best_of: { type: ['integer', 'null'] },
    suffix: { type: ['string', 'null'] },
  },
} as const;

interface CommonBody {
  model?: string;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  repetition_penalty?: number | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  user?: string;
  prompt_cache_key?: string;
  safety_identifier?: string | null;
  stop?: string | string[] | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  logprobs?: boolean | number | null;
  echo?: boolean | null;
  best_of?: number | null;
  suffix?: string | null;
}
interface ChatPart {
  type: string;
  text?: string;
  refusal?: string;
  image_url?: unknown;
  input_audio?: unknown;
  file?: unknown;
}
interface ChatBodyMessage {
  role: string;
  content?: string | ChatPart[] | null;
  refusal?: string | null;
  audio?: unknown;
  tool_calls?: unknown[] | null;
  function_call?: unknown;
}
interface ChatBody extends CommonBody {
  messages: ChatBodyMessage[];
}
interface CompletionBody extends CommonBody {
  prompt: string | unknown[];
}

function checkUnsupported(b: CommonBody): void {
  for (const [field, f] of Object.entries(UNSUPPORTED_FIELDS)) {
    const v = (b as Record<string, unknown>)[field];
    if (!f.idle(v)) throw new ApiError(400, 'unsupported_parameter', `${field}: ${f.why}`, field);
  }
  const zeroOr = (v: number | null | undefined) => v === undefined || v === null || v === 0;
  if (!zeroOr(b.presence_penalty))
    throw new ApiError(400, 'unsupported_parameter', 'presence_penalty is not supported; use repetition_penalty', 'presence_penalty');
  if (!zeroOr(b.frequency_penalty))
    throw new ApiError(400, 'unsupported_parameter', 'frequency_penalty is not supported; use repetition_penalty', 'frequency_penalty');
  if (b.logprobs !== undefined && b.logprobs !== null && b.logprobs !== false && b.logprobs !== 0)
    throw new ApiError(400, 'unsupported_parameter', 'logprobs are not supported', 'logprobs');
  if (b.echo) throw new ApiError(400, 'unsupported_parameter', 'echo is not supported', 'echo');
  if (b.best_of !== undefined && b.best_of !== null && b.best_of !== 1)
    throw new ApiError(400, 'unsupported_parameter', 'best_of is not supported', 'best_of');
  if (b.suffix) throw new ApiError(400, 'unsupported_parameter', 'suffix is not supported', 'suffix');
  // As OpenAI's API: a client asking for usage in a stream it did not ask for would wait for a chunk that never comes.
  if (b.stream_options != null && b.stream !== true)
    throw new ApiError(400, 'invalid_request', 'stream_options is only allowed with stream: true', 'stream_options');
}

/** The served model answers to its registry name (`name` of `name@version`) or its full id. */
function checkModelName(asked: string | undefined, id: string): void {
  const name = id.split('@')[0]!;
  if (asked === undefined || asked === id || asked === name) return;
  throw new ApiError(
    404,
    'model_not_found',
    `the model ${JSON.stringify(asked)} does not exist here; this server serves ${JSON.stringify(name)}${name === id ? '' : ` (now ${id})`}`,
    'model',
  );
}

export interface OpenAiRouteOptions {
  model: HotSwapModel;
  limits?: GenerationLimits;
  tokens?: Counter;
  /** Prompt tokens a generation thread's kept cache held (not computed again). */
  cachedPromptTokens?: Counter;
  /**
   * Told each error a stream carries as its last event (its answer's status was 200, and no hook sees the event), with
   * the status and code the event names, so /metrics counts it beside the errors answered as such.
   */
  streamError?: (status: number, code: string) => void;
}

export function registerOpenAiRoutes(app: FastifyInstance, o: OpenAiRouteOptions): GenerationGate {
  const L = {
    maxTokens: o.limits?.maxTokens ?? 1024,
    defaultMaxTokens: o.limits?.defaultMaxTokens ?? 256,
    maxChoices: o.limits?.maxChoices ?? 8,
    maxRequestTokens: o.limits?.maxRequestTokens,
    maxPromptTokens: o.limits?.maxPromptTokens,
  };
  for (const [k, v] of Object.entries({ ...L, maxConcurrent: o.limits?.maxConcurrent, maxQueue: o.limits?.maxQueue })) {
    if (v !== undefined && !(Number.isSafeInteger(v) && v >= (k === 'maxQueue' ? 0 : 1)))
      throw new InputError(`must be a positive integer, got ${v}`, { where: `serve.${k}` });
  }
  // A timer beyond 2^31 - 1 ms fires at once.
  const grace = o.limits?.stopGraceMs;
  if (grace !== undefined && !(Number.isSafeInteger(grace) && grace >= 0 && grace <= 2 ** 31 - 1))
    throw new InputError(`must be an integer from 0 to ${2 ** 31 - 1} (ms), got ${grace}`, { where: 'serve.stopGraceMs' });
  const stallMs = o.limits?.streamStallMs ?? STREAM_STALL_MS;
  if (!(Number.isSafeInteger(stallMs) && stallMs >= 1 && stallMs <= 2 ** 31 - 1))
    throw new InputError(`must be an integer from 1 to ${2 ** 31 - 1} (ms), got ${stallMs}`, { where: 'serve.streamStallMs' });
  const gate = new GenerationGate(o.limits?.maxConcurrent ?? 1, o.limits?.maxQueue ?? 16);

  // `created`: when the model was made (a registry version's registration), else when this server loaded it; 0 read
  // as 1970 in apps that show it.
  const modelEntry = () => {
    const id = o.model.current.id;
    return { id: id.split('@')[0], object: 'model', created: o.model.created, owned_by: 'tempered', version: id };
  };
  app.get('/v1/models', async () => ({ object: 'list', data: [modelEntry()] }));
  // OpenAI's `GET /v1/models/{model}` (the SDK's `models.retrieve`), by the names a request's `model` takes. A wildcard,
  // so an id with a `/` in it (`hf:org/name`) is found however the client escaped it.
  app.get<{ Params: { '*': string } }>('/v1/models/*', async (req, reply) => {
    const id = o.model.current.id;
    try {
      checkModelName(req.params['*'], id);
    } catch (e) {
      const err = e as ApiError;
      return reply.code(err.status).send(openAiError(err.status, err.code, err.message, err.param));
    }
    return modelEntry();
  });

  app.post<{ Body: ChatBody }>('/v1/chat/completions', { schema: { body: chatSchema } }, (req, reply) => serve(req, reply, 'chat'));
  app.post<{ Body: CompletionBody }>('/v1/completions', { schema: { body: completionSchema } }, (req, reply) =>
    serve(req, reply, 'completion'),
  );

  async function serve(req: FastifyRequest<{ Body: ChatBody | CompletionBody }>, reply: FastifyReply, kind: 'chat' | 'completion') {
    const body = req.body;
    const lease = o.model.acquire();
    let leave: (() => void) | null = null;
    // The client leaving (a closed socket before the answer is complete) cancels the generation.
    const gone = new AbortController();
    const onClose = () => {
      if (!reply.raw.writableFinished) gone.abort(new Error('client closed the connection'));
    };
    reply.raw.on('close', onClose);
    // What the generation listens to: the client leaving, or the server's stop once its grace ran out.
    const stopped = new AbortController();
    const onGone = () => stopped.abort(gone.signal.reason);
    const onHalt = () => stopped.abort(gate.halted.reason);
    gone.signal.addEventListener('abort', onGone, { once: true });
    if (gate.halted.aborted) onHalt();
    else gate.halted.addEventListener('abort', onHalt, { once: true });
    try {
      const gen = lease.predictor;
      if (!isTextGenerator(gen))
        throw new ApiError(400, 'model_not_supported', `${gen.id} is a classifier, not a language model; use POST /predict`, 'model');
      checkModelName(body.model, gen.id);
      checkUnsupported(body);
      // What can be refused from the request's shape is, before any tokenizing: a megabyte of prompts
      // took seconds to tokenize (in the pool's encoder thread, but every other request waits there).
      const turns = kind === 'chat' ? chatTurns((body as ChatBody).messages) : null;
      const parts = kind === 'chat' ? null : promptParts((body as CompletionBody).prompt);
      const texts = parts && 'texts' in parts ? parts.texts : null;
      const tokenIds = parts && 'ids' in parts ? parts.ids : null;
      const idsAt = (i: number) => (parts && 'ids' in parts && parts.flat ? 'prompt' : `prompt[${i}]`);
      const promptCount = parts === null ? 1 : (texts ?? tokenIds!).length;
      const n = body.n ?? 1;
      if (promptCount * n > L.maxChoices)
        throw new ApiError(
          400,
          'too_many_choices',
          `${promptCount} prompt(s) × n=${n} asks for ${promptCount * n} sequences; the limit is ${L.maxChoices}`,
          'n',
        );
      const maxPrompt = Math.min(L.maxPromptTokens ?? Infinity, gen.contextLength - 1);
      const requestTokens = L.maxRequestTokens ?? 2 * gen.contextLength;
      // Token ids need no tokenizing: their own count is checked below (`within`), each id against the vocabulary.
      const lengths = turns ? [turns.reduce((sum, m) => sum + m.content.length, 0)] : texts ? texts.map((t) => t.length) : [0];
      const chars = Math.max(...lengths);
      if (chars > maxPrompt * MAX_CHARS_PER_TOKEN)
        throw new ApiError(
          400,
          'context_length_exceeded',
          `the prompt has ${chars} characters, more than ${MAX_CHARS_PER_TOKEN} a token for the ${maxPrompt} tokens this server takes`,
          kind === 'chat' ? 'messages' : 'prompt',
        );
      // Eight prompts each under that limit were a megabyte, tokenized one after the other on this thread.
      const allChars = lengths.reduce((a, b) => a + b, 0);
      if (allChars > requestTokens * MAX_CHARS_PER_TOKEN)
        throw new ApiError(
          400,
          'request_too_large',
          `the prompts have ${allChars} characters together, more than ${MAX_CHARS_PER_TOKEN} a token for the ${requestTokens} tokens one request may hold`,
          'prompt',
        );
      const within = (ids: number[]) => {
        if (ids.length > maxPrompt)
          throw new ApiError(
            400,
            'context_length_exceeded',
            `the prompt has ${ids.length} tokens; this server takes at most ${maxPrompt}`,
            kind === 'chat' ? 'messages' : 'prompt',
          );
        return ids;
      };
      const prompts = turns
        ? [within(await encoded(() => gen.encodeChat(turns, gone.signal), 'messages'))]
        : tokenIds
          ? tokenIds.map((ids, i) => checkTokenIds(within(ids), gen.vocabSize, idsAt(i)))
          : await promptsOf(gen, texts!, typeof (body as CompletionBody).prompt === 'string', within, gone.signal);
      const longest = Math.max(...prompts.map((p) => p.length));
      const asked = (kind === 'chat' ? (body as ChatBody).max_completion_tokens : null) ?? body.max_tokens ?? null;
      const param = kind === 'chat' && (body as ChatBody).max_completion_tokens != null ? 'max_completion_tokens' : 'max_tokens';
      if (asked !== null && asked > L.maxTokens)
        throw new ApiError(400, 'max_tokens_exceeded', `${param} is ${asked}; this server allows at most ${L.maxTokens}`, param);
      if (asked !== null && longest + asked > gen.contextLength) {
        throw new ApiError(
          400,
          'context_length_exceeded',
          `the prompt (${longest} tokens) plus ${param} (${asked}) exceeds the model's context of ${gen.contextLength} tokens`,
          param,
        );
      }
      // The default is within the server's cap too (`--max-tokens 64`: a request that names none got 256).
      const maxNewTokens = asked ?? Math.min(L.defaultMaxTokens, L.maxTokens, gen.contextLength - longest);
      const rows = prompts.flatMap((p) => Array.from({ length: n }, () => p));
      // The request's KV cache and prompt pass grow with all its sequences together.
      const held = rows.reduce((s, p) => s + p.length + maxNewTokens, 0);
      if (held > requestTokens)
        throw new ApiError(
          400,
          'request_too_large',
          `${rows.length} sequence(s) of prompt and ${maxNewTokens} new tokens hold ${held} tokens together; one request may hold at most ${requestTokens}: ask for a smaller n, fewer or shorter prompts, or a smaller ${param}`,
          rows.length > 1 ? 'n' : param,
        );
      const stop = body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop;

      const entered = gate.tryEnter(gone.signal);
      if (!entered) {
        reply.header('retry-after', String(gate.retryAfterSeconds(req.id)));
        throw new ApiError(
          429,
          'server_busy',
          `${gate.active} generation(s) running and ${gate.queued} waiting, which is the limit; retry shortly`,
        );
      }
      leave = await entered;
      // Requests of one user (or cache key) never read another's kept cache, nor learn from cached_tokens what it held.
      const cacheScope = JSON.stringify([body.user ?? null, body.prompt_cache_key ?? null, body.safety_identifier ?? null]);
      const opts: GenerateOptions & { cacheScope: string } = {
        cacheScope,
        maxNewTokens,
        // OpenAI's defaults: temperature 1, top_p 1, a fresh seed unless one is given.
        temperature: body.temperature ?? 1,
        ...(body.top_p != null ? { topP: body.top_p } : {}),
        ...(body.top_k != null ? { topK: body.top_k } : {}),
        ...(body.repetition_penalty != null ? { repetitionPenalty: body.repetition_penalty } : {}),
        seed: body.seed == null ? randomInt(2 ** 47) : samplingSeed(body.seed),
        stop,
        // A stop that waited its grace out ends the generation as a client that left would. (One controller a
        // request, unhooked in `finally`: AbortSignal.any on the server-long gate.halted keeps an entry per request
        // in Node 20, about 55 bytes each, forever.)
        signal: stopped.signal,
      };
      /** The server's stop ended this generation (a row was cut): its client is told so rather than given a cut answer. */
      const halted = (results: GenerateResult[]) =>
        gate.halted.aborted && !gone.signal.aborted && results.some((r) => r.finishReason === 'cancelled')
          ? (gate.halted.reason as ApiError)
          : undefined;
      const id = `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomUUID().replace(/-/g, '')}`;
      const created = Math.floor(Date.now() / 1000);
      const usage = (results: GenerateResult[]) => {
        const prompt = prompts.reduce((s, p) => s + p.length, 0);
        const completion = results.reduce((s, r) => s + r.tokens.length, 0);
        // As OpenAI reports its own prompt caching: the prompt tokens a kept cache held.
        const cached = results.reduce((s, r) => s + r.cachedTokens, 0);
        return {
          prompt_tokens: prompt,
          completion_tokens: completion,
          total_tokens: prompt + completion,
          prompt_tokens_details: { cached_tokens: cached },
        };
      };
      // A stream's tokens are counted as they are sent (`counted`), so the counter shows a long generation going on, and
      // that one whose client left stopped; its end adds what no event carried, so the total is its tokens either way.
      // One series a request: a token's count is an addition, not the label text formatted again.
      const tokens = o.tokens?.series({ model: gen.id });
      let counted = 0;
      const count = (results: GenerateResult[]) => {
        tokens?.inc(Math.max(0, results.reduce((s, r) => s + r.tokens.length, 0) - counted));
        o.cachedPromptTokens?.inc(
          { model: gen.id },
          results.reduce((s, r) => s + r.cachedTokens, 0),
        );
      };
      if (!body.stream) {
        const results = await gen.generate(rows, opts);
        count(results);
        const cut = halted(results);
        if (cut) throw cut;
        const choices = results.map((r, index) =>
          kind === 'chat'
            ? { index, message: { role: 'assistant', content: r.text }, logprobs: null, finish_reason: finishReason(r.finishReason) }
            : { index, text: r.text, logprobs: null, finish_reason: finishReason(r.finishReason) },
        );
        return reply.send({
          id,
          object: kind === 'chat' ? 'chat.completion' : 'text_completion',
          created,
          model: gen.id,
          choices,
          usage: usage(results),
        });
      }

      // Server-sent events: one `data:` line per chunk, `data: [DONE]` at the end.
      reply.hijack();
      const res = reply.raw;
      // The headers hooks set on the reply (CORS's, --cors-origin) are not written for a hijacked one unless given here.
      res.writeHead(200, {
        ...(reply.getHeaders() as OutgoingHttpHeaders),
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        'x-accel-buffering': 'no',
      });
      const includeUsage = body.stream_options?.include_usage === true;
      const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
      const send = async (chunk: unknown) => {
        if (res.destroyed) return;
        // Awaiting the drain makes a slow reader slow the generation down instead of buffering tokens. A client that
        // stopped reading held this wait for ever, and with it a generation slot and a server's stop (past its grace,
        // close() never returned): its connection is dropped once the generation is stopped (the stop's grace over),
        // or when the client has read nothing for `streamStallMs`; its generation then ends as a client's that left.
        if (!res.write(`data: ${JSON.stringify(chunk)}\n\n`))
          await new Promise<void>((r) => {
            const stall = setTimeout(() => drop(), stallMs);
            const done = () => {
              clearTimeout(stall);
              res.off('drain', done);
              res.off('close', done);
              stopped.signal.removeEventListener('abort', drop);
              r();
            };
            const drop = () => res.destroy();
            res.on('drain', done);
            res.on('close', done);
            if (stopped.signal.aborted) drop();
            else stopped.signal.addEventListener('abort', drop, { once: true });
          });
      };
      // A client that left got no event: its request counts as 499, as one that left before its answer.
      const endWithError = (err: ApiError) => {
        if (res.destroyed) return;
        o.streamError?.(err.status, err.code);
        res.end(`data: ${JSON.stringify(openAiError(err.status, err.code, err.message, err.param))}\n\ndata: [DONE]\n\n`);
      };
      const chunk = (choices: unknown[]) => ({ id, object, created, model: gen.id, choices, ...(includeUsage ? { usage: null } : {}) });
      try {
        if (kind === 'chat')
          await send(
            chunk(rows.map((_, index) => ({ index, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }))),
          );
        const results = await gen.generate(rows, {
          ...opts,
          onToken: async (e: TokenEvent) => {
            // A row's last event may be its end-of-sequence token, which is no token of the answer: the end counts it.
            if (!e.finishReason) {
              counted++;
              tokens?.inc();
            }
            if (e.text === '' && !e.finishReason) return;
            const fin = e.finishReason ? finishReason(e.finishReason) : null;
            await send(
              chunk([
                kind === 'chat'
                  ? { index: e.row, delta: e.text === '' ? {} : { content: e.text }, logprobs: null, finish_reason: fin }
                  : { index: e.row, text: e.text, logprobs: null, finish_reason: fin },
              ]),
            );
          },
        });
        count(results);
        const cut = halted(results);
        if (cut) {
          endWithError(cut);
          return reply;
        }
        if (includeUsage) await send({ id, object, created, model: gen.id, choices: [], usage: usage(results) });
        if (!res.destroyed) res.end('data: [DONE]\n\n');
      } catch (e) {
        // Headers are gone: the error travels as an event, then the stream ends.
        if (!(e instanceof InputError)) req.log.error(e);
        endWithError(
          e instanceof InputError
            ? new ApiError(400, 'invalid_request', e.message, inputParam(e, null))
            : new ApiError(500, 'internal', `generation failed; the server's log names the cause under request ${req.id}`),
        );
      }
      return reply;
    } catch (e) {
      // A client that left while queued or generating gets no answer.
      if (gone.signal.aborted) return reply;
      if (e instanceof ApiError) return reply.code(e.status).send(openAiError(e.status, e.code, e.message, e.param));
      if (e instanceof InputError) return reply.code(400).send(openAiError(400, 'invalid_request', e.message, inputParam(e, null)));
      throw e;
    } finally {
      gate.halted.removeEventListener('abort', onHalt);
      reply.raw.off('close', onClose);
      leave?.();
      lease.release();
    }
  }
  return gate;
}

/**
 * The sampler's seed for a request's: OpenAI takes any 64-bit seed, and clients send random ones, but
 * past 2^53 a JSON number has already lost its low digits and the sampler takes safe integers only.
 * Such a seed is reduced modulo 2^53, so the same request still gives the same answer.
 */
export function samplingSeed(seed: number): number {
  if (Number.isSafeInteger(seed)) return seed;
  return ((seed % 2 ** 53) + 2 ** 53) % 2 ** 53;
}

function finishReason(r: GenerateResult['finishReason']): string {
  return r === 'cancelled' ? 'stop' : r;
}

/** The message roles a conversation may have (`developer` is taken as `system`). */
const CHAT_ROLES: readonly string[] = ['system', 'developer', 'user', 'assistant'];

/**
 * A conversation's text turns. An assistant message is taken as the OpenAI SDK hands it back (`content` null beside a
 * `refusal`, `tool_calls: []`, the helpers' `parsed`); what this server cannot do (tool messages and calls, image,
 * audio and file parts) is refused naming the message and saying why, before anything is tokenized.
 */
export function chatTurns(messages: ChatBody['messages']): ChatMessage[] {
  return messages.map((raw, i) => {
    // OpenAI's newer name for the system message, which its SDK's docs now write: the chat templates tempered serves
    // (LLaMA, Mistral, ChatML families) know `system` only, and SmolLM2's rendered `<|im_start|>developer` and then
    // added its default system turn as well, a role the model never saw in training.
    const m = raw.role === 'developer' ? { ...raw, role: 'system' as const } : raw;
    const at = `messages[${i}]`;
    const unsupported = (param: string, message: string) => new ApiError(400, 'unsupported_parameter', message, param);
    if (!CHAT_ROLES.includes(m.role) && m.role !== 'tool' && m.role !== 'function')
      throw new ApiError(
        400,
        'invalid_request',
        `${at}.role must be one of ${CHAT_ROLES.map((r) => JSON.stringify(r)).join(', ')}, got ${JSON.stringify(m.role)} ("tool" and "function" are not supported: this server does no tool calling)`,
        `${at}.role`,
      );
    if (m.role === 'tool' || m.role === 'function')
      throw unsupported(
        `${at}.role`,
        `${at}: a "${m.role}" message answers a tool call, and this server does not support tool (function) calling`,
      );
    if (m.tool_calls != null && m.tool_calls.length > 0)
      throw unsupported(`${at}.tool_calls`, `${at}.tool_calls: this server does not support tool (function) calling`);
    if (m.function_call != null)
      throw unsupported(`${at}.function_call`, `${at}.function_call: this server does not support function calling`);
    if (m.audio != null) throw unsupported(`${at}.audio`, `${at}.audio: this server takes text only`);
    if (m.content == null) {
      // OpenAI's assistant message may be a refusal alone; any other message needs content.
      if (m.role === 'assistant') return { role: m.role, content: m.refusal ?? '' };
      // Named as sent: an app that sent a developer message would look for a system one in vain.
      throw new ApiError(400, 'invalid_request', `${at}.content is required for a "${raw.role}" message`, `${at}.content`);
    }
    if (typeof m.content === 'string') return { role: m.role, content: m.content };
    const text = m.content.map((p, j) => {
      const part = `${at}.content[${j}]`;
      const value = p.type === 'text' ? p.text : p.type === 'refusal' ? p.refusal : undefined;
      if (p.type !== 'text' && p.type !== 'refusal')
        throw unsupported(
          part,
          `${part}: the served model reads text only, and this is a ${JSON.stringify(p.type)} part; send {"type": "text", "text": "…"} parts`,
        );
      if (typeof value !== 'string')
        throw new ApiError(400, 'invalid_request', `${part}: a "${p.type}" part needs its "${p.type}" string`, part);
      // The schema lets any part carry image_url, input_audio or file (so an image part is refused saying why): on a
      // text part it would be dropped without a word, and the app told nothing of the image it sent.
      const carried = (['image_url', 'input_audio', 'file'] as const).find((k) => p[k] !== undefined);
      if (carried)
        throw new ApiError(
          400,
          'invalid_request',
          `${part}.${carried}: a "${p.type}" part takes "${p.type}" alone, and the served model reads text only`,
          `${part}.${carried}`,
        );
      return value;
    });
    return { role: m.role, content: text.join('') };
  });
}

/** Each prompt's tokens, refusing the first that is empty or that `within` refuses before the next is tokenized. */
async function promptsOf(
  gen: TextGenerator,
  texts: string[],
  single: boolean,
  within: (ids: number[]) => number[],
  signal: AbortSignal,
): Promise<number[][]> {
  const out: number[][] = [];
  for (const [i, t] of texts.entries()) {
    const ids = await encoded(() => gen.encode(t, signal), single ? 'prompt' : `prompt[${i}]`);
    if (ids.length === 0) throw new ApiError(400, 'empty_prompt', `prompt${single ? '' : `[${i}]`} has no tokens`, 'prompt');
    out.push(within(ids));
  }
  return out;
}

/**
 * The request field an InputError's `where` names (`messages[1].content (chat template …)`, as the chat encoding says
 * which message it refused), else `fallback`: OpenAI's `param`, which an SDK shows as `error.param`.
 */
function inputParam(e: InputError, fallback: string | null): string | null {
  return /^(?:messages|prompt)(?:\[\d+\])*(?:\.[a-z_]+)?(?=$|[\s(:])/.exec(e.where ?? '')?.[0] ?? fallback;
}

/**
 * Tokens of a prompt or a conversation; what the tokenizer or the chat template refuses (a template's
 * `raise_exception`, a special token's text it would make of a message) is a 400 naming the field, `param` the
 * message where the refusal names one, else the whole of `field`.
 */
async function encoded(encode: () => number[] | Promise<number[]>, field: string): Promise<number[]> {
  try {
    return await encode();
  } catch (e) {
    throw e instanceof InputError ? new ApiError(400, 'invalid_request', e.message, inputParam(e, field)) : e;
  }
}

/**
 * A completion's `prompt` in the shapes OpenAI's API takes: a string, a list of strings, a list of token ids (one
 * prompt, `flat`), or a list of lists of token ids. A list mixing them is refused naming its first element of
 * another kind, and an empty list of ids as a prompt with no tokens.
 */
export function promptParts(prompt: string | unknown[]): { texts: string[] } | { ids: number[][]; flat: boolean } {
  if (typeof prompt === 'string') return { texts: [prompt] };
  const shape = 'prompt must be a string, a list of strings, a list of token ids (integers), or a list of lists of token ids';
  const kindOf = (v: unknown) =>
    typeof v === 'string' ? 'string' : typeof v === 'number' ? 'number' : Array.isArray(v) ? 'list' : 'other';
  const first = kindOf(prompt[0]);
  const odd = prompt.findIndex((v) => kindOf(v) !== first);
  if (first === 'other' || odd >= 0) {
    const at = first === 'other' ? 0 : odd;
    throw new ApiError(400, 'invalid_request', `${shape}; prompt[${at}] is ${described(prompt[at])}`, `prompt[${at}]`);
  }
  if (first === 'string') return { texts: prompt as string[] };
  if (first === 'number') return { ids: [prompt as number[]], flat: true };
  const ids = prompt as unknown[][];
  ids.forEach((p, i) => {
    if (p.length === 0) throw new ApiError(400, 'empty_prompt', `prompt[${i}] has no tokens`, `prompt[${i}]`);
    const j = p.findIndex((v) => typeof v !== 'number');
    if (j >= 0)
      throw new ApiError(
        400,
        'invalid_request',
        `${shape}; prompt[${i}][${j}] is ${described(p[j])}, not a token id`,
        `prompt[${i}][${j}]`,
      );
  });
  return { ids: ids as number[][], flat: false };
}

/**
 * A JSON value named in an error: a string or number as it is (a string cut to 40 characters), a list or object by its
 * kind only. Stringifying it whole overflowed the stack on a list nested 100,000 deep (a 500, not a 400).
 */
function described(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  if (Array.isArray(v)) return 'a list';
  if (v !== null && typeof v === 'object') return 'an object';
  return String(v);
}

/** A prompt of token ids as given, once each id is one the model has (an id past its embedding would fail the generation). */
function checkTokenIds(ids: number[], vocabSize: number, at: string): number[] {
  const i = ids.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= vocabSize);
  if (i >= 0)
    throw new ApiError(
      400,
      'invalid_token_id',
      `${at}[${i}] is ${ids[i]}, not a token id of the served model (integers 0 to ${vocabSize - 1})`,
      `${at}[${i}]`,
    );
  return ids;
}
