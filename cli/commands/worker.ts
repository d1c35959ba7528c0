/** `tempered worker`, and the in-process worker of `demo` and of `submit --wait` on the embedded dev server (or with `--local-worker`). */
import type { Worker } from '@temporalio/worker';
import { connectWorker, type TemporalSettings } from '../../infra/connection.ts';
import { createWorker } from '../../infra/worker.ts';
import { installRuntime, metricsAddress, metricsAddressRefusal } from '../../infra/runtime.ts';
import { parse } from '../args.ts';
import { CliError, type CliContext } from '../context.ts';
import { runEndedHook, stageCompletedHook } from '../../activities/audit.ts';
import { isolationFromEnv } from '../../src/isolate/limits.ts';
import { InputError } from '../../src/errors.ts';
import { cacheLimitBytes, startCachePruner } from '../../src/store/cache-pruner.ts';
import { startBaselineMemoPruner } from '../../src/store/baseline-memos.ts';
import { DEFAULT_HORIZON_DAYS } from '../../src/store/garbage.ts';
import { awaitUsableDatabase } from './db.ts';
import { sayEvery } from './say-every.ts';
import { isDatabaseUrl, redactUrl } from '../../src/db/database.ts';
import { runBackends, sharingMismatch } from './sharing.ts';
import type { RunBackends } from '../../workflows/types.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ArtifactStore } from '../../src/store/artifact-store.ts';
import { existsSync } from 'node:fs';
import { configuredDataRoots, DATA_ROOTS_ENV, dataRoots } from '../../src/data/roots.ts';

/** The most a stopping `tempered worker` waits for its work to end: the 10 s grace of its stages, then 15 s. */
const STOP_DEADLINE_MS = 25_000;

export interface BuildWorkerOptions {
  workflows?: boolean;
  maxActivities?: number;
  /** Flags that override TEMPERED_CHILD_MAX_OLD_SPACE_MB / TEMPERED_CHILD_MAX_RSS_MB. */
  childMaxOldSpaceMb?: number;
  childMaxRssMb?: number;
  /** The queues whose stages may use CUDA on this worker (`--cuda-queues`); unset: all of them. */
  cudaQueues?: string[];
  /** Told when this worker lacks a shared store or database that a run has (activities/backends.ts). */
  onLacksRunSettings?: (message: string) => void;
  /** This worker's store and database (sharing.ts runBackends), read once for all its queues; read here when absent. */
  backends?: RunBackends;
}

/** Returns once the shared store answers (at once without one); an InputError (a setting) is thrown. */
export async function awaitStore(
  store: ArtifactStore,
  o: { pollMs?: number; sayEveryMs?: number; signal?: AbortSignal; log?: (m: string) => void } = {},
): Promise<void> {
  const remote = store.remote;
  if (!remote) return;
  const log = o.log ?? ((m: string) => console.error(`worker: ${m}`));
  const sayWaiting = sayEvery(log, o.sayEveryMs);
  let waited = false;
  for (; ; await sleep(o.pollMs ?? 5000, undefined, { signal: o.signal })) {
    try {
      await remote.head('sha256/00/worker-start-check');
      if (waited) log(`the store ${remote.url} answers now`);
      return;
    } catch (e) {
      // Only a store that is away (no answer, or a 5xx / 429) is waited for: another answer (a redirect for a wrong
      // AWS_REGION, a 400) is a setting, said at once instead of read as "did not answer" for ever.
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      if (e instanceof InputError || (status !== undefined && status < 500 && status !== 429)) throw e;
      waited = true;
      sayWaiting(`the store ${remote.url} did not answer (${(e as Error).message}); waiting for it before polling (Ctrl-C stops)`);
    }
  }
}

/** What rustls says of a server certificate it refuses, in words, with what to change. */
const CERT_REFUSALS: [RegExp, string][] = [
  [
    /NotValidForName/,
    "the server's certificate does not name the host it was asked for (TEMPORAL_TLS_SERVER_NAME, else the address's) in its subjectAltName; a certificate with the name in its CN only is refused here: have it reissued with a subjectAltName, or set TEMPORAL_TLS_SERVER_NAME to a name it has there",
  ],
  [
    /CaUsedAsEndEntity/,
    'the server presents a CA certificate (basicConstraints CA:TRUE) as its own; it needs a leaf certificate, signed by the CA that TEMPORAL_TLS_CA names',
  ],
  [/UnknownIssuer/, "the server's certificate is not signed by the CA in TEMPORAL_TLS_CA (or, without it, by one the system trusts)"],
  [/Expired/, "the server's certificate has expired"],
];

