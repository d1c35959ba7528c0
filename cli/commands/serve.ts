/**
 * `tempered serve <name>[@alias]`: HTTP inference for the version an alias points at, swapped when the alias
 * moves: a classifier on /predict, a causal LM on the OpenAI-compatible /v1 routes. `tempered serve <model source>`
 * (a `pypi:`/`hf:` source, a `.gguf` or a model folder) serves a base language model as it is, without the registry.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../../src/audit/log.ts';
import { modelHashOf } from '../../src/audit/model-hash.ts';
import { databaseExists } from '../../src/db/database.ts';
import { DiskFullError, InputError } from '../../src/errors.ts';
import { resolveModelSource } from '../../src/models/sources.ts';
import { openRegistry } from '../../src/registry/registry.ts';
import type { ModelVersion } from '../../src/registry/types.ts';
import { createModelServer, DEFAULT_STOP_GRACE_MS, type ModelServer } from '../../src/serve/server.ts';
import { checkCorsOrigins } from '../../src/serve/cors.ts';
import { registryAliasSource } from '../../src/serve/registry-source.ts';
import { loadPooledTextGenerator } from '../../src/serve/generation-pool.ts';
import { loadPooledPredictor } from '../../src/serve/worker-pool.ts';
import type { GenerationLimits } from '../../src/serve/openai.ts';
import { isTextGenerator, type ResolveCurrent, type ServedModel } from '../../src/serve/types.ts';
import type { ArtifactStore } from '../../src/store/artifact-store.ts';
import { diskFullError, isDiskFull, serveDiskFullHint } from '../../src/util/disk-full.ts';
import { actor, parse } from '../args.ts';
import { downloadProgress } from '../../src/models/download-progress.ts';
import { CliError, type CliContext } from '../context.ts';
import { parseModelRef } from './models.ts';

/** Serves what `name@alias` points at in the registry, loading that version's exported model from the store. */
export function registryModelSource(opts: {
  registryDb: string;
  store: ArtifactStore;
  servingDir: string;
  name: string;
  alias: string;
  threads?: number;
  chatTemplate?: string;
  workers?: number;
  maxQueueTexts?: number;
  /** Language models: generation threads (the gate's maxConcurrent). */
  generationThreads?: number;
  /** Language models: each generation thread keeps its last cache for a prompt that starts the same way (default true). */
  promptCache?: boolean;
  /** Told which registry version each served id (`name@version`) is, as it is loaded (for the audit records). */
  loaded?: (id: string, version: ModelVersion) => void;
}): ResolveCurrent {
  return registryAliasSource({
    registryPath: opts.registryDb,
    name: opts.name,
    alias: opts.alias,
    async load(version): Promise<ServedModel> {
      const tree = version.artifacts.find((a) => a.role === 'model');
      if (!tree) throw new Error(`${version.name}@${version.version} has no model artifact`);
      const dir = await opts.store
        .checkoutTree({ uri: tree.uri, sha256: tree.sha256, bytes: tree.bytes, mediaType: tree.mediaType ?? '' }, opts.servingDir)
        .catch((e: unknown) => {
          // The store's hint is a run's (resume it); a server has none, and goes on with the version it has.
          throw isDiskFull(e) ? diskFullError(e, [opts.servingDir, opts.store.root], { hint: serveDiskFullHint('swap') }) : e;
        });
      const id = `${version.name}@${version.version}`;
      opts.loaded?.(id, version);
      // Generation runs in worker threads too, one generation per thread, so a long one never blocks /health.
      if (exportedTask(dir) === 'causal-lm')
        return loadPooledTextGenerator(dir, {
          id,
          threads: opts.threads,
          chatTemplate: opts.chatTemplate,
          workers: opts.generationThreads,
          promptCache: opts.promptCache,
        });
      // Inference runs in worker threads behind a bounded, batching queue, so /health and /metrics answer while the model works.
      const p = await loadPooledPredictor(dir, { threads: opts.threads, workers: opts.workers, maxQueue: opts.maxQueueTexts });
      return { id, labels: p.labels, predict: (texts) => p.predict(texts), stats: () => p.stats(), close: () => p.close() };
    },
  });
}

/** The task of a tempered export folder (tempered-model.json), if it is one. */
export function exportedTask(dir: string): string | undefined {
  const path = join(dir, 'tempered-model.json');
  return existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as { task?: string }).task : undefined;
}

/** A model source rather than a registry name: `pypi:…`, `hf:…`, `gguf:…`, a path. Registry names have neither ':' nor '/'. */
export function isModelSource(ref: string): boolean {
  return /[:/\\]/.test(ref) || ref.endsWith('.gguf') || existsSync(ref);
}

