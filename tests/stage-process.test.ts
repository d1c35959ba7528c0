/**
 * Training runs in a child process per attempt (src/isolate/), so the worker's event loop stays free:
 * a step longer than the heartbeat timeout still heartbeats, cancellation stops the child during a
 * step, a child that crashes becomes a retryable failure and the retry resumes from its checkpoint
 * with the same final weights, and `submit --wait` sees no blocked workflow task. The slow step and
 * the crash come from test-only hooks in the child (src/isolate/test-hooks.ts, TEMPERED_TESTING=1).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getRunStatus, waitForRun } from '../client/runs.ts';
import { loadStageKinds } from '../src/stages/stage-kinds.ts';
import type { RunStatus } from '../workflows/types.ts';
import { runCli, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { writeTrainPipeline } from './helpers/train-fixture.ts';
import { startTestEnv, submitPipelineFile, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;

const submit = (file: string, taskQueue = TEST_QUEUE) =>
  submitPipelineFile(env, file, { actor: 'stage-process', noCache: true, taskQueue });

const stage = (st: RunStatus, id: string) => st.stages.find((s) => s.id === id)!;
/** Attempt numbers of the run's activities, from its history (the server records the last attempt of each). */
async function attempts(runId: string): Promise<number[]> {
  const history = await env.client.workflow.getHandle(runId).fetchHistory();
  return history.events!.flatMap((e) => (e.activityTaskStartedEventAttributes ? [e.activityTaskStartedEventAttributes.attempt ?? 1] : []));
}
const modelHash = (st: RunStatus) => (stage(st, 'train').outputs!.model as { sha256: string }).sha256;

/** Stage child processes of this process (the test runs the worker in-process). */
function stageChildren(): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid && readFileSync(`/proc/${d}/cmdline`, 'utf8').includes('child-main.ts')) out.push(Number(d));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function withTestEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  Object.assign(process.env, vars);
  return fn().finally(() => {
    for (const k of Object.keys(vars)) delete process.env[k];
  });
}

before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
});
after(async () => env?.close());