/**
 * The worker's connection is the SDK core's (Rust, rustls), not the CLI's (Node's TLS, which ctx.client already got
 * through): it checks a server certificate more strictly, so a cluster every other command reaches could still refuse
 * the worker, and its error reached the user as tonic's debug text naming no setting.
 */
export function workerConnectError(s: TemporalSettings, e: Error): CliError {
  const raw = e.message.split('\n')[0]!;
  const refusal = s.tls && /InvalidCertificate/.test(raw) ? CERT_REFUSALS.find(([re]) => re.test(raw))?.[1] : undefined;
  const how = s.tls
    ? `${refusal ?? 'check TEMPORAL_TLS_CA, TEMPORAL_TLS_SERVER_NAME and the client certificate (TEMPORAL_TLS_CERT/KEY)'}. The worker connects through the Temporal SDK's core, whose TLS (rustls) checks more than the other commands' connection does, so they can reach a server the worker cannot`
    : 'check TEMPORAL_ADDRESS';
  return new CliError(`the worker cannot connect to Temporal at ${s.address}: ${how}.\n  (${raw})`);
}

export async function buildWorker(ctx: CliContext, queue: string, opts: BuildWorkerOptions = {}): Promise<Worker> {
  const s = ctx.settings();
  const isolation = isolationFromEnv();
  if (opts.childMaxOldSpaceMb) isolation.limits.maxOldSpaceMb = opts.childMaxOldSpaceMb;
  if (opts.childMaxRssMb) isolation.limits.maxRssMb = opts.childMaxRssMb;
  if (opts.cudaQueues) isolation.limits.cudaHere = { allowed: opts.cudaQueues.includes(queue), queues: opts.cudaQueues };
  // Scratch files of workers that were killed are never cleaned by their owner: sweep them here
  // (only those whose writer process is gone; see ArtifactStore.sweepTemp).
  const swept = await ctx
    .store()
    .sweepTemp()
    .catch(() => 0);
  if (swept) console.error(`worker: removed ${swept} temp file(s) left by stopped workers`);
  const connection = await connectWorker(s).catch((e: Error) => {
    throw workerConnectError(s, e);
  });
  return createWorker({
    connection,
    namespace: s.namespace,
    taskQueue: queue,
    kinds: ctx.kinds,
    workflows: opts.workflows,
    maxConcurrentActivities: opts.maxActivities,
    // Quiet: an id that cannot be read now leaves the run refused, as it was, and its next attempt reads again.
    rereadBackends: (which) => runBackends(ctx, () => undefined, which),
    deps: {
      store: ctx.store(),
      cache: ctx.cache(),
      stateDir: ctx.paths.root,
      onStageCompleted: stageCompletedHook(ctx.paths.root, ctx.auditLog()),
      onRunEnded: runEndedHook(ctx.auditLog()),
      isolation,
      points: ctx.progressPoints(),
      backends: opts.backends ?? (await runBackends(ctx, (m) => console.error(`worker: ${m}`))),
      ...(opts.onLacksRunSettings ? { onLacksRunSettings: opts.onLacksRunSettings } : {}),
    },
  });
}

/**
 * A worker inside this process for the length of a `--wait`. It does not ask whether other workers
 * poll: the server keeps listing pollers for a while after they die, so that answer can be stale,
 * and an extra worker next to live ones only shares the work.
 */
export async function startLocalWorker(ctx: CliContext, queue: string): Promise<{ stop(): Promise<void> }> {
  // The waiting command stops this worker on Ctrl-C (runs.ts), after it has said what becomes of the run.
  installRuntime('ERROR', { ownSignals: true });
  // Against a team's cluster this process becomes one of the queue's workers for the wait, taking
  // other people's stages with this checkout and this machine's files: said, so nobody is surprised.
  if (!ctx.settings().embedded)
    console.error(
      `note: this process also runs a worker on queue '${queue}' of ${ctx.settings().address} while it waits, taking any of that queue's stages`,
    );
  const mismatch = ctx.settings().embedded ? undefined : sharingMismatch(ctx);
  if (mismatch) console.error(`warning: ${mismatch}`);
  sayDataRoots(ctx);
  const worker = await buildWorker(ctx, queue);
  const running = worker.run();
  return {
    async stop() {
      worker.shutdown();
      await running.catch(() => undefined);
    },
  };
}

