/**
 * listRuns reads as many runs from Temporal's listing as it shows, and a few more (a fifth, at least 10) that settle
 * their start order. A real dev server holds 60 runs (no worker: they
 * wait, listed as running); the client's ListWorkflowExecutions calls are counted on their way to the server: the
 * page size each asks for and the executions each answer carries, every one of which the SDK decodes. Unset, the
 * server answers with its largest page (1,000 on the dev server).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { listRuns, submitRun } from './runs.ts';
import { plannedPipeline } from '../tests/helpers/plans.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';

const RUNS = 60;
let env: TestEnv;
const calls: { pageSize: number; executions: number }[] = [];

before(async () => {
  env = await startTestEnv(new Map());
  // Every 10th run is of the pipeline the filter asks for.
  for (let i = 0; i < RUNS; i++) {
    const plan = plannedPipeline(i % 10 === 0 ? 'nightly-spam' : 'other', [
      { id: 'a', uses: 'probe', needs: [], with: { value: String(i) } },
    ]);
    await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE });
  }
  const service = env.client.workflowService;
  const list = service.listWorkflowExecutions.bind(service);
  service.listWorkflowExecutions = (async (req: { pageSize?: number | null }) => {
    const res = await list(req as Parameters<typeof list>[0]);
    calls.push({ pageSize: req.pageSize ?? 0, executions: res.executions?.length ?? 0 });
    return res;
  }) as typeof service.listWorkflowExecutions;
  // Visibility lists a run a moment after it starts.
  for (let listed = 0; listed < RUNS; await new Promise((r) => setTimeout(r, 200))) listed = (await listRuns(env.client, RUNS)).length;
});
after(async () => env?.close());

describe('listRuns reads a bounded page', () => {
  it(`5 runs of ${RUNS} read one page of 15 (the 10 more settle the start order), not the server's largest`, async () => {
    calls.length = 0;
    const runs = await listRuns(env.client, 5);
    assert.equal(runs.length, 5);
    assert.deepEqual(calls, [{ pageSize: 15, executions: 15 }]);
  });

  it('a pipeline filter (matched in the memo) reads pages of 200 until it has enough', async () => {
    calls.length = 0;
    const runs = await listRuns(env.client, 3, { pipeline: 'SPAM' });
    assert.equal(runs.length, 3);
    assert.ok(runs.every((r) => r.pipeline === 'nightly-spam'));
    assert.deepEqual(
      calls.map((c) => c.pageSize),
      [200],
    );
  });

  it("the dashboard's limit of 500 asks for one page of 600", async () => {
    calls.length = 0;
    assert.equal((await listRuns(env.client, 500)).length, RUNS);
    assert.deepEqual(calls, [{ pageSize: 600, executions: RUNS }]);
  });
});
