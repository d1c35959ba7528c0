/**
 * `pipelineRun`: interprets a planned pipeline as a DAG of activities. Deterministic orchestration
 * only: every stage whose needs are met starts at once (up to `concurrency`), each with its own
 * retry policy, timeouts and task queue; outputs flow downstream as small artifact references.
 *
 * Upgrading: runs in flight replay this code. A change that alters the commands a run issues
 * (activities scheduled, their order, timers) must go behind `patched('<change-id>')` with the old
 * path kept; tests/replay.test.ts replays committed histories of every released version and fails
 * on non-determinism.
 *
 * Plans are the spec planner's `PlannedPipeline` (durations in milliseconds, defaults filled in).
 * Inputs recorded before the workflow took that type may lack fields; each `??` below fills one as
 * the workflow did then, so those histories replay unchanged.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancelledFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { DEFAULT_HEARTBEAT_MS, DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from '../src/spec/defaults.ts';
import { resolveStageRefs } from '../src/spec/runtime-refs.ts';
import type { PlannedStage } from '../src/spec/types.ts';
import { nextStages } from './next-stages.ts';
import { pendingStatus } from './pending-status.ts';
import { runOptionsRefusal, uncachedCheckpointsOf } from './run-checkpoints.ts';
import type {
  CacheLookupRequest,
  CacheLookupResult,
  IngestFingerprint,
  RunGateRequest,
  RunGateResult,
  RunInput,
  RunEndRecord,
  RunOutcomeRecord,
  RunStatus,
  StageRequest,
  StageResult,
  StageStatus,
} from './types.ts';

export const statusQuery = defineQuery<RunStatus>('status');

type StageActivity = (req: StageRequest) => Promise<StageResult>;

const { lookupCache, checkRunGate, recordRunOutcome } = proxyLocalActivities<{
  lookupCache(req: CacheLookupRequest): Promise<CacheLookupResult>;
  checkRunGate(req: RunGateRequest): Promise<RunGateResult>;
  recordRunOutcome(rec: RunOutcomeRecord): Promise<void>;
}>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 5 },
});

/**
 * The run's end record waits out a database that is away (a restart, a failover) for up to half an hour, as a
 * stage's records do, instead of five quick tries: with five, an outage of a minute at a run's end lost the record and
 * failed a run whose stages had all succeeded.
 */
const { auditRunEnded } = proxyLocalActivities<{ auditRunEnded(rec: RunEndRecord): Promise<void> }>({
  startToCloseTimeout: '5 minutes',
  scheduleToCloseTimeout: '30 minutes',
  // Attempts 1 s, 2 s, 4 s … apart, then a minute: the half hour bounds them (about 35).
  retry: { maximumAttempts: 100, maximumInterval: '1 minute' },
});

/**
 * A local activity runs on the run's own worker. Refused there because that worker keeps artifacts or records
 * elsewhere than the run (activities/backends.ts), it fails the workflow task, not the run: the task is tried again,
 * on another worker once that one has stopped (a worker started without the team's settings stops itself).
 */
function onOtherBackends(e: unknown): void {
  const cause = (e as { cause?: { name?: string; type?: string; message?: string } } | undefined)?.cause;
  if (cause?.name === 'ApplicationFailure' && cause.type === 'BackendMismatch') throw new Error(cause.message);
}

function refusedOnOtherBackends<T>(p: Promise<T>): Promise<T> {
  return p.catch((e: unknown) => {
    onOtherBackends(e);
    throw e;
  });
}

/** The timeout of a stage without one in inputs recorded before plans came from the planner. */
const RECORDED_DEFAULT_TIMEOUT_MS = 2 * 3_600_000;

/** The task queue a stage's activity goes to; undefined: the workflow's own. */
function stageQueue(stage: PlannedStage, defaultQueue: string | undefined): string | undefined {
  return stage.queue ?? defaultQueue;
}