describe('training in a child process', () => {
  it('a step longer than the heartbeat timeout still heartbeats, and the stage completes on its first attempt', async () => {
    // Heartbeats go out at most every second: 5 s leaves a loaded machine room for a late one, and
    // each step blocks 2 s longer than that (a worker that did not heartbeat meanwhile would time out).
    const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), 'sp-slow-')), { heartbeatTimeout: '5s', maxSteps: 2 });
    const st = await withTestEnv({ TEMPERED_TEST_STEP_BLOCK_MS: '7000' }, async () => waitForRun(env.client, await submit(file)));
    assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => s.error)));
    assert.deepEqual(await attempts(st.runId), [1, 1, 1], 'no heartbeat timeout and no retry');
    assert.equal(stage(st, 'train').outputs!.steps, 2);
  });

  it('cancel during a long step stops the child at once; the run shows cancelled and no process is left', async () => {
    const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), 'sp-cancel-')), { maxSteps: 3, heartbeatTimeout: '30s' });
    const BLOCK_MS = 120_000;
    await withTestEnv({ TEMPERED_TEST_STEP_BLOCK_MS: String(BLOCK_MS) }, async () => {
      const runId = await submit(file);
      let inStep = false;
      for (let i = 0; i < 600 && !inStep; i++) {
        await sleep(100);
        const train = stage(await getRunStatus(env.client, runId), 'train');
        inStep = ((train.progress?.metrics as { step?: number } | undefined)?.step ?? 0) >= 1;
      }
      assert.ok(inStep, 'the child reported step 1 and is now inside its long step');
      assert.equal(stageChildren().length, 1, 'one stage process runs');
      const started = Date.now();
      await env.client.workflow.getHandle(runId).cancel();
      const st = await waitForRun(env.client, runId).catch(() => getRunStatus(env.client, runId));
      const tookMs = Date.now() - started;
      assert.equal(st.state, 'cancelled');
      assert.equal(stage(st, 'train').state, 'cancelled');
      // The step blocks its thread for two minutes; only killing the child ends the stage this early.
      assert.ok(tookMs < BLOCK_MS / 4, `cancelled in ${tookMs} ms`);
      assert.deepEqual(stageChildren(), [], 'no orphan stage process');
    });
  });

  it('a child that crashes mid-training fails the attempt as retryable; the retry resumes from the checkpoint with identical weights, and the worker keeps serving', async () => {
    const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), 'sp-crash-')), { epochs: 1, checkpointEvery: 4 });
    const reference = await waitForRun(env.client, await submit(file));
    assert.equal(reference.state, 'succeeded');
    const dataDir = mkdtempSync(join(tmpdir(), 'sp-data-'));
    writeFileSync(join(dataDir, 'data.jsonl'), readFileSync(join(dirname(file), 'data.jsonl')));
    writeFileSync(
      join(dataDir, 'p.yaml'),
      'name: data-only\nstages:\n  ingest:\n    uses: ingest\n    with: { path: data.jsonl, task: classification }\n  dedupe:\n    uses: dedupe\n    needs: ingest\n    with: { table: "${{ stages.ingest.outputs.table }}" }\n',
    );

    const [crashed, other] = await withTestEnv({ TEMPERED_TEST_ABORT_AT_STEP: '6' }, async () => {
      const runId = await submit(file);
      // Submitted while the first attempt trains, crashes and is retried on this same worker.
      const otherId = await submit(join(dataDir, 'p.yaml'));
      return Promise.all([waitForRun(env.client, runId), waitForRun(env.client, otherId)]);
    });
    assert.equal(other.state, 'succeeded', 'the worker served another run meanwhile');
    assert.equal(crashed.state, 'succeeded', JSON.stringify(crashed.stages.map((s) => s.error)));
    const train = stage(crashed, 'train');
    assert.deepEqual(await attempts(crashed.runId), [1, 1, 2]);
    assert.equal(
      (train.outputs!.baseModel as { resumedFromStep: number | null }).resumedFromStep,
      4,
      'resumed from the checkpoint of step 4',
    );
    assert.equal(modelHash(crashed), modelHash(reference), 'bitwise-identical exported model');

    const history = await env.client.workflow.getHandle(crashed.runId).fetchHistory();
    const retried = history.events!.find((e) => e.activityTaskStartedEventAttributes?.attempt === 2)!.activityTaskStartedEventAttributes!;
    const failure = retried.lastFailure!;
    assert.equal(failure.applicationFailureInfo?.type, 'ChildProcessDied');
    assert.equal(failure.applicationFailureInfo?.nonRetryable ?? false, false);
    assert.match(failure.message!, /killed by SIGABRT/);
    assert.match(failure.message!, /test hook: aborting at step 6/, 'the last stderr lines travel with the failure');
    assert.deepEqual(stageChildren(), []);
  });

  it('submit --wait: a workflow task that arrives during a long step is not held up by the in-process worker', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sp-wait-'));
    const file = writeTrainPipeline(dir, { maxSteps: 1, heartbeatTimeout: '60s' });
    const home = join(dir, 'home');
    const cli = runCli(
      ['submit', file, '--wait', '--local-worker', '--run-id', 'wait-run'],
      {
        TEMPORAL_ADDRESS: env.server.address,
        TEMPERED_HOME: home,
        TEMPERED_TASK_QUEUE: 'wait-q',
        TEMPERED_LOG_LEVEL: 'WARN',
        TEMPERED_TEST_STEP_BLOCK_MS: '9000',
      },
      { timeoutMs: 180_000 },
    );
    // Once step 1 is reported the stage sits in a 9 s step. A signal then needs a workflow task, which
    // the worker inside `submit --wait` must run while that step lasts (the SDK warns past 5 s).
    let inStep = false;
    for (let i = 0; i < 1200 && !inStep; i++) {
      await sleep(100);
      const st = await getRunStatus(env.client, 'wait-run').catch(() => undefined);
      inStep = ((st && (stage(st, 'train').progress?.metrics as { step?: number } | undefined)?.step) ?? 0) >= 1;
    }
    assert.ok(inStep, 'training reached its first long step');
    await env.client.workflow.getHandle('wait-run').signal('nudge');
    const r = await cli;
    assert.equal(r.code, 0, r.stderr);
    // The SDK's core logs to the console itself, on stdout or stderr.
    assert.doesNotMatch(r.stdout + r.stderr, /Workflow task duration exceeded/i);
  });

  it('an input error raised in the child stays an input error: not retried, its field named', async () => {
    const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), 'sp-input-')));
    writeFileSync(
      file,
      readFileSync(file, 'utf8').replace('lora: { r: 4, alpha: 8 }', 'lora: { r: 4, alpha: 8, targets: [no_such_weight] }'),
    );
    const st = await waitForRun(env.client, await submit(file));
    assert.equal(st.state, 'failed');
    const err = stage(st, 'train').error!;
    assert.equal(err.type, 'InputError');
    assert.equal(err.nonRetryable, true);
    assert.match(err.message, /^stages\.train\.with\.lora\.targets: /);
    assert.deepEqual(await attempts(st.runId), [1, 1, 1]);
  });

  it('a child over its memory limit (TEMPERED_CHILD_MAX_RSS_MB) is killed and the attempt fails retryable, naming the limit', async () => {
    const file = writeTrainPipeline(mkdtempSync(join(tmpdir(), 'sp-rss-')), { maxSteps: 2 });
    const w = await startCliWorker([], {
      TEMPORAL_ADDRESS: env.server.address,
      TEMPERED_HOME: mkdtempSync(join(tmpdir(), 'sp-rss-home-')),
      TEMPERED_TASK_QUEUE: 'rss-q',
      TEMPERED_CHILD_MAX_RSS_MB: '40',
    });
    try {
      const st = await waitForRun(env.client, await submit(file, 'rss-q'));
      assert.equal(st.state, 'failed');
      const err = stage(st, 'train').error!;
      assert.match(err.message, /over the limit of 40 MiB/);
      assert.equal(err.nonRetryable ?? false, false);
      assert.deepEqual(await attempts(st.runId), [1, 1, 3], 'retried up to the stage’s maximumAttempts');
    } finally {
      await stopCliWorker(w);
    }
  });
});
