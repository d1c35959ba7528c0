/**
 * listRuns reads as many runs from Temporal's listing as it shows, and a few more (a fifth, at least 10) that settle
 * their start order, from the running runs and from the ended ones apart. A real dev server holds 60 runs (no worker: they
 * wait, listed as running); the client's ListWorkflowExecutions calls are counted on their way to the server: the
 * page size each asks for and the executions each answer carries, every one of which the SDK decodes. Unset, the
 * server answers with its largest page (1,000 on the dev server).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from '@temporalio/client';
import proto from '@temporalio/proto';
import { temporalDataConverter } from '../infra/payload-codec.ts';
import { PIPELINE_ATTRIBUTE } from './pipeline-attribute.ts';
import { listRuns, markGateSkips, submitRun, type RunSummary } from './runs.ts';
import { plannedPipeline } from '../tests/helpers/plans.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from '../tests/helpers/temporal-env.ts';

const RUNS = 60;
let env: TestEnv;
const calls: { pageSize: number; executions: number }[] = [];

before(async () => {
  env = await startTestEnv(new Map());
  // tempered's dev server registers the attribute at start; these runs are a namespace's without it (a cluster where
  // nobody registered it), matched in their memo. The last suite registers it again.
  await env.client.connection.operatorService.removeSearchAttributes({ namespace: 'default', searchAttributes: [PIPELINE_ATTRIBUTE] });
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
  it(`5 runs of ${RUNS} read one page of 15 running (the 10 more settle the start order) and one of ended, not the server's largest`, async () => {
    calls.length = 0;
    const runs = await listRuns(env.client, 5);
    assert.equal(runs.length, 5);
    assert.deepEqual(calls, [
      { pageSize: 15, executions: 15 },
      { pageSize: 15, executions: 0 },
    ]);
  });

  it('a pipeline filter (matched in the memo) reads pages of 200 until it has enough', async () => {
    calls.length = 0;
    const runs = await listRuns(env.client, 3, { pipeline: 'NIGHTLY' });
    assert.equal(runs.length, 3);
    assert.ok(runs.every((r) => r.pipeline === 'nightly-spam'));
    assert.deepEqual(
      calls.map((c) => c.pageSize),
      [200, 200],
    );
  });

  it("the dashboard's limit of 500 asks for one page of 600 running and one of ended", async () => {
    calls.length = 0;
    assert.equal((await listRuns(env.client, 500)).length, RUNS);
    assert.deepEqual(calls, [
      { pageSize: 600, executions: RUNS },
      { pageSize: 600, executions: 0 },
    ]);
  });
});

// Temporal lists running runs first, then ended ones by when they ended: a run still running that started long ago
// comes before one that started after it and has ended, which is the newer of the two.
describe('the newest started runs, running or ended', () => {
  before(async () => {
    const plan = plannedPipeline('other', [{ id: 'a', uses: 'probe', needs: [], with: { value: 'order' } }]);
    for (const runId of ['order-old', 'order-new'])
      await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE, runId });
    await env.client.workflow.getHandle('order-new').terminate('ended for the test');
    for (let ended = false; !ended; await new Promise((r) => setTimeout(r, 200)))
      ended = (await listRuns(env.client, 10, { id: 'order-' })).some((r) => r.runId === 'order-new' && r.status === 'TERMINATED');
  });

  it('a page of one is the run started last, though it ended before the one listed first', async () => {
    const runs = await listRuns(env.client, 2, { id: 'order-' });
    assert.ok(runs[0]!.startTime.getTime() >= runs[1]!.startTime.getTime());
    assert.deepEqual(
      (await listRuns(env.client, 1, { id: 'order-' })).map((r) => r.runId),
      [runs[0]!.runId],
    );
    assert.equal(runs[0]!.runId, 'order-new');
  });
});

/**
 * An ended run's gate is read from its close event once and remembered. One whose history the server no longer has
 * (its retention ended while visibility still listed it) can never be read: remembered as no gate, not asked for again
 * at every listing (every 3 s on the Runs page). A read that failed for another reason (the server unreachable a
 * moment) is not remembered, so it cannot leave a skipped run listed as one that trained.
 */