/** One queue a worker process serves, and how many of its stages may run at once (undefined: the default). */
export interface QueueSlot {
  queue: string;
  maxActivities?: number;
}

/**
 * `--queue gpu:1,cpu`: the queues one worker serves, each with an optional cap on stages at once (one
 * training stage per GPU beside several data stages), else `defaultMax` (`--max-activities`). A name
 * is what Temporal accepts as a task queue; a cap is a positive whole number.
 */
export function parseQueues(raw: string, usage: string, defaultMax?: number): QueueSlot[] {
  const slots: QueueSlot[] = [];
  for (const part of raw.split(',').map((p) => p.trim())) {
    const m = /^([A-Za-z0-9._\-/]+)(?::(\d+))?$/.exec(part);
    if (!m || (m[2] !== undefined && Number(m[2]) < 1))
      throw new CliError(
        `--queue takes NAME or NAME:MAX-STAGES, comma-separated (e.g. gpu:1,cpu), not ${JSON.stringify(part)}\nusage: ${usage}`,
        2,
      );
    if (slots.some((s) => s.queue === m[1])) throw new CliError(`--queue names ${m[1]} twice\nusage: ${usage}`, 2);
    slots.push({ queue: m[1]!, maxActivities: m[2] === undefined ? defaultMax : Number(m[2]) });
  }
  return slots;
}