/** A base language model served as it is: resolved once (downloaded into the model cache), never swapped. */
export function fixedModelSource(
  ref: string,
  o: {
    cacheDir: string;
    threads?: number;
    chatTemplate?: string;
    generationThreads?: number;
    promptCache?: boolean;
    /** Told the resolved source's revision (a commit, a wheel's sha256, 'local'), for the audit records. */
    resolved?: (id: string, revision: string) => void;
    /** Told how a download into the cache goes (resolveModelSource's onProgress). */
    onProgress?: (what: string, bytes: number, total: number | undefined) => void;
  },
): ResolveCurrent {
  let loaded: Promise<{ dir: string; id: string }> | undefined;
  const resolveOnce = () =>
    (loaded ??= resolveModelSource(ref, { cacheDir: o.cacheDir, onProgress: o.onProgress }).then((m) => {
      o.resolved?.(m.identity.source, m.identity.revision);
      return { dir: m.dir, id: m.identity.source };
    }));
  return async () => {
    const m = await resolveOnce();
    return {
      key: m.id,
      load: () =>
        loadPooledTextGenerator(m.dir, {
          id: m.id,
          threads: o.threads,
          chatTemplate: o.chatTemplate,
          workers: o.generationThreads,
          promptCache: o.promptCache,
        }),
    };
  };
}

export interface ServingOptions {
  port?: number;
  host?: string;
  token: string;
  pollMs?: number;
  maxBatch?: number;
  threads?: number;
  /** Classifiers: inference threads, and texts that may wait for one before requests get 429 (worker-pool.ts). */
  workers?: number;
  maxQueueTexts?: number;
  logger?: boolean | 'errors';
  /** A Jinja chat template for language models that have none (or to replace theirs). */
  chatTemplate?: string;
  /** Language models: keep each generation thread's last KV cache for the next prompt that starts the same way (default true). */
  promptCache?: boolean;
  generation?: GenerationLimits;
  /** How long a stop keeps serving first, /health at 503 (`--drain`; server.ts ServeOptions.drainMs). */
  drainMs?: number;
  /** Origins of browser apps allowed to call the server (`--cors-origin`; src/serve/cors.ts). */
  corsOrigins?: string[];
}

/**
 * Serves `ref` (a registry `name@alias` or a model source) and records it: `serve.started` once it
 * listens, `serve.swapped` before each hot swap (about the version swapped in; `details.from` and
 * `details.fromModelHash` the one swapped out), `serve.stopped` when `server.close()` has finished
 * (SIGINT/SIGTERM in `tempered serve`). Each names the served model's hash (src/audit/model-hash.ts).
 * A server that dies without closing (SIGKILL, a crash, a power cut) leaves no stop record.
 */