describe('the gate of a completed run', () => {
  it('is asked once of a history the server does not have, and again after a read that failed', async () => {
    const service = env.client.workflowService;
    const read = service.getWorkflowExecutionHistory.bind(service);
    let reads = 0;
    service.getWorkflowExecutionHistory = (async (req: Parameters<typeof read>[0]) => {
      if (reads++ === 0)
        throw Object.assign(new Error('14 UNAVAILABLE: connection reset'), { code: 14, details: 'connection reset', metadata: {} });
      return read(req);
    }) as typeof service.getWorkflowExecutionHistory;
    try {
      const gone: RunSummary = {
        runId: 'history-gone',
        execution: randomUUID(),
        pipeline: 'p',
        status: 'COMPLETED',
        startTime: new Date(),
      };
      for (let i = 0; i < 3; i++) await markGateSkips(env.client, [gone]);
      assert.equal(reads, 2, 'the failed read, then the one that found no history; none after');
      assert.equal(gone.skipped, undefined);
    } finally {
      service.getWorkflowExecutionHistory = read;
    }
  });
});

// Last: it registers the attribute on the namespace, and its runs are listed beside the ones above.
describe('a namespace with the TemperedPipeline search attribute', () => {
  const KEY = randomBytes(32).toString('base64');
  /** Clients made after the attribute is registered (a client knows whether its namespace has it for a minute). */
  let plain: Client;
  let keyed: Client;
  let secretRun: string;

  before(async () => {
    const namespace = 'default';
    await env.client.connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: { [PIPELINE_ATTRIBUTE]: proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD },
    });
    plain = new Client({ connection: env.client.connection, dataConverter: temporalDataConverter({}) });
    keyed = new Client({ connection: env.client.connection, dataConverter: temporalDataConverter({ TEMPERED_PAYLOAD_KEY: KEY }) });
    for (let i = 0; i < 12; i++) {
      const plan = plannedPipeline(i % 4 === 0 ? 'nightly-spam' : 'other', [
        { id: 'a', uses: 'probe', needs: [], with: { value: String(i) } },
      ]);
      await submitRun(plain, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE, runId: `sa-${i}` });
    }
    // Submitted with the payload key: its memo (pipeline, submitter, params) is encrypted, the attribute is not.
    const plan = plannedPipeline('nightly-spam', [{ id: 'a', uses: 'probe', needs: [], with: { value: 'secret' } }]);
    secretRun = (
      await submitRun(keyed, { plan, options: { baseDir: env.dir, actor: 'ann' } }, { taskQueue: TEST_QUEUE, runId: 'sa-secret' })
    ).workflowId;
    for (let listed = 0; listed < 13; await new Promise((r) => setTimeout(r, 200)))
      listed = (await listRuns(plain, 100, { id: 'sa-' })).length;
  });

  it("is asked of Temporal's list query: one page of the list's length, only matching runs in it, no memo read to match", async () => {
    calls.length = 0;
    const runs = await listRuns(plain, 2, { pipeline: 'Nightly', id: 'sa-' });
    assert.deepEqual(
      runs.map((r) => r.runId),
      [secretRun, 'sa-8'],
    );
    assert.deepEqual(calls, [
      { pageSize: 12, executions: 4 },
      { pageSize: 12, executions: 0 },
    ]);
  });

  it('lists, without the key, the runs whose memo is encrypted, naming their pipeline', async () => {
    const runs = await listRuns(plain, 10, { pipeline: 'nightly-spam', id: 'sa-' });
    assert.deepEqual(
      runs.map((r) => r.runId),
      [secretRun, 'sa-8', 'sa-4', 'sa-0'],
    );
    assert.equal(runs[0]!.pipeline, 'nightly-spam');
    assert.match(runs[0]!.memoEncrypted ?? '', /TEMPERED_PAYLOAD_KEY/);
  });

  it('matches a quote that begins or ends the text, and case, as typed, not every run the query lists', async () => {
    // Temporal's STARTS_WITH drops such a quote (`nightly'` listed every nightly run) and SQLite's ignores case.
    assert.deepEqual(await listRuns(plain, 20, { pipeline: "nightly'", id: 'sa-' }), []);
    assert.deepEqual(await listRuns(plain, 20, { pipeline: "'nightly", id: 'sa-' }), []);
    assert.deepEqual(await listRuns(plain, 20, { id: "sa-1'" }), []);
    assert.deepEqual(await listRuns(plain, 20, { id: "'sa-1" }), []);
    assert.deepEqual(await listRuns(plain, 20, { id: 'SA-1' }), []);
    assert.deepEqual((await listRuns(plain, 20, { id: 'sa-1' })).map((r) => r.runId).sort(), ['sa-1', 'sa-10', 'sa-11']);
  });

  it('still matches, in their memo, the runs submitted before the attribute was registered', async () => {
    const runs = await listRuns(plain, 100, { pipeline: 'nightly' });
    assert.equal(runs.length, RUNS / 10 + 4);
    assert.ok(runs.every((r) => r.pipeline === 'nightly-spam'));
  });
});
