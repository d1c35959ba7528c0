/**
 * Turns a library stage kind into a Temporal activity: heartbeats (which also deliver
 * cancellation), resume data across retries, input errors as non-retryable failures, and the
 * stage cache record on success.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Context, CancelledFailure } from '@temporalio/activity';
import { InputError, IntegrityError } from '../src/errors.ts';
import { diskFullError, diskFullHint, isDiskFull } from '../src/util/disk-full.ts';
import { isolationFromEnv, type Isolation } from '../src/isolate/limits.ts';
import { configForKind } from '../src/stages/plugin-kinds.ts';
import { runStageInChild } from '../src/isolate/run-in-child.ts';
import { withTestHooks } from '../src/isolate/test-hooks.ts';
import { checkStageOutputs } from '../src/stages/output-check.ts';
import { inStage } from '../src/stages/stage-where.ts';
import type { AnyStageKind, StageAudit, StageContext } from '../src/stages/types.ts';
import type { StageCache } from '../src/store/stage-cache.ts';
import { INPUT_PINS, type ArtifactStore } from '../src/store/artifact-store.ts';
import type { StageProgress } from '../src/types.ts';
import { FilePoints, type ProgressPoints } from '../src/store/progress-points.ts';
import { statePaths } from '../src/state-paths.ts';
import type { RunBackends, RunEndRecord, StageRequest, StageResult } from '../workflows/types.ts';
import { recordStageAttempt, recordTrainingThroughput } from './metrics.ts';
import { externalInputsOf, lookupStage, stageKey } from './cache.ts';
import { asActivityFailure, lockWaitText } from './failures.ts';
import { LockBusyError } from '../src/util/dir-lock.ts';
import { tellStageCompleted } from './audit.ts';

export interface ActivityDeps {
  store: ArtifactStore;
  cache: StageCache;
  stateDir: string;
  /**
   * Called after a stage succeeds (the audit trail hooks in here), with what the kind's `audit` says
   * its record adds (ingest's source files, register's version).
   */
  onStageCompleted?: (req: StageRequest, result: StageResult, audit?: StageAudit) => Promise<void>;
  /** Called when a run ends, by the worker that runs its workflow (the audit trail hooks in here). */
  onRunEnded?: (rec: RunEndRecord) => Promise<void>;
  heartbeatEveryMs?: number;
  /** Where kinds with `isolation` run and their children's memory limits; default from the environment (isolationFromEnv). */
  isolation?: Isolation;
  /**
   * A stage that ran longer than this waits for its cache record's upload to the shared store; a
   * shorter one leaves it running in the background (StageCache.put). Default 1 s.
   */
  awaitRecordUploadAfterMs?: number;
  /** Where per-step training points go (the dashboard's live curves); default the files under the state folder. */
  points?: ProgressPoints;
  /** This worker's store and database, checked against each run's before every activity (backends.ts backendsCheck); unchecked when absent. */
  backends?: RunBackends;
  /** Told when this worker lacks a shared store or database that a run has (backends.ts): the worker stops. */
  onLacksRunSettings?: (message: string) => void;
}

/**
 * Against a stage of seconds or hours a round trip to the store is nothing, while a record lost to a
 * crash in that moment would cost a rerun of the whole stage; for a stage of milliseconds the round
 * trip is most of the overhead it adds.
 */
const AWAIT_RECORD_UPLOAD_AFTER_MS = 1000;

interface HeartbeatDetails {
  progress?: StageProgress;
  resume?: unknown;
}

