/** Product side effects around runs and stages: the audit trail records them. */
import { Context } from '@temporalio/activity';
import { openAudit, type AuditLog } from '../src/audit/log.ts';
import { KeptOpen } from '../src/db/kept-open.ts';
import { statePaths } from '../src/state-paths.ts';
import type { AnyStageKind, StageAudit } from '../src/stages/types.ts';
import { isArtifactRef } from '../src/types.ts';
import type { RunEndRecord, StageRequest, StageResult } from '../workflows/types.ts';
import type { ActivityDeps } from './stage-adapter.ts';

export function artifactHashes(outputs: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(outputs)) if (isArtifactRef(v)) out[k] = v.sha256;
  return out;
}

/** Called by the worker after a stage succeeds; the dedupe key keeps a retried activity from logging twice. */
function executionId(): string {
  try {
    return Context.current().info.workflowExecution?.runId ?? 'unknown';
  } catch {
    return 'no-activity-context';
  }
}

/**
 * `audit`: the log kept open by the caller (a worker process shares one among the SDK workers of its
 * queues, and closes it when it stops); by default one opened on the first stage and kept for the
 * hook's life. Opening per stage checked the schema every time, about 2 ms a stage on SQLite.
 */
export function stageCompletedHook(
  stateDir: string,
  audit: KeptOpen<AuditLog> = new KeptOpen(() => openAudit(statePaths(stateDir).auditDb)),
): (req: StageRequest, res: StageResult, extra?: StageAudit) => Promise<void> {
  return async (req, res, extra) => {
    const log = await audit.get();
    const inputs = artifactHashes(Object.fromEntries(Object.entries(req.config).filter(([, v]) => isArtifactRef(v))));
    // Outputs a stage took from the cache (`cachedFrom`): `stage.reused`, naming the run that made them.
    const reused = res.cachedFrom;
    await log.append({
      action: reused ? 'stage.reused' : 'stage.completed',
      subject: `${req.runId}/${req.stageId}`,
      runId: req.runId,
      actor: req.actor,
      specHash: req.specHash,
      // What the kind adds (StageKind.audit): ingest's source files, the version register's model is.
      ...(extra?.model !== undefined ? { model: extra.model } : {}),
      ...(extra?.modelHash !== undefined ? { modelHash: extra.modelHash } : {}),
      dataHashes: {
        ...extra?.dataHashes,
        ...Object.fromEntries(Object.entries(inputs).map(([k, v]) => [`in:${k}`, v])),
        ...Object.fromEntries(Object.entries(artifactHashes(res.outputs)).map(([k, v]) => [`out:${k}`, v])),
      },
      details: {
        ...extra?.details,
        stage: req.stageId,
        kind: req.kind,
        cacheKey: req.cacheKey,
        ...(reused ? { reusedFrom: { runId: reused.runId, stageId: reused.stageId } } : {}),
      },
      // Scheduled runs can reuse a workflow id (same second, backfills); the execution id keeps their records apart.
      dedupeKey: `${req.runId}/${executionId()}/${req.stageId}/${reused ? 'reused' : 'completed'}`,
    });
  };
}

/**
 * Tells the completion hook (stageCompletedHook) of a stage's outputs, with what the kind adds to its record, read
 * from the outputs so that a retry says the same. The stage's activity calls it when it ran or took the outputs from
 * the cache, and the workflow's cache lookup when it found them for a stage routed to another queue: one record of
 * either, built the same way.
 */
export async function tellStageCompleted(
  kind: AnyStageKind,
  deps: Pick<ActivityDeps, 'store' | 'onStageCompleted'>,
  req: StageRequest,
  result: StageResult,
): Promise<void> {
  if (!deps.onStageCompleted) return;
  const audit = kind.audit ? await kind.audit(req.config, result.outputs, { store: deps.store }) : undefined;
  // Which code produced the outputs: a plugin's version carries its module file's hash.
  await deps.onStageCompleted(req, result, { ...audit, details: { ...audit?.details, codeVersion: kind.codeVersion } });
}

const END_ACTION = { succeeded: 'run.completed', failed: 'run.failed', cancelled: 'run.cancelled' } as const;

/**
 * How a run ended, in the trail beside who submitted it and what each stage produced: completed,
 * failed (with the first failed stage's error) or cancelled. Once per execution (the dedupe key),
 * however often the workflow's worker retries it.
 */
export function runEndedHook(audit: KeptOpen<AuditLog>): (rec: RunEndRecord) => Promise<void> {
  return async (rec) => {
    await (
      await audit.get()
    ).append({
      action: END_ACTION[rec.state],
      subject: rec.runId,
      runId: rec.runId,
      actor: rec.actor,
      specHash: rec.specHash,
      details: { pipeline: rec.pipeline, execution: rec.execution, stages: rec.stages, ...(rec.error ? { error: rec.error } : {}) },
      dedupeKey: `${rec.runId}/${rec.execution}/ended`,
    });
  };
}
