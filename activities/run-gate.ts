/** Local activities behind run gates: decide whether a (scheduled) run goes on, and remember successes. */
import { Context } from '@temporalio/activity';
import { openAudit } from '../src/audit/log.ts';
import { currentVersion } from '../src/registry/current.ts';
import { decideGate, productionReading, runOwner, type DataFingerprint } from '../src/triggers/run-gate.ts';
import { runIndexFor } from '../src/triggers/shared-run-index.ts';
import type { ArtifactStore } from '../src/store/artifact-store.ts';
import { statePaths } from '../src/state-paths.ts';
import { isArtifactRef } from '../src/types.ts';
import type { IngestFingerprint, RunGateRequest, RunGateResult, RunOutcomeRecord } from '../workflows/types.ts';

async function fingerprints(store: ArtifactStore, ingest: IngestFingerprint[]): Promise<DataFingerprint[]> {
  return Promise.all(
    ingest.map(async (i) => ({
      stageId: i.stageId,
      dataHash: i.dataHash,
      labels: isArtifactRef(i.report) ? ((await store.readJson<{ labels?: Record<string, number> }>(i.report)).labels ?? {}) : {},
    })),
  );
}

export function runGateActivities(deps: { store: ArtifactStore; stateDir: string }) {
  const paths = statePaths(deps.stateDir);
  const index = () => runIndexFor(paths.registryDb, paths.runs);
  return {
    async checkRunGate(req: RunGateRequest): Promise<RunGateResult> {
      const data = await fingerprints(deps.store, req.ingest);
      const below = req.gate.metricBelow;
      const current = below && (await currentVersion(paths.registryDb, below.model, below.alias ?? 'production'));
      // A model without the metric is not "no model yet": the reason names the version and what it has.
      const reading = below && productionReading(current, below.metric);
      const decision = decideGate(req.gate, { specHash: req.specHash, data }, await index().last(runOwner(req)), reading);
      const audit = await openAudit(paths.auditDb);
      try {
        await audit.append({
          action: decision.proceed
            ? decision.outcome === 'triggered'
              ? 'run.triggered'
              : 'run.gate_passed'
            : decision.outcome === 'unchanged'
              ? 'run.skipped_unchanged'
              : 'run.skipped_not_triggered',
          subject: req.runId,
          runId: req.runId,
          actor: req.actor,
          specHash: req.specHash,
          dataHashes: Object.fromEntries(data.map((d) => [d.stageId, d.dataHash])),
          details: { ...decision, scheduleId: req.scheduleId },
          dedupeKey: `${req.runId}/${Context.current().info.workflowExecution?.runId ?? 'unknown'}/gate`,
        });
      } finally {
        await audit.close();
      }
      return decision;
    },
    async recordRunOutcome(rec: RunOutcomeRecord): Promise<void> {
      await index().record(runOwner(rec), {
        runId: rec.runId,
        specHash: rec.specHash,
        data: await fingerprints(deps.store, rec.ingest),
        time: new Date().toISOString(),
      });
    },
  };
}