export async function startServing(ctx: CliContext, ref: string, o: ServingOptions): Promise<{ server: ModelServer; url: string }> {
  let resolveCurrent: ResolveCurrent, name: string, alias: string;
  // What each served id is, as loaded: the audit records say which bytes were served, not only the name.
  const identity = new Map<string, { modelHash?: string; details: Record<string, unknown> }>();
  if (isModelSource(ref)) {
    ({ name, alias } = { name: ref, alias: 'fixed' });
    resolveCurrent = fixedModelSource(ref, {
      cacheDir: ctx.paths.models,
      threads: o.threads,
      chatTemplate: o.chatTemplate,
      generationThreads: o.generation?.maxConcurrent,
      promptCache: o.promptCache,
      resolved: (id, revision) => identity.set(id, { details: { revision } }),
      // A model source not in the cache yet (a multi-GB hf: model) was downloaded without a word before serving.
      onProgress: downloadProgress((l) => console.error(l)),
    });
  } else {
    const { name: n, at } = parseModelRef(ref);
    // `NAME@latest` reads as the newest version everywhere else (models list, audit, the dashboard); serve follows an
    // alias, and took it for production without a word.
    if (/@latest$/.test(ref))
      throw new CliError(
        `serve follows an alias, and ${ref} is not one: serve ${n}@production (what a bare ${n} serves) or another alias, or a fixed version as ${n}@N; to serve the newest version, promote it (tempered models promote ${n}@N)`,
        2,
      );
    name = n;
    alias = at === 'latest' ? 'production' : String(at);
    if (!databaseExists(ctx.paths.registryDb))
      throw new CliError(`no model registry at ${ctx.paths.registryDb}; run a pipeline with a register stage first`);
    resolveCurrent = registryModelSource({
      registryDb: ctx.paths.registryDb,
      store: ctx.store(),
      servingDir: ctx.paths.serving,
      name,
      alias,
      threads: o.threads,
      chatTemplate: o.chatTemplate,
      workers: o.workers,
      maxQueueTexts: o.maxQueueTexts,
      generationThreads: o.generation?.maxConcurrent,
      promptCache: o.promptCache,
      loaded: (id, version) =>
        identity.set(id, {
          modelHash: modelHashOf(version.artifacts),
          details: { tree: version.artifacts.find((a) => a.role === 'model')?.sha256 ?? null },
        }),
    });
  }
  const who = actor();
  // One id per server process: with a swap counter it makes the dedupe key of each record, so an
  // append retried after it had in fact committed (then failed to close) is not logged twice.
  const instance = randomUUID();
  let swapSeq = 0;
  const audit = async (action: string, subject: string, details: Record<string, unknown>, dedupeKey: string) => {
    const served = identity.get(subject);
    const log = await openAudit(ctx.paths.auditDb);
    try {
      await log.append({
        action,
        subject,
        model: subject,
        actor: who,
        ...(served?.modelHash !== undefined ? { modelHash: served.modelHash } : {}),
        details: { ...served?.details, ...details },
        dedupeKey,
      });
    } finally {
      await log.close();
    }
  };
  let server: ModelServer;
  try {
    server = await createModelServer({
      resolveCurrent,
      token: o.token,
      pollMs: o.pollMs,
      maxBatch: o.maxBatch,
      logger: o.logger,
      generation: o.generation,
      drainMs: o.drainMs,
      corsOrigins: o.corsOrigins,
      // A throw here (audit log locked, disk full) keeps the old model serving; the swap and its
      // record are retried on the next poll (see HotSwapModel).
      // The record is about the version swapped in (model, modelHash); `from` and `fromModelHash` name the one
      // swapped out, whose trail (`tempered audit --model name@N`) it ends (src/registry/model-filter.ts modelRecords).
      onSwap: async (from, to) => {
        const old = identity.get(from)?.modelHash;
        await audit(
          'serve.swapped',
          to,
          { from, to, alias, ...(old !== undefined ? { fromModelHash: old } : {}) },
          `serve/${instance}/swap-${swapSeq + 1}`,
        );
        swapSeq++;
        // Served from the moment this returns; said where the server's operator looks, not only in the audit log.
        console.error(`serve: ${alias} moved: now serving ${to} (was ${from}), ${new Date().toISOString()}`);
      },
      onError: (err, phase, detail) => {
        const what = detail?.wanted ? `${phase} of ${detail.wanted}` : phase;
        const again =
          detail?.retryInMs === undefined
            ? ''
            : `; still serving the version before, loading it again in ${Math.round(detail.retryInMs / 1000)} s`;
        const hint = err instanceof DiskFullError ? `\n  ${err.hint}` : '';
        console.error(`serve: ${what} failed: ${(err as Error).message}${again}${hint}`);
      },
    });
  } catch (e) {
    const full = isDiskFull(e)
      ? diskFullError(e, [ctx.paths.serving, ctx.paths.models, tmpdir()], { hint: serveDiskFullHint('start') })
      : undefined;
    // The registry's hint offers 'latest', which serve refuses: for a missing alias or version, what serve takes instead.
    const serveHint =
      !full && e instanceof InputError && e.where === 'model' && !isModelSource(ref)
        ? await servableHint(ctx.paths.registryDb, name, alias).catch(() => undefined)
        : undefined;
    const said = full?.hint ?? serveHint ?? (e instanceof InputError ? e.hint : undefined);
    throw new CliError(`cannot serve ${name}@${alias}: ${(full ?? (e as Error)).message}${said ? `\n  ${said}` : ''}`);
  }
  const url = await server.listen(o.port ?? 0, o.host ?? '127.0.0.1');
  try {
    await audit('serve.started', server.model.current?.id ?? `${name}@${alias}`, { alias, url }, `serve/${instance}/started`);
  } catch (e) {
    await server.close();
    throw new CliError(`cannot serve ${name}@${alias}: the audit log refused the serve.started record: ${(e as Error).message}`);
  }
  // Once started is recorded, a graceful close records the stop: what was served last, once, after
  // the in-flight requests finished.
  const close = server.close.bind(server);
  let stopping: Promise<void> | undefined;
  server.close = () =>
    (stopping ??= (async () => {
      const last = server.model.current?.id ?? `${name}@${alias}`;
      await close();
      try {
        await audit('serve.stopped', last, { alias, url, swaps: swapSeq }, `serve/${instance}/stopped`);
      } catch (e) {
        throw new CliError(`stopped serving ${last}, but the audit log refused the serve.stopped record: ${(e as Error).message}`);
      }
    })());
  return { server, url };
}

