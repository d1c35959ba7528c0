/**
 * The DAG workflow on a real Temporal dev server: ordering, parallelism, retries, non-retryable
 * input errors, cancellation, both failure policies and the live status query.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { getRunStatus, submitRun, waitForRun } from '../client/runs.ts';
import type { PlannedPipeline } from '../src/spec/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { probeKind, type ExecutionRecord } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
let logFile: string;

function stage(id: string, needs: string[], w: Record<string, unknown> = {}, extra: Partial<StageDraft> = {}): StageDraft {
  return {
    id,
    uses: 'probe',
    needs,
    with: { value: id, ...w },
    retry: { maximumAttempts: 3, initialInterval: 100, backoffCoefficient: 1 },
    heartbeatTimeout: 10_000,
    ...extra,
  };
}

function plan(name: string, stages: StageDraft[], extra: Partial<PlannedPipeline> = {}): PlannedPipeline {
  return plannedPipeline(name, stages, extra);
}

function executions(runId: string): ExecutionRecord[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as ExecutionRecord)
    .filter((r) => r.runId === runId);
}

async function run(p: PlannedPipeline, opts: { noCache?: boolean } = {}) {
  const handle = await submitRun(
    env.client,
    { plan: p, options: { baseDir: env.dir, actor: 'test', noCache: opts.noCache ?? true } },
    { taskQueue: TEST_QUEUE },
  );
  const status = await waitForRun(env.client, handle.workflowId);
  return { runId: handle.workflowId, status, execs: executions(handle.workflowId) };
}

before(async () => {
  env = await startTestEnv(new Map());
  logFile = join(env.dir, 'executions.log');
  env.kinds.set('probe', probeKind(logFile));
  await env.startWorker();
});

after(async () => {
  await env?.close();
});

describe('pipelineRun DAG', () => {
  it('runs a diamond in dependency order, the two middle stages in parallel, outputs flowing downstream', async () => {
    const { status, execs } = await run(
      plan('diamond', [
        stage('a', []),
        stage('b', ['a'], { sleepMs: 1500, inputs: ['${{ stages.a.outputs.out }}'] }),
        stage('c', ['a'], { sleepMs: 1500, inputs: ['${{ stages.a.outputs.value }}'] }),
        stage('d', ['b', 'c'], { inputs: ['${{ stages.b.outputs.out }}', '${{ stages.c.outputs.out }}'] }),
      ]),
    );
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      status.stages.map((s) => s.state),
      ['succeeded', 'succeeded', 'succeeded', 'succeeded'],
    );
    const by = Object.fromEntries(execs.map((e) => [e.stageId, e]));
    assert.ok(by.a!.end <= by.b!.start && by.a!.end <= by.c!.start, 'b and c start after a ends');
    assert.ok(by.b!.start < by.c!.end && by.c!.start < by.b!.end, 'b and c overlap in time (real parallelism)');
    assert.ok(by.d!.start >= Math.max(by.b!.end, by.c!.end), 'd starts after b and c');
    // d received the artifact references of b and c, resolved at run time.
    const dOut = status.stages.find((s) => s.id === 'd')!.outputs!.out as { sha256: string };
    const content = JSON.parse(readFileSync(env.store.pathOf(dOut as never), 'utf8')) as { inputs: { sha256: string }[] };
    const bOut = status.stages.find((s) => s.id === 'b')!.outputs!.out as { sha256: string };
    assert.equal(content.inputs[0]!.sha256, bOut.sha256);
  });

  it('runs a wide DAG with the concurrency limit respected', async () => {
    const wide = [
      stage('root', []),
      ...Array.from({ length: 6 }, (_, i) => stage(`w${i}`, ['root'], { sleepMs: 600 })),
      stage('sink', ['w0', 'w1', 'w2', 'w3', 'w4', 'w5']),
    ];
    const { status, execs } = await run(plan('wide', wide, { concurrency: 3 }));
    assert.equal(status.state, 'succeeded');
    const ws = execs.filter((e) => e.stageId.startsWith('w'));
    // Stages running at the moment each one starts: counting every stage that overlaps a long one
    // would also count its successors, which start only after others ended (a slow machine did).
    let maxOverlap = 0;
    for (const e of ws) maxOverlap = Math.max(maxOverlap, ws.filter((o) => o.start <= e.start && e.start < o.end).length);
    assert.ok(maxOverlap >= 2, `some parallelism expected, saw ${maxOverlap}`);
    assert.ok(maxOverlap <= 3, `at most 3 at once, saw ${maxOverlap}`);
  });

  it('retries a transient failure and succeeds', async () => {
    const { status, execs } = await run(plan('flaky', [stage('f', [], { failUntilAttempt: 3 })]));
    assert.equal(status.state, 'succeeded');
    assert.deepEqual(
      execs.map((e) => [e.attempt, e.outcome]),
      [
        [1, 'failed'],
        [2, 'failed'],
        [3, 'ok'],
      ],
    );
  });

  it('fails at once, without retrying, on a non-retryable input error', async () => {
    const { status, execs } = await run(plan('bad', [stage('x', [], { inputError: true }), stage('y', ['x'])]));
    assert.equal(status.state, 'failed');
    const x = status.stages.find((s) => s.id === 'x')!;
    assert.equal(x.state, 'failed');
    assert.equal(x.error?.type, 'InputError');
    assert.match(x.error!.message, /stages\.x\.with\.value: bad value/);
    assert.equal(execs.length, 1, 'exactly one attempt');
    assert.equal(status.stages.find((s) => s.id === 'y')!.state, 'skipped');
  });

  it('fail-fast cancels running siblings and skips the rest', async () => {
    const { status } = await run(
      plan(
        'failfast',
        [stage('bad', [], { inputError: true, sleepMs: 0 }), stage('slow', [], { blockUntilCancelled: true }), stage('after', ['slow'])],
        { onFailure: 'fail-fast' },
      ),
    );
    assert.equal(status.state, 'failed');
    const st = Object.fromEntries(status.stages.map((s) => [s.id, s.state]));
    assert.deepEqual(st, { bad: 'failed', slow: 'cancelled', after: 'skipped' });
  });

  it('finish-independent lets independent branches finish', async () => {
    const { status } = await run(
      plan(
        'independent',
        [stage('bad', [], { inputError: true }), stage('dep', ['bad']), stage('other', [], { sleepMs: 800 }), stage('other2', ['other'])],
        {
          onFailure: 'finish-independent',
        },
      ),
    );
    assert.equal(status.state, 'failed');
    const st = Object.fromEntries(status.stages.map((s) => [s.id, s.state]));
    assert.deepEqual(st, { bad: 'failed', dep: 'skipped', other: 'succeeded', other2: 'succeeded' });
  });

  it('answers the status query during a run with progress from heartbeats, and cancels on request', async () => {
    const handle = await submitRun(
      env.client,
      {
        plan: plan('cancel', [
          stage('slow', [], { sleepMs: 4000 }),
          stage('block', ['slow'], { blockUntilCancelled: true }),
          stage('never', ['block']),
        ]),
        options: { baseDir: env.dir, actor: 'test', noCache: true },
      },
      { taskQueue: TEST_QUEUE },
    );
    let sawProgress = false;
    for (let i = 0; i < 60 && !sawProgress; i++) {
      await sleep(200);
      const s = await getRunStatus(env.client, handle.workflowId);
      const slow = s.stages.find((x) => x.id === 'slow')!;
      if (slow.state === 'running' && typeof slow.progress?.fraction === 'number') sawProgress = true;
    }
    assert.ok(sawProgress, 'status shows heartbeat progress of the running stage');
    for (let i = 0; i < 100; i++) {
      const s = await getRunStatus(env.client, handle.workflowId);
      if (s.stages.find((x) => x.id === 'block')!.state === 'running') break;
      await sleep(100);
    }
    await handle.cancel();
    const final = await waitForRun(env.client, handle.workflowId).catch(() => getRunStatus(env.client, handle.workflowId));
    const st = Object.fromEntries(final.stages.map((s) => [s.id, s.state]));
    assert.deepEqual(st, { slow: 'succeeded', block: 'cancelled', never: 'cancelled' });
    const blockExec = executions(handle.workflowId).find((e) => e.stageId === 'block');
    assert.equal(blockExec?.outcome, 'cancelled', 'the running activity saw the cancellation');
    assert.equal((await handle.describe()).status.name, 'CANCELLED');
  });
});