function stageActivity(stage: PlannedStage, defaultQueue: string | undefined): StageActivity {
  const r: Partial<PlannedStage['retry']> = stage.retry ?? {};
  const timeout = stage.timeout ?? (patched('planner-default-timeout') ? DEFAULT_TIMEOUT_MS : RECORDED_DEFAULT_TIMEOUT_MS);
  const acts = proxyActivities<Record<string, StageActivity>>({
    activityId: `stage-${stage.id}`,
    taskQueue: stageQueue(stage, defaultQueue),
    startToCloseTimeout: timeout,
    // The planner leaves the heartbeat timeout out when the file does not set one.
    heartbeatTimeout: stage.heartbeatTimeout ?? DEFAULT_HEARTBEAT_MS,
    // Wait for the activity to acknowledge cancellation so a cancelled run leaves no stage running.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      maximumAttempts: r.maximumAttempts ?? DEFAULT_RETRY.maximumAttempts,
      initialInterval: r.initialInterval ?? DEFAULT_RETRY.initialInterval,
      backoffCoefficient: r.backoffCoefficient ?? DEFAULT_RETRY.backoffCoefficient,
      maximumInterval: r.maximumInterval ?? DEFAULT_RETRY.maximumInterval,
      nonRetryableErrorTypes: ['InputError', ...(r.nonRetryableErrorTypes ?? [])],
    },
  });
  return acts[stage.uses]!;
}

/**
 * A failed stage's error for its status, with how its retries ended. Reads the failure only: no command
 * is issued, so runs recorded before replay the same.
 */
function failureInfo(err: unknown, stageId: string): StageStatus['error'] {
  // ActivityFailure wraps the activity's own failure in `cause`, and says how its retries ended.
  const outer = err as { name?: string; retryState?: unknown; activityId?: unknown } | undefined;
  const fromStage = outer?.name === 'ActivityFailure' && outer.activityId === `stage-${stageId}`;
  let e = err as { message?: string; cause?: unknown; type?: string; nonRetryable?: boolean; name?: string; details?: unknown[] };
  while (e && e.cause && (e as { name?: string }).name === 'ActivityFailure') e = e.cause as typeof e;
  const info: NonNullable<StageStatus['error']> = {
    message: e?.message ?? String(err),
    type: e?.type ?? e?.name,
    nonRetryable: e?.nonRetryable,
  };
  const details = e?.details?.[0] as { hint?: unknown; code?: unknown } | undefined;
  if (typeof details?.hint === 'string') info.hint = details.hint;
  if (typeof details?.code === 'string') info.code = details.code;
  if (fromStage && typeof outer.retryState === 'string') info.retryState = outer.retryState.replace(/^RETRY_STATE_/, '');
  return info;
}

/**
 * How many times a stage is scheduled again after its attempts ran out on stopped workers: a fleet whose workers are
 * stopped over and over (a supervisor that stops a busy worker for failing its liveness probe) must still end the run.
 */
const STOPPED_WORKER_RESCHEDULES = 5;

/** The stage's retries ran out, and its last attempt ended because its worker was stopped (the SDK's WorkerShutdown). */
function endedByStoppedWorker(err: unknown): boolean {
  const outer = err as { name?: string; retryState?: unknown; cause?: unknown } | undefined;
  if (outer?.name !== 'ActivityFailure' || String(outer.retryState).replace(/^RETRY_STATE_/, '') !== 'MAXIMUM_ATTEMPTS_REACHED')
    return false;
  return (outer.cause as { type?: unknown } | undefined)?.type === 'WorkerShutdown';
}