export function stageActivity(kind: AnyStageKind, deps: ActivityDeps): (req: StageRequest) => Promise<StageResult> {
  const isolation = deps.isolation ?? isolationFromEnv();
  const inChild = kind.isolation !== undefined && isolation.mode === 'process';
  const points =
    deps.points ??
    new FilePoints(statePaths(deps.stateDir).progress, (e) =>
      console.error(`cannot record a training point: ${(e as Error)?.message ?? e}`),
    );
  const completed = (req: StageRequest, result: StageResult): Promise<void> => tellStageCompleted(kind, deps, req, result);
  return async (req) => {
    const actx = Context.current();
    const previous = actx.info.heartbeatDetails as HeartbeatDetails | undefined;
    let details: HeartbeatDetails = { resume: previous?.resume };
    const workDir = join(
      deps.store.root,
      'tmp',
      // The random part: a stage scheduled again after a stopped worker (workflows/pipeline.ts) counts its attempts from
      // 1 again, and its earlier attempt of that number may still run in this process.
      `stage-${req.runId}-${req.stageId}-${actx.info.attempt}-${randomBytes(3).toString('hex')}-${process.pid}`.replace(
        /[^A-Za-z0-9._-]/g,
        '_',
      ),
    );
    // A silent stage must still heartbeat, or it would never hear that the run was cancelled.
    // Well inside the heartbeat timeout, so a busy machine does not time out a healthy stage.
    const timeoutMs = actx.info.heartbeatTimeoutMs ?? 0;
    const every = deps.heartbeatEveryMs ?? (timeoutMs > 0 ? Math.min(2000, Math.max(200, timeoutMs / 5)) : 2000);
    const beat = setInterval(() => actx.heartbeat(details), every);
    let readInputs: string[] | undefined;
    // Per-step metrics (training curves) go to a file the dashboard tails: heartbeats keep only the latest.
    const execution = actx.info.workflowExecution?.runId;
    const ctx: StageContext = {
      runId: req.runId,
      executionId: actx.info.workflowExecution?.runId,
      stageId: req.stageId,
      attempt: actx.info.attempt,
      baseDir: req.baseDir,
      specHash: req.specHash,
      actor: req.actor,
      cacheKey: req.cacheKey,
      ...(req.freshTraining ? { freshTraining: true } : {}),
      ...(req.ownCheckpoints ? { ownCheckpoints: req.ownCheckpoints } : {}),
      // Inputs are hard-linked into the scratch folder as the stage gets them, so a worker's cache
      // pruning never takes a file from under a running stage.
      store: deps.store.pinningInto(join(workDir, INPUT_PINS)),
      workDir,
      stateDir: deps.stateDir,
      signal: actx.cancellationSignal,
      resumeFrom: previous?.resume,
      progress(p) {
        const { resume, ...progress } = p;
        details = { progress, resume: resume === undefined ? details.resume : resume };
        actx.heartbeat(details);
        if (typeof progress.metrics?.samplesPerSec === 'number')
          recordTrainingThroughput(req.kind, req.stageId, progress.metrics.samplesPerSec);
        // A curve is a view: a point that cannot be stored is reported by the sink, never thrown.
        if (execution && typeof progress.metrics?.step === 'number')
          points.append(req.runId, execution, req.stageId, { attempt: actx.info.attempt, t: Date.now(), metrics: progress.metrics });
      },
      log(message) {
        actx.log.info(message, { stage: req.stageId });
      },
      inputsRead(externalInputs) {
        readInputs = externalInputs;
      },
    };
    const startedAt = performance.now();
    let outcome: 'succeeded' | 'failed' | 'cancelled' | 'cached' = 'failed';
    try {
      // A retried attempt heartbeats its resume data at once, so a crash before its first progress
      // report cannot lose it. A first attempt has nothing to record yet: its first heartbeat waits
      // for progress or the interval, which keeps a round trip to the server (a write to its
      // database) off every short stage.
      if (details.resume !== undefined) actx.heartbeat(details);
      if (req.lookup) {
        // Inside the heartbeating part: a hit's outputs are verified, which can take a while.
        const { key, hit, executionId } = await lookupStage(
          kind,
          deps.cache,
          deps.stateDir,
          { kind: req.kind, config: req.config, baseDir: req.baseDir },
          req.lookup.reuse,
        );
        if (hit) {
          if (executionId !== undefined && executionId === execution && hit.producedBy.stageId === req.stageId) {
            // An earlier attempt of this very stage ran it and recorded its outputs, then failed after
            // (its audit record, say). The stage is done, in this run: finish what that attempt left,
            // instead of reporting the outputs as reused and leaving the audit trail without them.
            const result: StageResult = { outputs: hit.outputs, cacheKey: key };
            await completed(req, result);
            outcome = 'succeeded';
            return result;
          }
          // The run's trail says which outputs it took and from which run: a version registered by a resumed run
          // otherwise had no record of the data it was trained on or how, and a rerun none of where its model came from.
          const result: StageResult = { outputs: hit.outputs, cacheKey: key, cachedFrom: hit.producedBy };
          await completed({ ...req, cacheKey: key }, result);
          outcome = 'cached';
          return result;
        }
        req = { ...req, cacheKey: key };
        ctx.cacheKey = key;
      }
      // Only a stage that runs needs its scratch folder; a hit returns above without one.
      mkdirSync(workDir, { recursive: true });
      const outputs = inChild
        ? await runStageInChild(kind, configForKind(kind, req.config), ctx, isolation.limits)
        : await kind.run(req.config, kind.isolation ? withTestHooks(ctx) : ctx);
      if (actx.cancellationSignal.aborted) throw new CancelledFailure('stage cancelled');
      await checkStageOutputs(kind, outputs, deps.store);
      let key = req.cacheKey;
      // The key is recomputed when it may not name this attempt's work: another worker looked it up with
      // other code (a plugin edited and only some workers restarted), or the inputs read differ from those
      // looked up (a source file changed in between).
      const otherCode = req.cacheKeyCodeVersion !== undefined && req.cacheKeyCodeVersion !== kind.codeVersion;
      if (key && (otherCode || readInputs)) {
        const own = stageKey(kind, req.config, readInputs ?? (await externalInputsOf(kind, req.config, req.baseDir, deps.stateDir)));
        if (own !== key) {
          ctx.log(
            otherCode
              ? `the cache lookup ran ${kind.kind} code version ${req.cacheKeyCodeVersion}, this worker ${kind.codeVersion}: outputs are recorded under this code's key (${own.slice(0, 12)}…); restart the workers that run the older code`
              : `inputs changed between the cache lookup and the read; outputs are recorded under the key of what was read (${own.slice(0, 12)}…), not the looked-up one (${key.slice(0, 12)}…)`,
          );
          key = own;
        }
      }
      const result: StageResult = { outputs, cacheKey: key, ...(actx.info.attempt > 1 ? { attempt: actx.info.attempt } : {}) };
      // The cache record and the audit record are independent writes: side by side, a stage pays
      // for the slower of the two, not their sum. Either failing fails the attempt, and both are
      // idempotent on retry (same key; the audit record's dedupe key). The record's local copy is
      // written now; a short stage leaves its shared copy (a remote store) uploading in the background.
      // Both are settled before the attempt ends, so a retry finds the record of an attempt whose
      // audit record failed, and finishes it (see the lookup above).
      const written = await Promise.allSettled([
        req.writeCache && key && kind.cacheable !== false
          ? deps.cache.put(
              {
                key,
                kind: req.kind,
                outputs,
                producedBy: { runId: req.runId, stageId: req.stageId, ...(execution ? { executionId: execution } : {}) },
                createdAt: new Date().toISOString(),
              },
              {
                upload:
                  performance.now() - startedAt > (deps.awaitRecordUploadAfterMs ?? AWAIT_RECORD_UPLOAD_AFTER_MS) ? 'await' : 'background',
              },
            )
          : undefined,
        completed(req, result),
      ]);
      const failed = written.find((w): w is PromiseRejectedResult => w.status === 'rejected');
      if (failed) throw failed.reason;
      outcome = 'succeeded';
      return result;
    } catch (err) {
      if (actx.cancellationSignal.aborted) {
        outcome = 'cancelled';
        throw new CancelledFailure('stage cancelled');
      }
      if (err instanceof IntegrityError && err.sha256 !== undefined) {
        const evicted = await deps.cache.evictReferencing(err.sha256).catch(() => []);
        actx.log.warn(`damaged store object ${err.sha256}: evicted ${evicted.length} cache record(s) that named it`, {
          stage: req.stageId,
        });
      }
      if (isDiskFull(err)) {
        // The places a stage writes, TEMPERED_HOME first: of those on one disk, the first is named. One built where
        // the write failed (a store put, a checkpoint) names its folder already, but not the run to resume.
        const paths = statePaths(deps.stateDir);
        err = diskFullError(err, [deps.stateDir, deps.store.root, paths.checkpoints, paths.cache, paths.progress, tmpdir()], {
          hint: diskFullHint(req.runId),
        });
      }
      const waiting = err instanceof LockBusyError ? lockWaitText(err, actx.info) : undefined;
      if (waiting) actx.log.warn(`stage ${req.stageId} of run ${req.runId}, attempt ${actx.info.attempt}: ${waiting}`);
      throw asActivityFailure(
        err instanceof InputError ? inStage(err, { id: req.stageId, kind: kind.kind, withSchema: kind.withSchema }) : err,
        actx.info.attempt,
        actx.info,
      );
    } finally {
      // The stage's last points are stored before it reports done, so its finished curve is whole;
      // still heartbeating, and for 5 s at most: a slow database must not hold a finished stage.
      let giveUp: NodeJS.Timeout | undefined;
      await Promise.race([points.flush(), new Promise((r) => (giveUp = setTimeout(r, 5000)))]);
      clearTimeout(giveUp);
      clearInterval(beat);
      rmSync(workDir, { recursive: true, force: true });
      if (outcome !== 'cached') recordStageAttempt(req.kind, req.stageId, outcome, (performance.now() - startedAt) / 1000);
    }
  };
}
