/**
 * A stage routed to another task queue (`queue:`) is looked up in the stage cache by the workflow's local activity
 * before it is scheduled, so on a hit no activity of its queue runs. Its reuse must still be in the run's own trail
 * (`stage.reused`, as for a stage that looks itself up): a version registered by a resumed run whose training ran on
 * a GPU queue otherwise had no record of how it was trained (`models show --spec` reads these records).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { submitRun, waitForRun } from '../client/runs.ts';
import { stageCompletedHook } from '../activities/audit.ts';
import { createActivities } from '../activities/index.ts';
import { openAudit, type AuditRecord } from '../src/audit/log.ts';
import type { ArtifactRef } from '../src/types.ts';
import type { StageKind } from '../src/stages/types.ts';
import type { CacheLookupRequest, CacheLookupResult } from '../workflows/types.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startActivityWorker, startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let elsewhere: { stop(): Promise<void> } | undefined;

/** The probe stage, with a kind's audit that reads its output from the store, as train's reads its report. */
function auditedProbe(logFile: string): StageKind<Parameters<ReturnType<typeof probeKind>['run']>[0]> {
  return {
    ...probeKind(logFile),
    async audit(_cfg, outputs, { store }) {
      const out = (await store.readJson(outputs.out as ArtifactRef)) as { value: string };
      return { details: { device: `probe:${out.value}` } };
    },
  };
}

const plan = plannedPipeline(
  'routed-reuse',
  [
    { id: 'prep', uses: 'probe', needs: [], with: { value: 'p' } },
    { id: 'train', uses: 'probe', needs: ['prep'], with: { value: 't', inputs: ['${{ stages.prep.outputs.out }}'] }, queue: 'gpu' },
  ],
  { specHash: 'routed-reuse-spec' },
);

async function run(): Promise<string> {
  const h = await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'tester' } }, { taskQueue: TEST_QUEUE });
  await waitForRun(env.client, h.workflowId);
  return h.workflowId;
}

async function trail(runId: string): Promise<AuditRecord[]> {
  const log = await openAudit(join(env.dir, 'audit.db'));
  try {
    return (await log.query({ run: runId })).filter((r) => r.runId === runId);
  } finally {
    await log.close();
  }
}

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', auditedProbe(join(env.dir, 'executions.log')));
  await env.startWorker();
  // The 'gpu' queue's worker: activities only, its own audit hook on the same state folder, as on a GPU host.
  elsewhere = await startActivityWorker(env, 'gpu', { audit: true });
});
after(async () => {
  await elsewhere?.stop();
  await env?.close();
});

describe('a routed stage served from the cache by the workflow’s lookup', () => {
  let first: string;
  let second: string;

  it("writes one stage.reused record in the second run's trail, naming the first run, with its hashes and the kind's details", async () => {
    first = await run();
    const made = (await trail(first)).filter((r) => r.action === 'stage.completed' && r.details.stage === 'train');
    assert.equal(made.length, 1, 'the first run ran train on the gpu queue');

    second = await run();
    const st = await waitForRun(env.client, second);
    assert.deepEqual(Object.fromEntries(st.stages.map((s) => [s.id, s.state])), { prep: 'cached', train: 'cached' });
    // train was not scheduled: its hit came from the workflow's local activity, not from a stage activity.
    const events = (await env.client.workflow.getHandle(second).fetchHistory()).events ?? [];
    const scheduled = events.flatMap((e) =>
      e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityId] : [],
    );
    assert.deepEqual(scheduled, ['stage-prep']);

    const reused = (await trail(second)).filter((r) => r.action === 'stage.reused' && r.details.stage === 'train');
    assert.equal(reused.length, 1, 'exactly one stage.reused record for the routed stage');
    const [r] = reused;
    const [m] = made;
    assert.deepEqual(r!.details.reusedFrom, { runId: first, stageId: 'train' });
    assert.equal(r!.subject, `${second}/train`);
    assert.equal(r!.actor, 'tester');
    assert.equal(r!.specHash, 'routed-reuse-spec');
    // The same hashes (its input and output artifacts) and details (the kind's, its code version, its cache key) as
    // the record of the run that made the outputs.
    assert.ok(r!.dataHashes?.['out:out']);
    assert.deepEqual(r!.dataHashes, m!.dataHashes);
    const { reusedFrom: _from, ...details } = r!.details;
    assert.deepEqual(details, m!.details);
    assert.equal(details.device, 'probe:t');
  });

  it('a lookup retried in the same execution adds no second record', async () => {
    const execution = (await env.client.workflow.getHandle(second).describe()).runId;
    const lookupCache = createActivities(env.kinds, {
      store: env.store,
      cache: env.cache,
      stateDir: env.dir,
      onStageCompleted: stageCompletedHook(env.dir),
    }).lookupCache as (req: CacheLookupRequest) => Promise<CacheLookupResult>;
    const st = await waitForRun(env.client, second);
    const prep = st.stages.find((s) => s.id === 'prep')!;
    const req: CacheLookupRequest = {
      kind: 'probe',
      config: { value: 't', inputs: [prep.outputs!.out] },
      baseDir: env.dir,
      stage: { runId: second, stageId: 'train', specHash: 'routed-reuse-spec', actor: 'tester' },
    };
    const mock = new MockActivityEnvironment({ workflowExecution: { workflowId: second, runId: execution } });
    // Twice: the run's own lookup wrote the record, and each of these is that lookup again, as a retry would be.
    for (let i = 0; i < 2; i++) {
      const res = (await mock.run(lookupCache, req)) as CacheLookupResult;
      assert.deepEqual(res.hit?.producedBy, { runId: first, stageId: 'train' });
    }
    assert.equal((await trail(second)).filter((r) => r.action === 'stage.reused' && r.details.stage === 'train').length, 1);
  });
});