export async function pipelineRun(input: RunInput): Promise<RunStatus> {
  const { plan, options } = input;
  // Every activity of the run checks it against its worker's own (activities/backends.ts); absent in older runs.
  const backends = options.backends ? { backends: options.backends } : {};
  const info = workflowInfo();
  const now = () => new Date(Date.now()).toISOString();
  // The run's start, not its first workflow task: `status` showed this time while the run waited for a worker.
  const status: RunStatus = pendingStatus(input, info.workflowId, info.startTime.toISOString());
  setHandler(statusQuery, () => status);

  const byId = new Map(status.stages.map((s) => [s.id, s]));
  const outputs: Record<string, Record<string, unknown>> = {};
  const scopes = new Map<string, CancellationScope>();
  const running = new Map<string, Promise<void>>();
  const concurrency = Math.max(1, plan.concurrency ?? plan.stages.length);
  const failFast = (plan.onFailure ?? 'fail-fast') === 'fail-fast';
  let stopping = false;
  // A schedule's runs share its input: each derives its own from its workflow id. A schedule made before the input said
  // so derives too, behind a patch: asked here, before the first await, a run recorded before replays it as false, and
  // keeps training in the folder it began in (a stage scheduled again after a worker stop builds its request anew).
  const uncachedCheckpoints = uncachedCheckpointsOf(input, info.workflowId, () => patched('schedule-run-checkpoints'));

  const runOne = async (stage: PlannedStage): Promise<void> => {
    const st = byId.get(stage.id)!;
    // Attempts used up by stopped workers before the stage was scheduled again (endedByStoppedWorker).
    let spentAttempts = 0;
    st.state = 'running';
    st.startedAt = now();
    try {
      // Refused before any command: no recorded history has such an input, so they replay as before.
      const refusal = runOptionsRefusal(options, stage);
      if (refusal)
        throw ApplicationFailure.create({
          type: 'InputError',
          message: refusal.message,
          nonRetryable: true,
          details: [{ hint: refusal.hint }],
        });
      const config = resolveStageRefs(stage.with, outputs) as Record<string, unknown>;
      // A resume of a --no-cache run reuses only what the run it resumes finished (RunOptions.cachedStages). Absent from
      // the inputs of runs recorded before, which replay as they ran.
      const useCache = stage.cache !== false && (!options.noCache || !!options.cachedStages?.includes(stage.id));
      // A stage on the workflow's own task queue is looked up in the cache by its own activity: a
      // worker that runs this workflow serves that queue too, and a local activity before every
      // stage cost a second workflow activation (bench/orchestration.bench.ts). A stage routed
      // elsewhere (a GPU queue) keeps the lookup here, so a hit needs no worker of that queue.
      const onOwnQueue = (stageQueue(stage, options.defaultQueue) ?? info.taskQueue) === info.taskQueue;
      const looksItselfUp = onOwnQueue && patched('stage-looks-itself-up');
      let done: Pick<StageResult, 'outputs' | 'cachedFrom'> | undefined;
      let keyCodeVersion: string | undefined;
      if (!looksItselfUp) {
        // `stage`: the lookup records a hit in the run's trail. A local activity's input is not compared on replay (only
        // its sequence number, id and type, in its marker), so this field needs no patch: histories recorded without it
        // replay, and an older worker that carries on this run sends none and records nothing.
        const lookup = await refusedOnOtherBackends(
          lookupCache({
            kind: stage.uses,
            config,
            baseDir: options.baseDir,
            ...(useCache ? {} : { read: false }),
            stage: { runId: info.workflowId, stageId: stage.id, specHash: plan.specHash, actor: options.actor },
            ...backends,
          }),
        );
        st.cacheKey = lookup.key;
        keyCodeVersion = lookup.codeVersion;
        if (useCache && lookup.hit) done = { outputs: lookup.hit.outputs, cachedFrom: lookup.hit.producedBy };
      }
      if (!done) {
        st.attempt = 1;
        const request = {
          runId: info.workflowId,
          stageId: stage.id,
          kind: stage.uses,
          config,
          baseDir: options.baseDir,
          specHash: plan.specHash,
          actor: options.actor,
          cacheKey: st.cacheKey,
          ...(keyCodeVersion !== undefined ? { cacheKeyCodeVersion: keyCodeVersion } : {}),
          writeCache: stage.cache !== false,
          // An activity's input is not compared on replay, and left out when unset, runs without it send what they did.
          ...(options.freshTraining ? { freshTraining: true as const } : {}),
          // A stage with `cache: false` trains in a folder of the run's own too (RunOptions.uncachedCheckpoints).
          ...(options.ownCheckpoints
            ? { ownCheckpoints: options.ownCheckpoints }
            : stage.cache === false && typeof uncachedCheckpoints === 'string'
              ? { ownCheckpoints: uncachedCheckpoints }
              : {}),
          ...(looksItselfUp ? { lookup: { reuse: useCache } } : {}),
          ...backends,
        };
        let result: StageResult;
        for (let again = 0; ; again++) {
          try {
            result = await stageActivity(stage, options.defaultQueue)(request);
            break;
          } catch (err) {
            // Its last attempt ended by a worker that was stopped (SIGTERM: an upgrade, a scale-down): the stage did
            // not fail, so it is scheduled again with its attempts anew. A rolling upgrade of three workers stopped
            // each in turn under one training and failed it (the default is 3 attempts).
            // One attempt only (`maximumAttempts: 1`) says the stage must never run twice: its stopped attempt may have
            // done part of its work, so it is not scheduled again.
            const attempts = stage.retry?.maximumAttempts ?? DEFAULT_RETRY.maximumAttempts;
            if (
              attempts > 1 &&
              again < STOPPED_WORKER_RESCHEDULES &&
              endedByStoppedWorker(err) &&
              patched('stage-again-after-worker-stop')
            ) {
              spentAttempts += attempts;
              st.attempt = spentAttempts + 1;
              continue;
            }
            throw err;
          }
        }
        // The stage may have read other inputs than the lookup saw; its key names what it read.
        if (result.cacheKey) st.cacheKey = result.cacheKey;
        // A stage that succeeded on a retry says so: its status would read as a first-attempt success.
        if (result.attempt) st.attempt = spentAttempts + result.attempt;
        done = result;
      }
      outputs[stage.id] = done.outputs;
      st.outputs = done.outputs;
      if (done.cachedFrom) {
        st.cachedFrom = done.cachedFrom;
        st.attempt = undefined;
        st.state = 'cached';
      } else {
        st.state = 'succeeded';
      }
    } catch (err) {
      if (isCancellation(err)) {
        st.state = 'cancelled';
      } else {
        st.state = 'failed';
        st.error = failureInfo(err, stage.id);
        // The workflow learns no attempt count of a failure; when the limit was reached, it is the limit.
        if (st.error?.retryState === 'MAXIMUM_ATTEMPTS_REACHED')
          st.attempt = spentAttempts + (stage.retry?.maximumAttempts ?? DEFAULT_RETRY.maximumAttempts);
        if (failFast) {
          stopping = true;
          for (const [id, scope] of scopes) if (id !== stage.id) scope.cancel();
        }
      }
    } finally {
      st.endedAt = now();
    }
  };

  const cancelled = () => CancellationScope.current().consideredCancelled;
  const ingestIds = plan.stages.filter((s) => s.uses === 'ingest').map((s) => s.id);
  const fingerprints = (): IngestFingerprint[] =>
    ingestIds.map((id) => ({ stageId: id, dataHash: String(outputs[id]?.dataHash ?? ''), report: outputs[id]?.report }));
  const ingestDone = () => ingestIds.every((id) => ['succeeded', 'cached'].includes(byId.get(id)!.state));
  const gate = options.gate ?? plan.triggers;
  let gatePending = !!gate && ingestIds.length > 0;
  for (;;) {
    if (gatePending && ingestDone()) {
      gatePending = false;
      status.gate = await refusedOnOtherBackends(
        checkRunGate({
          pipeline: plan.name,
          runId: info.workflowId,
          specHash: plan.specHash,
          actor: options.actor,
          scheduleId: options.scheduleId,
          gate: gate!,
          ingest: fingerprints(),
          ...backends,
        }),
      );
      if (!status.gate.proceed) {
        for (const st of status.stages) {
          if (st.state === 'pending') {
            st.state = 'skipped';
            st.skippedBecause = `run gate: ${status.gate.reason}`;
          }
        }
      }
    }
    // Stages other than ingest wait while the gate has not been decided.
    const next = nextStages(
      { stages: plan.stages, concurrency },
      {
        states: new Map(status.stages.map((st) => [st.id, st.state])),
        running: running.size,
        stopping,
        cancelled: cancelled(),
        gateAllows: gatePending ? new Set(ingestIds) : undefined,
      },
    );
    for (const id of next.cancel) byId.get(id)!.state = 'cancelled';
    for (const { id, because } of next.skip) {
      byId.get(id)!.state = 'skipped';
      byId.get(id)!.skippedBecause = because;
    }
    for (const id of next.start) {
      const scope = new CancellationScope();
      scopes.set(id, scope);
      running.set(
        id,
        scope
          .run(() => runOne(plan.stages.find((s) => s.id === id)!))
          .finally(() => {
            running.delete(id);
            scopes.delete(id);
          }),
      );
    }
    if (next.done) break;
    // runOne never rejects, so this wakes on the first stage to settle.
    await Promise.race(running.values());
  }

  status.endedAt = now();
  // How the run ended goes in the audit trail (runs recorded before this was added did without it).
  const audited = patched('audit-run-end');
  // A record that still cannot be written is logged and the run ends as it did: the audit trail's gap is said on the
  // worker, and the outcome is the stages', never the audit log's error.
  // While the run's end is recorded the status says so (a query's state only: no command, so recorded histories replay
  // as before).
  const closing = async (record: () => Promise<unknown>): Promise<void> => {
    status.recordingEnd = true;
    try {
      await record();
    } finally {
      delete status.recordingEnd;
    }
  };
  const auditEnd = async (error?: string): Promise<void> => {
    if (!audited) return;
    await closing(() =>
      CancellationScope.nonCancellable(() =>
        auditRunEnded({
          runId: info.workflowId,
          execution: info.runId,
          state: status.state as RunEndRecord['state'],
          actor: options.actor,
          specHash: plan.specHash,
          pipeline: plan.name,
          stages: Object.fromEntries(status.stages.map((st) => [st.id, st.state])),
          ...(error ? { error } : {}),
          ...(options.scheduleId ? { scheduleId: options.scheduleId } : {}),
          ...backends,
        }),
      ).catch((e: unknown) => {
        onOtherBackends(e);
        log.error(`the end of run ${info.workflowId} could not be written to the audit log: ${(e as Error).message}`);
      }),
    );
  };
  if (cancelled()) {
    status.state = 'cancelled';
    await auditEnd();
    // The final status travels with the cancellation so clients can read it without a worker.
    throw new CancelledFailure('run cancelled', [status]);
  }
  const failed = status.stages.filter((s) => s.state === 'failed');
  if (failed.length > 0) {
    status.state = 'failed';
    const first = failed[0]!;
    const message = `stage '${first.id}' failed: ${first.error?.message ?? 'unknown error'}${failed.length > 1 ? ` (and ${failed.length - 1} more)` : ''}`;
    await auditEnd(message);
    throw ApplicationFailure.create({
      type: 'PipelineFailed',
      message,
      nonRetryable: true,
      details: [status],
    });
  }
  status.state = 'succeeded';
  await auditEnd();
  if (ingestIds.length > 0 && status.gate?.proceed !== false) {
    // The outcome's record (for the run gates of later runs) waits for the database too: still closing meanwhile.
    await closing(() =>
      refusedOnOtherBackends(
        recordRunOutcome({
          pipeline: plan.name,
          scheduleId: options.scheduleId,
          runId: info.workflowId,
          specHash: plan.specHash,
          ingest: fingerprints(),
          ...backends,
        }),
      ),
    );
  }
  return status;
}
