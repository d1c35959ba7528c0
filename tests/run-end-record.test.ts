/**
 * A run whose stages have all ended but whose end record the audit log has not taken yet (its database does not
 * answer: the record waits up to half an hour) says so in its status, and closes once the record is written. A real
 * dev server and worker; the worker's end-record hook is held the way a database that does not answer holds it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { getRunStatus, submitRun, waitForRun } from '../client/runs.ts';
import { formatRunStatus } from '../cli/format.ts';
import { createWorker } from '../infra/worker.ts';
import type { RunEndRecord } from '../workflows/types.ts';
import { plannedPipeline } from './helpers/plans.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let worker: Worker;
let running: Promise<void>;
let conn: NativeConnection;
let letThrough: () => void = () => {};
const written: RunEndRecord[] = [];

before(async () => {
  env = await startTestEnv(new Map());
  env.kinds.set('probe', probeKind(join(env.dir, 'executions.log')));
  conn = await NativeConnection.connect({ address: env.server.address });
  worker = await createWorker({
    connection: conn,
    namespace: 'default',
    taskQueue: TEST_QUEUE,
    kinds: env.kinds,
    deps: {
      store: env.store,
      cache: env.cache,
      stateDir: env.dir,
      onRunEnded: async (rec) => {
        await new Promise<void>((resolve) => (letThrough = resolve));
        written.push(rec);
      },
    },
  });
  running = worker.run();
});
after(async () => {
  worker?.shutdown();
  await running?.catch(() => undefined);
  await conn?.close();
  await env?.close();
});

test('a run waiting to write its end record reads as ended by its stages and closing, not as running; then it closes', async () => {
  const plan = plannedPipeline('closing', [{ id: 'a', uses: 'probe', needs: [], with: { value: 'A' } }]);
  const h = await submitRun(env.client, { plan, options: { baseDir: env.dir, actor: 'test' } }, { taskQueue: TEST_QUEUE });
  let st = await getRunStatus(env.client, h.workflowId);
  while (!st.recordingEnd) {
    assert.equal(st.state, 'running', 'the run ends only after its end record');
    await sleep(100);
    st = await getRunStatus(env.client, h.workflowId);
  }
  assert.equal(st.state, 'succeeded');
  assert.equal((await env.client.workflow.getHandle(h.workflowId).describe()).status.name, 'RUNNING');
  assert.match(
    formatRunStatus(st),
    /closing: every stage has ended \(succeeded\); the run closes once its end is recorded \(the audit log's end record/,
  );
  letThrough();
  const final = await waitForRun(env.client, h.workflowId);
  assert.equal(final.state, 'succeeded');
  assert.equal(final.recordingEnd, undefined, 'the closed run no longer says it is closing');
  assert.deepEqual(
    written.map((r) => [r.runId, r.state]),
    [[h.workflowId, 'succeeded']],
  );
  assert.doesNotMatch(formatRunStatus(await getRunStatus(env.client, h.workflowId)), /closing:/);
});
