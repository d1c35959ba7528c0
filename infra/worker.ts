/**
 * Builds and runs a tempered worker: the pipeline workflow plus one activity per stage kind, on a
 * task queue. Run several (on several machines) against one Temporal cluster to scale out; a GPU
 * machine's worker listens on the `gpu` queue so stages with `queue: gpu` land there.
 */
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, Worker, type NativeConnection, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { DataConverter } from '@temporalio/common';
import { installRuntime } from './runtime.ts';
import { temporalDataConverter } from './payload-codec.ts';
import { createActivities } from '../activities/index.ts';
import { backendsCheck, type BackendsToRead } from '../activities/backends.ts';
import type { ActivityDeps } from '../activities/stage-adapter.ts';
import type { AnyStageKind } from '../src/stages/types.ts';
import type { RunBackends } from '../workflows/types.ts';

const WORKFLOWS_PATH = fileURLToPath(new URL('../workflows/index.ts', import.meta.url));

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();

/**
 * Bundles the workflow code once per process and failure converter (webpack takes a few seconds). The workflow's own
 * failures (a failed run's message) are made inside the sandbox, by the converter bundled with it: the data
 * converter's `failureConverterPath` (TEMPERED_PAYLOAD_KEY's, infra/payload-codec.ts), which a prebuilt bundle does
 * not take from the worker's options.
 */
export function workflowBundle(failureConverterPath?: string): Promise<WorkflowBundleWithSourceMap> {
  let bundle = bundles.get(failureConverterPath ?? '');
  if (!bundle) {
    bundle = bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, failureConverterPath, logger: quietLogger });
    bundles.set(failureConverterPath ?? '', bundle);
  }
  return bundle;
}

const noop = () => undefined;
const quietLogger = {
  trace: noop,
  debug: noop,
  info: noop,
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
  log: noop,
};

const DEFAULT_MAX_ACTIVITIES = 8;

/**
 * Activity pollers for a worker that runs `maxActivities` at once: half of them, at least one. Each
 * outstanding poll holds an activity slot, and the SDK's default (as many pollers as slots, up to 10)
 * held all of them, so the server could never hand a stage to the worker that had just scheduled it
 * (eager dispatch) and every stage waited for a poll instead: bench/orchestration.bench.ts, 20 no-op
 * stages in a row on a quiet 2-core machine, 102 ms a stage against a bare activity's 52 ms (1.94×)
 * with all 8 slots polling, 52 against 52 with half, both then on the dev server's 50 ms tick
 * (infra/dev-server.ts; README, Benchmarks).
 */
export function activityPollers(maxActivities: number): number {
  return Math.max(1, Math.floor(maxActivities / 2));
}

export interface WorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  kinds: ReadonlyMap<string, AnyStageKind>;
  deps: ActivityDeps;
  /** Reads this worker's store and database ids again, when a run names ids it has not read (activities/backends.ts). */
  rereadBackends?: (which: BackendsToRead) => Promise<RunBackends>;
  /** Whether this worker also runs workflow tasks (a GPU-only worker may run activities alone). */
  workflows?: boolean;
  maxConcurrentActivities?: number;
  /** How payloads are encoded; default: the environment's (TEMPERED_PAYLOAD_KEY), as every tempered client has it. */
  dataConverter?: DataConverter;
}

export async function createWorker(opts: WorkerOptions): Promise<Worker> {
  installRuntime();
  const maxActivities = opts.maxConcurrentActivities ?? DEFAULT_MAX_ACTIVITIES;
  const dataConverter = opts.dataConverter ?? temporalDataConverter();
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    workflowBundle: opts.workflows === false ? undefined : await workflowBundle(dataConverter.failureConverterPath),
    activities: createActivities(opts.kinds, opts.deps),
    dataConverter,
    // Every activity of a run first checks that the run keeps its artifacts and records where this worker does.
    ...(opts.deps.backends
      ? { interceptors: { activity: [backendsCheck(opts.deps.backends, opts.deps.onLacksRunSettings, opts.rereadBackends)] } }
      : {}),
    maxConcurrentActivityTaskExecutions: maxActivities,
    activityTaskPollerBehavior: { type: 'simple-maximum', maximum: activityPollers(maxActivities) },
    // A chain's next stage may go to this worker at once; of stages scheduled together (a fan-out)
    // only one does, and the rest go through the queue to whichever worker is free.
    maxEagerActivityReservationsPerWorkflowTask: 1,
    // Lets a SIGKILLed worker's activities be retried promptly elsewhere (heartbeat timeout does the rest).
    shutdownGraceTime: '10s',
    // Heartbeats carry live progress to `tempered status`; the SDK's default throttle (up to 60 s) would hide it.
    maxHeartbeatThrottleInterval: '1s',
    defaultHeartbeatThrottleInterval: '1s',
  });
}