export async function workerCmd(ctx: CliContext, argv: string[]): Promise<number> {
  const usage =
    'tempered worker [--queue NAME[:MAX],...] [--cuda-queues NAME,...] [--activities-only] [--max-activities N] [--child-max-old-space-mb MB] [--child-max-rss-mb MB] [--single-host]';
  const { values } = parse(
    argv,
    {
      queue: { type: 'string' },
      'cuda-queues': { type: 'string' },
      'activities-only': { type: 'boolean' },
      'max-activities': { type: 'string' },
      'child-max-old-space-mb': { type: 'string' },
      'child-max-rss-mb': { type: 'string' },
      'single-host': { type: 'boolean' },
    },
    usage,
  );
  const wholeNumber = (flag: 'child-max-old-space-mb' | 'child-max-rss-mb' | 'max-activities', unit: string) => {
    const raw = values[flag];
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (!Number.isInteger(n) || n <= 0)
      throw new CliError(`--${flag} takes a positive whole number of ${unit}, not ${JSON.stringify(raw)}\nusage: ${usage}`, 2);
    return n;
  };
  // All flags are checked before anything connects.
  const childMaxOldSpaceMb = wholeNumber('child-max-old-space-mb', 'MiB');
  const childMaxRssMb = wholeNumber('child-max-rss-mb', 'MiB');
  const maxActivities = wholeNumber('max-activities', 'stages');
  const slots = parseQueues(values.queue ?? ctx.taskQueue, usage, maxActivities);
  const cudaQueues = parseCudaQueues(values['cuda-queues'], slots, usage);
  // Settings before servers: a worker configured to split the team's state is refused before it
  // waits on a store or database that may be away.
  if (!values['single-host']) {
    const mismatch = sharingMismatch(ctx);
    if (mismatch) throw new CliError(`${mismatch}, or pass --single-host if this is the only worker\nusage: ${usage}`, 2);
  }
  // First, before anything that waits (a store, a database), so it is read whatever comes next.
  const npx = npxNote();
  if (npx) console.error(`worker: ${npx}`);
  // Before the SDK's exporter is installed, which would run on without its port.
  const metrics = metricsAddress();
  const refusal = metrics ? await metricsAddressRefusal(metrics) : undefined;
  if (refusal) throw new CliError(refusal);
  const store = ctx.store();
  sayDataRoots(ctx);
  const cacheLimit = store.remote ? cacheLimitBytes(store.root) : undefined;
  // A wrong shared-store setting (no such bucket, refused credentials) stops the worker now rather
  // than failing its first stage; a store or database that does not answer is waited for before it
  // polls: a worker that polled would take stages only to fail them, each after a minute of retries,
  // using up their attempts.
  await awaitStore(store);
  await awaitUsableDatabase(ctx.paths.registryDb, (m) => console.error(`worker: ${m}`));
  await ctx.client({ startServer: true, patient: true });
  // One SDK worker per queue in this process: each polls its own queue with its own stage cap.
  const workers: Worker[] = [];
  // A worker started without the team's TEMPERED_STORE / TEMPERED_DATABASE_URL that meets a team's run stops polling
  // after refusing it: idle, it would otherwise take every retry of the stage, and the run would fail for want of a
  // worker that has the settings (activities/backends.ts).
  let lacking: string | undefined;
  let stopAll = () => {};
  const onLacksRunSettings = (message: string) => {
    if (lacking) return;
    lacking = message;
    console.error(`worker: stopping: it lacks the shared store or database of the runs it is given, and would only refuse them`);
    setImmediate(() => stopAll());
  };
  const backends = await runBackends(ctx, (m) => console.error(`worker: ${m}`));
  for (const slot of slots)
    workers.push(
      await buildWorker(ctx, slot.queue, {
        backends,
        workflows: !values['activities-only'],
        maxActivities: slot.maxActivities,
        childMaxOldSpaceMb,
        childMaxRssMb,
        cudaQueues,
        onLacksRunSettings,
      }),
    );
  const s = ctx.settings();
  const named = slots
    .map(
      (q) =>
        `'${q.queue}'${q.maxActivities ? ` (at most ${q.maxActivities} at once)` : ''}${cudaQueues?.includes(q.queue) ? ' (CUDA)' : ''}`,
    )
    .join(', ');
  const pruner = cacheLimit === undefined ? undefined : startCachePruner(store, cacheLimit, (m) => console.error(`worker: ${m}`));
  // Each worker keeps baseline memos of its own, which a `store gc` on another host never sees.
  const memoPruner = startBaselineMemoPruner(ctx.paths.baselines, DEFAULT_HORIZON_DAYS * 86_400_000, (m) => console.error(`worker: ${m}`));
  const ended = runTogether(workers);
  // Work that ignores its cancellation (a statement to a database that does not answer, in a stage or in a run's
  // local activity) held a stopping worker for minutes, past the 30 s a platform (Kubernetes) gives before its
  // SIGKILL; the SDK's own shutdownForceTime gives up waiting but then spends half a minute more in its clean-up.
  // Past the deadline the process leaves as if killed: what was in flight is retried elsewhere.
  // Past the SDK workers, what is left is the clean-up after them (the stage-cache records and training points still
  // being written): lost, they cost a cache miss or a curve's last points.
  let workersStopped = false;
  const deadline = (why: string) =>
    setTimeout(() => {
      console.error(
        workersStopped
          ? `worker: not stopped ${STOP_DEADLINE_MS / 1000} s after ${why}: its stages ended, but writing their last records to the store or database did not (most often one that does not answer); exiting now without them (a stage-cache record lost costs a cache miss)`
          : `worker: not stopped ${STOP_DEADLINE_MS / 1000} s after ${why}: some work did not end when cancelled (most often a call to a store or database that does not answer); exiting now. Its stages are retried on other workers after their heartbeat timeout, as after a kill`,
      );
      process.exit(1);
    }, STOP_DEADLINE_MS).unref();
  stopAll = () => {
    deadline('it stopped polling');
    ended.stop();
  };
  const stop = (signal: string) => {
    console.error(
      `worker: ${signal}: stopping; no new stages are taken, and running ones get 10 s to finish before they are cancelled (and retried elsewhere)`,
    );
    deadline(signal);
    ended.stop();
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
  // Said once the handlers are in: whoever waits for this line may signal at once (Node's default action kills).
  console.error(
    `worker polling ${named} on ${s.address} (namespace ${s.namespace}); store ${store.remote?.url ?? `${store.root} (this host's)`}${backends.storeId ? ` (instance ${backends.storeId})` : ''}, registry and audit log ${redactUrl(ctx.paths.registryDb)}${isDatabaseUrl(ctx.paths.registryDb) ? (backends.databaseId ? ` (instance ${backends.databaseId})` : '') : " (this host's)"}; stage kinds: ${[...ctx.kinds.keys()].join(', ')}${metrics ? `; metrics on http://${metrics}/metrics` : ''}. Ctrl-C stops it.`,
  );
  const failure = await ended.done;
  workersStopped = true;
  await pruner?.stop();
  memoPruner.stop();
  if (failure) throw failure.error;
  if (lacking) throw new CliError(lacking);
  return 0;
}

/**
 * A worker started by `npx tempered worker` (npm exec) runs under npm's `sh -c`, which passes no SIGTERM on: a supervisor
 * or `kill` that signals npx's process ended npx and left the worker polling, orphaned, with the old code during an
 * upgrade. `npm run tempered` execs its launcher, which passes signals on. Said at start, where the operator looks.
 */
export function npxNote(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.npm_command !== 'exec') return undefined;
  return "note: started through npx, whose shell passes no SIGTERM on: a SIGTERM to npx's process ends npx and leaves this worker running. Where a supervisor or `kill` stops it, start it with `npm run tempered -- worker …` or `node scripts/tempered.mjs worker …` (README, Deployment: the processes); Ctrl-C in a terminal stops it either way";
}

