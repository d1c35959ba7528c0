/**
 * A workflow id used twice (`submit --run-id`, a schedule or backfill firing with the same id) on a
 * real dev server: the second run's new model bytes become a new version and a new promotion,
 * each with its own audit record, because register and deploy key on the workflow execution.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { deployStage } from '../src/stages/deploy.ts';
import { registerStage } from '../src/stages/register.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;

const plan = (value: string) =>
  plannedPipeline(
    'reuse',
    [
      { id: 'train', uses: 'probe', needs: [], with: { value } },
      { id: 'register', uses: 'register', needs: ['train'], with: { name: 'spam', model: '${{ stages.train.outputs.out }}' } },
      { id: 'deploy', uses: 'deploy', needs: ['register'], with: { name: 'spam', version: '${{ stages.register.outputs.version }}' } },
    ],
    { specHash: value },
  );

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  env.kinds.set('register', registerStage);
  env.kinds.set('deploy', deployStage);
  await env.startWorker();
});
after(async () => env?.close());

describe('reused run id', () => {
  it("registers and promotes the second run's model under the same workflow id", async () => {
    for (const value of ['monday', 'tuesday']) {
      const h = await submitRun(
        env.client,
        { plan: plan(value), options: { baseDir: env.dir, actor: 'test', noCache: true } },
        { taskQueue: TEST_QUEUE, runId: 'nightly' },
      );
      assert.equal((await waitForRun(env.client, h.workflowId)).state, 'succeeded');
    }
    const reg = await openRegistry(join(env.dir, 'registry.db'));
    try {
      const versions = await reg.listVersions('spam');
      assert.equal(versions.length, 2, 'the second run registered nothing new');
      assert.notEqual(versions[0]!.artifacts[0]!.sha256, versions[1]!.artifacts[0]!.sha256);
      assert.equal(await reg.aliasVersion('spam', 'production'), 2);
    } finally {
      await reg.close();
    }
    const audit = await openAudit(join(env.dir, 'audit.db'));
    try {
      assert.deepEqual(
        (await audit.query({ action: 'model.registered' })).map((r) => r.subject),
        ['spam@1', 'spam@2'],
      );
      assert.deepEqual(
        (await audit.query({ action: 'model.promoted' })).map((r) => r.subject),
        ['spam@1', 'spam@2'],
      );
      assert.equal((await audit.verify()).ok, true);
    } finally {
      await audit.close();
    }
  });
});
