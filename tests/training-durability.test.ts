/**
 * No crash loses more than one checkpoint interval: a worker SIGKILLed during training is replaced
 * and the run finishes with the same final weights as an uninterrupted run; a run that died is
 * resumed with `tempered resume`, which reuses every finished stage and the training checkpoint.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitForRun } from '../client/runs.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { RunStatus } from '../workflows/types.ts';
import { runCli, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { startTestEnv, submitPipelineFile, type TestEnv } from './helpers/temporal-env.ts';

const CHECKPOINT_EVERY = 4;
let env: TestEnv;
let pipeline: string;

function workerEnv(home: string, queue: string) {
  return { TEMPORAL_ADDRESS: env.server.address, TEMPERED_HOME: home, TEMPERED_TASK_QUEUE: queue, TEMPERED_ACTOR: 'durability' };
}

const submit = (queue: string) => submitPipelineFile(env, pipeline, { actor: 'durability', taskQueue: queue });

/**
 * Waits until the worker has written a checkpoint at or past `atLeast` steps and returns that step.
 * Watching the checkpoint folder (not heartbeats, which lag by up to a second) lets the kill land
 * mid-training even when a quiet machine trains the tiny model in a few seconds.
 */
async function checkpointReached(home: string, atLeast: number): Promise<number> {
  const root = join(home, 'checkpoints');
  for (let i = 0; i < 6000; i++) {
    let best = 0;
    // Each key is a checkpoint folder; the `<key>.lock` files beside them are not.
    for (const key of existsSync(root)
      ? readdirSync(root, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => d.name)
      : []) {
      for (const name of existsSync(join(root, key)) ? readdirSync(join(root, key)) : []) {
        const m = /^step-(\d+)$/.exec(name);
        if (m) best = Math.max(best, Number(m[1]));
      }
      if (existsSync(join(root, key, 'COMPLETE'))) throw new Error('training finished before the kill');
    }
    if (best >= atLeast) return best;
    await sleep(10);
  }
  throw new Error(`no checkpoint at step ${atLeast} appeared`);
}

const out = (st: RunStatus, stage: string) => st.stages.find((s) => s.id === stage)!.outputs!;

let reference: RunStatus;

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  pipeline = writeE2EPipeline(mkdtempSync(join(tmpdir(), 'train-dur-')), { epochs: 20, checkpointEvery: CHECKPOINT_EVERY });
  // The reference: the same pipeline, never interrupted, in its own state folder.
  const home = mkdtempSync(join(tmpdir(), 'home-ref-'));
  const w = await startCliWorker([], workerEnv(home, 'ref'));
  try {
    reference = await waitForRun(env.client, await submit('ref'));
  } finally {
    await stopCliWorker(w);
  }
  assert.equal(reference.state, 'succeeded', JSON.stringify(reference.stages.map((s) => s.error)));
});
after(async () => env?.close());

describe('training durability', () => {
  it('SIGKILL during training: a new worker resumes from the last checkpoint and ends with identical weights', async () => {
    const home = mkdtempSync(join(tmpdir(), 'home-kill-'));
    let w = await startCliWorker([], workerEnv(home, 'kill'));
    try {
      const runId = await submit('kill');
      const killedAt = await checkpointReached(home, 2 * CHECKPOINT_EVERY);
      w.kill('SIGKILL');
      await new Promise((r) => w.once('exit', r));
      w = await startCliWorker([], workerEnv(home, 'kill'));
      const st = await waitForRun(env.client, runId);
      assert.equal(st.state, 'succeeded');
      const train = out(st, 'train');
      const resumedFrom = (train.baseModel as { resumedFromStep: number | null }).resumedFromStep;
      assert.ok(resumedFrom !== null && resumedFrom > 0, 'the retry resumed from a checkpoint');
      assert.ok(
        resumedFrom! >= killedAt,
        `redid at most one checkpoint interval (killed just after the checkpoint of step ${killedAt}, resumed from ${resumedFrom})`,
      );
      assert.equal(train.steps, out(reference, 'train').steps);
      assert.equal(
        (train.model as { sha256: string }).sha256,
        (out(reference, 'train').model as { sha256: string }).sha256,
        'bitwise-identical exported model',
      );
    } finally {
      await stopCliWorker(w);
    }
  });

  it('tempered resume reruns only the stage that did not finish, from its checkpoint', async () => {
    const home = mkdtempSync(join(tmpdir(), 'home-resume-'));
    const wenv = workerEnv(home, 'resume');
    let w = await startCliWorker([], wenv);
    try {
      const runId = await submit('resume');
      await checkpointReached(home, CHECKPOINT_EVERY);
      w.kill('SIGKILL');
      await new Promise((r) => w.once('exit', r));
      await env.client.workflow.getHandle(runId).terminate('simulated crash of the whole deployment');
      w = await startCliWorker([], wenv);
      // From a CLI whose default queue is another one, and without a worker of its own: the resumed
      // run goes to the queue the run was submitted to, where the worker polls.
      const cli = { ...wenv, TEMPERED_TASK_QUEUE: 'a-queue-no-worker-polls' };
      const r = await runCli(['resume', runId, '--json', '--wait', '--no-local-worker'], cli, { timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stderr);
      const st = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as RunStatus;
      assert.equal(st.resumeOf, runId);
      assert.equal((await env.client.workflow.getHandle(st.runId).describe()).taskQueue, 'resume');
      const states = Object.fromEntries(st.stages.map((s) => [s.id, s.state]));
      assert.deepEqual(states, {
        ingest: 'cached',
        dedupe: 'cached',
        split: 'cached',
        train: 'succeeded',
        evaluate: 'succeeded',
        register: 'succeeded',
        deploy: 'succeeded',
      });
      const train = out(st, 'train');
      assert.ok(
        ((train.baseModel as { resumedFromStep: number | null }).resumedFromStep ?? 0) > 0,
        'training continued from the dead run’s checkpoint',
      );
      assert.equal((train.model as { sha256: string }).sha256, (out(reference, 'train').model as { sha256: string }).sha256);
    } finally {
      await stopCliWorker(w);
    }
  });
});