/**
 * What `serve` can follow of a model that lacks `alias`: the aliases it has, a fixed version, or `alias` pointed at a
 * version by a promote. Undefined when there is no such model (the registry's hint lists the models there are).
 */
async function servableHint(registryDb: string, name: string, alias: string): Promise<string | undefined> {
  const reg = await openRegistry(registryDb);
  let model;
  try {
    model = (await reg.listModels()).find((m) => m.name === name);
  } finally {
    await reg.close();
  }
  if (!model) return undefined;
  const latest = model.latestVersion;
  const aliases = Object.entries(model.aliases).map(([a, v]) => `${name}@${a} (v${v})`);
  const versions = latest === 1 ? `${name}@1` : `${name}@1 to ${name}@${latest}`;
  if (/^v?\d+$/.test(alias)) return `serve ${aliases.length ? `an alias, ${aliases.join(', ')}, or ` : ''}a version from ${versions}`;
  return (
    `serve ${aliases.length ? `an alias it has, ${aliases.join(', ')}, or ` : ''}a fixed version (${versions}), ` +
    `or point ${alias} at a version: tempered models promote ${name}@${latest}${alias === 'production' ? '' : ` --alias ${alias}`}`
  );
}

export async function serveCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered serve <name>[@alias] | <model source> [--port 8080] [--host 127.0.0.1] [--poll-ms 2000] [--max-batch 64] [--threads N] [--drain 0 (seconds)] [--cors-origin ORIGIN]...\n' +
    '  classifiers: [--workers 1] [--max-queue-texts 256]\n' +
    '  language models: [--chat-template FILE] [--max-tokens 1024] [--max-prompt-tokens N] [--max-request-tokens N] [--max-concurrent 1 (generation threads)] [--max-queue 16]\n' +
    '    [--no-prompt-cache] [--stop-grace 8 (seconds)] [--stream-stall 30 (seconds)]   (token from TEMPERED_SERVE_TOKEN)';
  const { values, positionals } = parse(
    argv,
    {
      port: { type: 'string' },
      host: { type: 'string' },
      'poll-ms': { type: 'string' },
      'max-batch': { type: 'string' },
      threads: { type: 'string' },
      workers: { type: 'string' },
      'max-queue-texts': { type: 'string' },
      'chat-template': { type: 'string' },
      'max-tokens': { type: 'string' },
      'max-prompt-tokens': { type: 'string' },
      'max-request-tokens': { type: 'string' },
      'max-concurrent': { type: 'string' },
      'max-queue': { type: 'string' },
      'no-prompt-cache': { type: 'boolean' },
      'stop-grace': { type: 'string' },
      'stream-stall': { type: 'string' },
      drain: { type: 'string' },
      'cors-origin': { type: 'string', multiple: true },
    },
    usage,
  );
  if (positionals.length !== 1) throw new CliError(`serve takes one model reference\nusage: ${usage}`, 2);
  const token = process.env.TEMPERED_SERVE_TOKEN;
  if (!token) throw new CliError('set TEMPERED_SERVE_TOKEN to a long random string; clients send it as `Authorization: Bearer <token>`', 2);
  // Every number is checked here, naming its flag, before a model is looked up or loaded.
  const int = (flag: keyof typeof values, min: number, max = Number.MAX_SAFE_INTEGER) =>
    intFlag(flag, values[flag] as string | undefined, min, max);
  const generation: GenerationLimits = {
    maxTokens: int('max-tokens', 1),
    maxPromptTokens: int('max-prompt-tokens', 1),
    maxRequestTokens: int('max-request-tokens', 1),
    maxConcurrent: int('max-concurrent', 1),
    maxQueue: int('max-queue', 0),
  };
  // Seconds, up to a day (a timer beyond 2^31 - 1 ms would fire at once).
  const stopGrace = int('stop-grace', 0, 86_400);
  if (stopGrace !== undefined) generation.stopGraceMs = stopGrace * 1000;
  // How long a stream's client may read nothing before it is taken as gone (its slot freed): a client behind a proxy
  // that buffers, or one that reads in bursts, may need more than the default 30 s.
  const streamStall = int('stream-stall', 1, 86_400);
  if (streamStall !== undefined) generation.streamStallMs = streamStall * 1000;
  const drainS = int('drain', 0, 3_600) ?? 0;
  const port = int('port', 0, 65535) ?? 8080;
  // A timer longer than 2^31 - 1 ms fires at once (Node's setTimeout), so poll-ms stops there.
  const pollMs = int('poll-ms', 1, 2 ** 31 - 1) ?? 2000;
  const maxBatch = int('max-batch', 1);
  const workers = int('workers', 1);
  const maxQueueTexts = int('max-queue-texts', 1);
  const threads = threadsFlag(values.threads);
  const chatTemplate = readChatTemplate(values['chat-template']);
  let corsOrigins: string[];
  try {
    corsOrigins = checkCorsOrigins(values['cors-origin'] ?? [], '--cors-origin');
  } catch (e) {
    if (!(e instanceof InputError)) throw e;
    throw new CliError(`${e.message}\n  ${e.hint ?? ''}`, 2);
  }
  const { server, url } = await startServing(ctx, positionals[0]!, {
    port,
    host: values.host,
    token,
    pollMs,
    maxBatch,
    threads,
    logger: 'errors',
    workers,
    maxQueueTexts,
    chatTemplate,
    promptCache: !values['no-prompt-cache'],
    generation,
    drainMs: drainS * 1000,
    corsOrigins,
  });
  const routes = isTextGenerator(server.model.current)
    ? 'POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /v1/models/{model}'
    : 'POST /predict';
  const graceS = (generation.stopGraceMs ?? DEFAULT_STOP_GRACE_MS) / 1000;
  // The handlers go in before the "serving" line: whoever waits for that line may signal at once, and a signal
  // between the line and the handlers took Node's default action (killed, no clean stop).
  const stopRequested = new Promise<void>((resolve) => {
    let told = 0;
    // One handler for both: a SIGTERM after a Ctrl-C (or the reverse) is a second request to stop, not ignored,
    // and a second one ends the generations now instead of killing the process mid-answer.
    const onSignal = (signal: NodeJS.Signals) => {
      if (told++ === 0) {
        console.error(
          (drainS > 0
            ? `serve: ${signal}: draining for ${drainS} s (/health answers 503, connections close after each answer), then `
            : `serve: ${signal}: `) +
            (isTextGenerator(server.model.current)
              ? `stopping; generations running may finish for up to ${graceS} s (${signal} again ends them now)`
              : `stopping once the requests in flight are answered`),
        );
        resolve();
      } else {
        console.error(`serve: ${signal} again: ending the generations running now`);
        server.halt();
      }
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  console.log(`serving ${server.model.current?.id ?? positionals[0]} at ${url}  (${routes}, GET /health, GET /metrics)`);
  await stopRequested;
  await server.close();
  return 0;
}

/**
 * `--flag N` for a whole number from `min` to `max` (digits only: no sign, fraction, exponent, hex or blanks), or
 * undefined when the flag is not given; anything else is a usage error that names the flag.
 */
export function intFlag(flag: string, v: string | undefined, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (v === undefined) return undefined;
  const n = /^[0-9]+$/.test(v) ? Number(v) : NaN;
  if (!(n >= min && n <= max)) {
    const what =
      max === Number.MAX_SAFE_INTEGER ? (min === 1 ? 'a positive integer' : `an integer >= ${min}`) : `an integer from ${min} to ${max}`;
    throw new CliError(`--${flag} must be ${what}, got ${JSON.stringify(v)}`, 2);
  }
  return n;
}

/**
 * The most inference threads `--threads` takes. onnxruntime starts every one it is asked for (100,000 hung the
 * process); 256 is more than any CPU this runs on has cores.
 */
export const MAX_THREADS = 256;

/** `--threads N` (generate, chat, serve): 1 to MAX_THREADS, or undefined for onnxruntime's default. */
export function threadsFlag(v: string | undefined): number | undefined {
  return intFlag('threads', v, 1, MAX_THREADS);
}

/**
 * `--chat-template FILE`: the file's text. A file that is missing, a folder, unreadable or has no template in
 * it (empty, or blanks only: every message would fail on it) is a usage error naming the file.
 */
export function readChatTemplate(file: string | undefined): string | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    if (statSync(file).isDirectory()) throw new CliError(`--chat-template: ${file} is a folder; give the template's file`, 2);
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if (e instanceof CliError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new CliError(`--chat-template: ${file} does not exist`, 2);
    if (err.code === 'EISDIR') throw new CliError(`--chat-template: ${file} is a folder; give the template's file`, 2);
    throw new CliError(`--chat-template: cannot read ${file} (${err.code ?? err.message})`, 2);
  }
  if (text.trim() === '') throw new CliError(`--chat-template: ${file} is empty; a chat template is a Jinja text`, 2);
  return text;
}
