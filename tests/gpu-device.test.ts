/**
 * `device: cuda` on a machine that cannot run CUDA (or where `setup --gpu` has not run: this test
 * points TEMPERED_CUDA_DIR at an empty folder, so it holds on GPU machines too) fails the train stage
 * at once, on its first attempt, with an error that names each reason; `device: auto` trains on the CPU.
 * Real dev server, worker, stage child process.
 */
import { after, before, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getRunStatus, waitForRun } from '../client/runs.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import { whereAutoLands } from '../src/engine/where-auto-lands.testing.ts';
import { writeTrainPipeline } from './helpers/train-fixture.ts';
import { startTestEnv, submitPipelineFile, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
const saved = process.env.TEMPERED_CUDA_DIR;

before(async () => {
  process.env.TEMPERED_CUDA_DIR = mkdtempSync(join(tmpdir(), 'tempered-no-cuda-'));
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
});
after(async () => {
  await env?.close();
  if (saved === undefined) delete process.env.TEMPERED_CUDA_DIR;
  else process.env.TEMPERED_CUDA_DIR = saved;
});

async function run(device: 'cuda' | 'auto') {
  const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), `gpu-${device}-`)), { maxSteps: 2, device });
  const runId = await submitPipelineFile(env, file, { actor: 'gpu-test', noCache: true });
  return waitForRun(env.client, runId).catch(() => getRunStatus(env.client, runId));
}

it('device: cuda without a usable CUDA install fails the train stage on its first attempt, naming why and what to do', async () => {
  const st = await run('cuda');
  assert.equal(st.state, 'failed');
  const train = st.stages.find((s) => s.id === 'train')!;
  assert.equal(train.state, 'failed');
  assert.equal(train.outputs, undefined);
  assert.equal(train.error?.type, 'InputError');
  assert.equal(train.error?.nonRetryable, true);
  assert.match(
    train.error!.message,
    /stages\.train\.with\.device: device 'cuda' is not available on this machine: .*npx tempered setup --gpu/,
  );
  const history = await env.client.workflow.getHandle(st.runId).fetchHistory();
  const attempts = history.events!.flatMap((e) =>
    e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : [],
  );
  assert.deepEqual(attempts, [1, 1, 1], 'not retried');
});

it('device: auto without CUDA trains where auto lands on the npm build (the CPU, or WebGPU where it works), and says so', async () => {
  const st = await run('auto');
  assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => s.error)));
  const train = st.stages.find((s) => s.id === 'train')!;
  assert.equal(train.outputs!.steps, 2);
  assert.equal(train.outputs!.device, await whereAutoLands(), 'the train outputs say where it ran');
});