/** A worker's data-roots note (dataRootsNote) for this process's settings: a cluster's, or a shared store's. */
function sayDataRoots(ctx: CliContext): void {
  const roots = dataRootsNote({ cluster: !ctx.settings().embedded || !!ctx.store().remote });
  if (roots) console.error(`worker: ${roots}`);
}

/**
 * Where this worker reads a pipeline's local inputs from, said at start. The pipeline file's folder comes in the run
 * from whoever submitted it, so on a cluster (other people's submissions) a worker without TEMPERED_DATA_ROOTS reads
 * under any folder a submitter names; with it, the folders it names alone (src/data/roots.ts dataRoots).
 */
export function dataRootsNote(o: { cluster: boolean }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const listed = configuredDataRoots(env);
  if (listed) {
    const missing = listed.filter((r) => !existsSync(r));
    const datasets = dataRoots('.', { env }).filter((r) => !listed.includes(r));
    return `local inputs are read only under ${listed.join(', ')} (${DATA_ROOTS_ENV})${datasets.length ? ` and the shared datasets folder ${datasets.join(', ')}` : ''}, never under a pipeline file's folder outside them${missing.length ? `; ${missing.join(', ')} does not exist on this host, so allows nothing` : ''}`;
  }
  if (!o.cluster) return undefined;
  return `note: ${DATA_ROOTS_ENV} is not set, so this worker reads a pipeline's local inputs under whatever folder the submitter's pipeline file names (any folder of this host, its state folder too), and their lines can reach the store and \`status\` as quarantined rows; set ${DATA_ROOTS_ENV} on it to the folders local inputs may come from, to confine them`;
}

/** `--cuda-queues`: names among the queues this worker serves; undefined when not given. */
export function parseCudaQueues(raw: string | undefined, slots: QueueSlot[], usage: string): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(',').map((n) => n.trim());
  for (const n of names)
    if (!slots.some((s) => s.queue === n))
      throw new CliError(
        `--cuda-queues names ${JSON.stringify(n)}, which is not one of the queues this worker serves (${slots.map((s) => s.queue).join(', ')})\nusage: ${usage}`,
        2,
      );
  return names;
}

/** What runTogether needs of an SDK worker. */
export type RunnableWorker = Pick<Worker, 'run' | 'shutdown' | 'getState'>;

/**
 * Runs the queue workers of one process until all have stopped. One that fails stops the others, so
 * the process ends instead of half-serving, and only once they have all stopped, so the stage-cache
 * uploads their last stages started are flushed too. `done` gives the first failure, if any.
 */
export function runTogether(workers: RunnableWorker[]): { stop: () => void; done: Promise<{ error: unknown } | undefined> } {
  // Only running workers are asked to stop: the SDK throws for any other state, and a failed worker
  // is FAILED, so stopping it first used to leave the other queues serving and the process up.
  const stop = () => {
    for (const w of workers)
      if (w.getState() === 'RUNNING')
        try {
          w.shutdown();
        } catch {
          // It stopped between the look and the call.
        }
  };
  let first: { error: unknown } | undefined;
  const done = Promise.allSettled(
    workers.map((w) =>
      w.run().catch((e: unknown) => {
        first ??= { error: e };
        stop();
      }),
    ),
  ).then(() => first);
  return { stop, done };
}
