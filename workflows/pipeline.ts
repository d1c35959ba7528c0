/**
 * `pipelineRun`: interprets a planned pipeline as a DAG of activities. Deterministic orchestration
 * only: every stage whose needs are met starts at once (up to `concurrency`), each with its own
 * retry policy, timeouts and task queue; outputs flow downstream as small artifact references.
 *
 * Upgrading: runs in flight replay this code. A change that alters the commands a run issues
 * (activities scheduled, their order, timers) must go behind `patched('<change-id>')` with the old
 * path kept; tests/replay.test.ts replays committed histories of every released version and fails
 * on non-determinism. Nothing is patched yet: no earlier version has been released.
 */
import {
  ActivityCancellationType,
  ApplicationFailure,
  CancelledFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import { resolveStageRefs } from '../src/spec/runtime-refs.ts';
import { durationMs } from './duration.ts';
import type { CacheLookupRequest, CacheLookupResult, IngestFingerprint, RunGateRequest, RunGateResult, RunInput, RunOutcomeRecord, RunStatus, StageRequest, StageResult, StageStatus, RunStage } from './types.ts';

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

const DEFAULT_TIMEOUT_MS = 2 * 3_600_000;
const DEFAULT_HEARTBEAT_MS = 60_000;

function stageActivity(stage: RunStage, defaultQueue: string | undefined): StageActivity {
  const r = stage.retry ?? {};
  const acts = proxyActivities<Record<string, StageActivity>>({
    activityId: `stage-${stage.id}`,
    taskQueue: stage.queue ?? defaultQueue,
    startToCloseTimeout: durationMs(stage.timeout, DEFAULT_TIMEOUT_MS),
    heartbeatTimeout: durationMs(stage.heartbeatTimeout, DEFAULT_HEARTBEAT_MS),
    // Wait for the activity to acknowledge cancellation so a cancelled run leaves no stage running.
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    retry: {
      maximumAttempts: r.maximumAttempts ?? 3,
      initialInterval: durationMs(r.initialInterval, 1000),
      backoffCoefficient: r.backoffCoefficient ?? 2,
      maximumInterval: durationMs(r.maximumInterval, 60_000),
      nonRetryableErrorTypes: ['InputError', ...(r.nonRetryableErrorTypes ?? [])],
    },
  });
  return acts[stage.uses]!;
}

function failureInfo(err: unknown): StageStatus['error'] {
  // ActivityFailure wraps the activity's own failure in `cause`.
  let e = err as { message?: string; cause?: unknown; type?: string; nonRetryable?: boolean; name?: string; details?: unknown[] };
  while (e && e.cause && (e as { name?: string }).name === 'ActivityFailure') e = e.cause as typeof e;
  const info: NonNullable<StageStatus['error']> = { message: e?.message ?? String(err), type: e?.type ?? e?.name, nonRetryable: e?.nonRetryable };
  const hint = (e?.details?.[0] as { hint?: unknown } | undefined)?.hint;
  if (typeof hint === 'string') info.hint = hint;
  return info;
}

export async function pipelineRun(input: RunInput): Promise<RunStatus> {
  const { plan, options } = input;
  const info = workflowInfo();
  const now = () => new Date(Date.now()).toISOString();
  const status: RunStatus = {
    runId: info.workflowId,
    name: plan.name,
    specHash: plan.specHash,
    state: 'running',
    startedAt: now(),
    actor: options.actor,
    resumeOf: options.resumeOf,
    params: plan.params,
    stages: plan.stages.map((s) => ({ id: s.id, uses: s.uses, needs: s.needs, state: 'pending' })),
  };
  setHandler(statusQuery, () => status);

  const byId = new Map(status.stages.map((s) => [s.id, s]));
  const outputs: Record<string, Record<string, unknown>> = {};
  const scopes = new Map<string, CancellationScope>();
  const running = new Map<string, Promise<void>>();
  const concurrency = Math.max(1, plan.concurrency ?? plan.stages.length);
  const failFast = (plan.onFailure ?? 'fail-fast') === 'fail-fast';
  let stopping = false;

  const runOne = async (stage: RunStage): Promise<void> => {
    const st = byId.get(stage.id)!;
    st.state = 'running';
    st.startedAt = now();
    try {
      const config = resolveStageRefs(stage.with, outputs) as Record<string, unknown>;
      const useCache = stage.cache !== false && !options.noCache;
      const lookup = await lookupCache({ kind: stage.uses, config, baseDir: options.baseDir });
      st.cacheKey = lookup.key;
      if (useCache && lookup.hit) {
        outputs[stage.id] = lookup.hit.outputs;
        st.outputs = lookup.hit.outputs;
        st.cachedFrom = lookup.hit.producedBy;
        st.state = 'cached';
        st.endedAt = now();
        return;
      }
      st.attempt = 1;
      const req: StageRequest = {
        runId: info.workflowId,
        stageId: stage.id,
        kind: stage.uses,
        config,
        baseDir: options.baseDir,
        specHash: plan.specHash,
        actor: options.actor,
        cacheKey: lookup.key,
        writeCache: stage.cache !== false,
      };
      const result = await stageActivity(stage, options.defaultQueue)(req);
      outputs[stage.id] = result.outputs;
      st.outputs = result.outputs;
      st.state = 'succeeded';
    } catch (err) {
      if (isCancellation(err)) {
        st.state = 'cancelled';
      } else {
        st.state = 'failed';
        st.error = failureInfo(err);
        if (failFast) {
          stopping = true;
          for (const [id, scope] of scopes) if (id !== stage.id) scope.cancel();
        }
      }
    } finally {
      st.endedAt = now();
    }
  };

  const blockedBy = (s: StageStatus): string | undefined =>
    s.needs.find((n) => ['failed', 'skipped', 'cancelled'].includes(byId.get(n)!.state));
  const ready = (s: StageStatus): boolean => s.needs.every((n) => ['succeeded', 'cached'].includes(byId.get(n)!.state));

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
      status.gate = await checkRunGate({
        pipeline: plan.name,
        runId: info.workflowId,
        specHash: plan.specHash,
        actor: options.actor,
        scheduleId: options.scheduleId,
        gate: gate!,
        ingest: fingerprints(),
      });
      if (!status.gate.proceed) {
        for (const st of status.stages) {
          if (st.state === 'pending') {
            st.state = 'skipped';
            st.skippedBecause = `run gate: ${status.gate.reason}`;
          }
        }
      }
    }
    // Stages downstream of ingest wait while the gate has not been decided.
    const gateHolds = gatePending;
    for (const st of status.stages) {
      if (st.state !== 'pending') continue;
      if (cancelled()) {
        st.state = 'cancelled';
        continue;
      }
      const blocker = blockedBy(st);
      if (blocker || stopping) {
        st.state = 'skipped';
        st.skippedBecause = blocker
          ? `needs '${blocker}', which ${byId.get(blocker)!.state === 'skipped' ? 'was skipped' : byId.get(blocker)!.state}`
          : 'the run stopped after a failure (fail-fast)';
        continue;
      }
      if (ready(st) && running.size < concurrency && !(gateHolds && !ingestIds.includes(st.id))) {
        const stage = plan.stages.find((s) => s.id === st.id)!;
        const scope = new CancellationScope();
        scopes.set(st.id, scope);
        running.set(
          st.id,
          scope.run(() => runOne(stage)).finally(() => {
            running.delete(st.id);
            scopes.delete(st.id);
          }),
        );
      }
    }
    if (running.size === 0) break;
    // runOne never rejects, so this wakes on the first stage to settle.
    await Promise.race(running.values());
  }

  status.endedAt = now();
  if (cancelled()) {
    status.state = 'cancelled';
    // The final status travels with the cancellation so clients can read it without a worker.
    throw new CancelledFailure('run cancelled', [status]);
  }
  const failed = status.stages.filter((s) => s.state === 'failed');
  if (failed.length > 0) {
    status.state = 'failed';
    const first = failed[0]!;
    throw ApplicationFailure.create({
      type: 'PipelineFailed',
      message: `stage '${first.id}' failed: ${first.error?.message ?? 'unknown error'}${failed.length > 1 ? ` (and ${failed.length - 1} more)` : ''}`,
      nonRetryable: true,
      details: [status],
    });
  }
  status.state = 'succeeded';
  if (ingestIds.length > 0 && status.gate?.proceed !== false) {
    await recordRunOutcome({ pipeline: plan.name, scheduleId: options.scheduleId, runId: info.workflowId, specHash: plan.specHash, ingest: fingerprints() });
  }
  return status;
}
