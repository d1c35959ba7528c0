/**
 * Durability on a real dev server: a worker SIGKILLed mid-stage is replaced and the run completes;
 * the dev server restarted mid-run (same SQLite file) keeps the run, which completes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChildProcess } from 'node:child_process';
import { getRunStatus, SILENT_AFTER_SEC, statusFromHistory, submitRun, waitForRun } from '../client/runs.ts';
import { stageLine } from '../cli/format.ts';
import type { StageStatus } from '../workflows/types.ts';
import type { PlannedPipeline } from '../src/spec/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { probeKind, type ExecutionRecord } from './helpers/test-stages.ts';
import { startTestEnv, type TestEnv } from './helpers/temporal-env.ts';
import { waitFor } from './helpers/schedule-fixtures.ts';

let env: TestEnv;
let logFile: string;

const stage = (id: string, needs: string[], w: Record<string, unknown> = {}): StageDraft => ({
  id,
  uses: 'probe',
  needs,
  with: { value: id, ...w },
  heartbeatTimeout: 3_000,
  retry: { maximumAttempts: 5, initialInterval: 200, backoffCoefficient: 1 },
});
const plan = (name: string, stages: StageDraft[], extra: Partial<PlannedPipeline> = {}): PlannedPipeline =>
  plannedPipeline(name, stages, extra);

function execs(runId: string): ExecutionRecord[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as ExecutionRecord)
    .filter((r) => r.runId === runId);
}

async function waitForState(runId: string, stageId: string, state: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const st = await getRunStatus(env.client, runId).catch(() => undefined);
    if (st?.stages.find((s) => s.id === stageId)?.state === state) return;
    await sleep(100);
  }
  throw new Error(`stage ${stageId} never reached ${state}`);
}

/** What a worker process needs to run probe stages against this test's dev server and state. */
const probeWorkerEnv = () => ({
  TEMPORAL_ADDRESS: env.server.address,
  TEMPERED_HOME: env.dir,
  TEMPERED_PLUGINS: new URL('./helpers/probe-plugin.ts', import.meta.url).pathname,
  TEMPERED_PROBE_LOG: logFile,
});

before(async () => {
  env = await startTestEnv(new Map());
  logFile = join(env.dir, 'executions.log');
  env.kinds.set('probe', probeKind(logFile));
});
after(async () => env?.close());

describe('durability', () => {
  it('finishes a run after its worker is SIGKILLed mid-stage and a new worker starts', async () => {
    const queue = 'durability-kill';
    const workerEnv = probeWorkerEnv();
    let worker: ChildProcess = await startCliWorker(['--queue', queue], workerEnv);
    try {
      const h = await submitRun(
        env.client,
        {
          // (stopOnAbort: a retry that missed its own heartbeat on a loaded machine stops once told it
          // timed out, instead of finishing beside the retry after it.)
          plan: plan('kill', [stage('a', []), stage('b', ['a'], { sleepMs: 6000, stopOnAbort: true }), stage('c', ['b'])]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      await waitForState(h.workflowId, 'b', 'running');
      await sleep(1000);
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));
      worker = await startCliWorker(['--queue', queue], workerEnv);
      const final = await waitForRun(env.client, h.workflowId);
      assert.equal(final.state, 'succeeded');
      const b = execs(h.workflowId).filter((e) => e.stageId === 'b');
      // The killed attempt never finished; one retry did. (A retry that timed out on its heartbeat
      // stopped when told so: cancelled, before the retry that finished.)
      const ok = b.filter((e) => e.outcome === 'ok');
      assert.equal(ok.length, 1, `one attempt of b finished: ${JSON.stringify(b)}`);
      assert.ok(ok[0]!.attempt >= 2, `b completed on a retry (attempt ${ok[0]!.attempt})`);
      assert.deepEqual(
        b.filter((e) => e.outcome !== 'ok' && !(e.outcome === 'cancelled' && e.attempt < ok[0]!.attempt)),
        [],
        'no other attempt finished, and none failed',
      );
    } finally {
      await stopCliWorker(worker);
    }
  });

  it('a stage whose last attempt a stopped worker ended is scheduled again, not failed, unless it may run only once', async () => {
    // An upgrade stops each old worker in turn (SIGTERM); each stop used up one of the stage's attempts, and a
    // rolling upgrade of three workers under one long training failed it. Here `again` has two attempts and is on its
    // second (the first fails at once) when its worker stops; `once` may run only once (maximumAttempts: 1).
    const queue = 'durability-stopped';
    const workerEnv = probeWorkerEnv();
    const old = await startCliWorker(['--queue', queue], workerEnv);
    let replacement: ChildProcess | undefined;
    try {
      const h = await submitRun(
        env.client,
        {
          plan: plan(
            'stopped',
            [
              {
                ...stage('again', [], { sleepMs: 120_000, stopOnAbort: true, failUntilAttempt: 2 }),
                retry: { maximumAttempts: 2, initialInterval: 200 },
              },
              { ...stage('once', [], { sleepMs: 120_000, stopOnAbort: true }), retry: { maximumAttempts: 1 } },
            ],
            { onFailure: 'finish-independent' },
          ),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      await waitFor('the first attempt of again to fail', async () =>
        execs(h.workflowId).some((e) => e.stageId === 'again' && e.outcome === 'failed'),
      );
      await sleep(1000);
      // The new worker first, then the old one stopped: its stages outlive the 10 s grace and are cancelled. The new
      // one sleeps a tenth as long (12 s).
      replacement = await startCliWorker(['--queue', queue], { ...workerEnv, TEMPERED_PROBE_SLEEP_SCALE: '0.1' });
      await stopCliWorker(old);
      const final = await waitForRun(env.client, h.workflowId);
      const byId = (id: string) => final.stages.find((x) => x.id === id)!;
      assert.equal(byId('again').state, 'succeeded', JSON.stringify(byId('again').error));
      assert.equal(byId('again').attempt, 4, 'two attempts, the second stopped; then two more');
      assert.deepEqual(
        execs(h.workflowId)
          .filter((e) => e.stageId === 'again')
          .map((e) => e.outcome),
        ['failed', 'cancelled', 'failed', 'ok'],
      );
      assert.deepEqual([byId('once').state, byId('once').error?.type, byId('once').attempt], ['failed', 'WorkerShutdown', 1]);
      // The status rebuilt from the history (a run past the server's query) counts both schedulings' attempts too.
      const events = (await env.client.workflow.getHandle(h.workflowId).fetchHistory()).events ?? [];
      const rebuilt = statusFromHistory(env.client, h.workflowId, final.startedAt, events).stages.find((x) => x.id === 'again')!;
      assert.deepEqual([rebuilt.state, rebuilt.attempt], ['succeeded', 4]);
      const scheduled = events.filter((e) => e.activityTaskScheduledEventAttributes?.activityId === 'stage-again');
      assert.equal(scheduled.length, 2);
      // From its first scheduling: the stopped attempt's grace (10 s) and the whole last one (12 s); from the second,
      // 12 s.
      assert.ok(Date.parse(rebuilt.endedAt!) - Date.parse(rebuilt.startedAt!) >= 20_000, `${rebuilt.startedAt} to ${rebuilt.endedAt}`);
    } finally {
      await stopCliWorker(old);
      if (replacement) await stopCliWorker(replacement);
    }
  });

  it('a stopping worker whose stage ignores its cancellation exits within its deadline, saying why', async () => {
    // A stage blocked on a database that does not answer ignores the cancellation that a stop sends; the worker then
    // waited for it for minutes, past a platform's SIGKILL. A stage that sleeps through its cancellation stands in.
    const queue = 'durability-deadline';
    const logPath = join(env.dir, 'deadline-worker.log');
    const worker = await startCliWorker(['--queue', queue], probeWorkerEnv(), { logFile: logPath });
    const h = await submitRun(
      env.client,
      {
        plan: plan('deadline', [{ ...stage('a', [], { sleepMs: 60_000 }), heartbeatTimeout: 120_000 }]),
        options: { baseDir: env.dir, actor: 'test', noCache: true },
      },
      { taskQueue: queue },
    );
    try {
      await waitForState(h.workflowId, 'a', 'running');
      const exited = new Promise<number | null>((r) => worker.once('exit', (code) => r(code)));
      worker.kill('SIGTERM');
      assert.equal(await exited, 1);
      assert.match(
        readFileSync(logPath, 'utf8'),
        /worker: not stopped 25 s after SIGTERM: some work did not end when cancelled \(most often a call to a store or database that does not answer\); exiting now/,
      );
    } finally {
      await stopCliWorker(worker);
      await env.client.workflow.getHandle(h.workflowId).terminate('test over');
    }
  });

  it("says of a running stage whose worker went silent that it may be dead, long before its heartbeat timeout; a live one's never", async () => {
    const queue = 'durability-silent';
    const workerEnv = probeWorkerEnv();
    const worker = await startCliWorker(['--queue', queue], workerEnv);
    const h = await submitRun(
      env.client,
      {
        plan: plan('silent', [{ ...stage('a', [], { sleepMs: 120_000, stopOnAbort: true }), heartbeatTimeout: 300_000 }]),
        options: { baseDir: env.dir, actor: 'test', noCache: true },
      },
      { taskQueue: queue },
    );
    const others: string[] = [];
    let startedWorker = false;
    try {
      await waitForState(h.workflowId, 'a', 'running');
      // Longer than SILENT_AFTER_SEC with its worker alive: its heartbeats keep it from reading silent.
      await sleep((SILENT_AFTER_SEC + 2) * 1000);
      const live = (await getRunStatus(env.client, h.workflowId)).stages[0]!;
      assert.equal(live.state, 'running');
      assert.equal(live.silentSec, undefined, 'a live worker is not silent');
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));
      let silent: StageStatus | undefined;
      for (const deadline = Date.now() + 60_000; !silent; await sleep(500)) {
        assert.ok(Date.now() < deadline, 'the stage read silent within a minute of its worker dying');
        const st = (await getRunStatus(env.client, h.workflowId)).stages[0]!;
        if (st.silentSec !== undefined) silent = st;
      }
      assert.equal(silent.state, 'running', 'still running: the heartbeat timeout (5 min) has not passed');
      assert.ok(silent.silentSec! >= SILENT_AFTER_SEC);
      assert.match(stageLine(silent), /no heartbeat from its worker for \d+s: the worker may have died/);
      // A run whose stage waits for the queue's slot is told what holds it, and that its worker is silent.
      // (Its workflow runs on a live worker; only the stage goes to the dead one's queue.)
      await env.startWorker();
      startedWorker = true;
      const next = await submitRun(
        env.client,
        { plan: plan('silent-next', [{ ...stage('b', []), queue }]), options: { baseDir: env.dir, actor: 'test', noCache: true } },
        { taskQueue: 'tempered-test' },
      );
      others.push(next.workflowId);
      let waiting: StageStatus | undefined;
      for (const deadline = Date.now() + 60_000; !waiting; await sleep(500)) {
        assert.ok(Date.now() < deadline, 'the waiting stage named the silent holder within a minute');
        const st = (await getRunStatus(env.client, next.workflowId)).stages[0]!;
        if (st.waitingBehindRuns?.[0]?.silentSec !== undefined) waiting = st;
      }
      assert.deepEqual(
        waiting.waitingBehindRuns!.map((b) => [b.runId, b.stage]),
        [[h.workflowId, 'a']],
      );
      assert.match(stageLine(waiting), /is busy with stage a of run \S+ \(its worker silent for \d+s, likely dead/);
    } finally {
      worker.kill('SIGKILL');
      for (const id of [h.workflowId, ...others])
        await env.client.workflow
          .getHandle(id)
          .terminate('test over')
          .catch(() => {});
      if (startedWorker) await env.stopWorker();
    }
  });

  it('finishes a run across a dev-server restart (state kept in SQLite)', async () => {
    await env.startWorker();
    try {
      const h = await submitRun(
        env.client,
        {
          plan: plan('restart', [stage('a', []), stage('b', ['a'], { sleepMs: 5000 }), stage('c', ['b'])]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: 'tempered-test' },
      );
      await waitForState(h.workflowId, 'b', 'running');
      await env.restartServer();
      let final;
      for (let i = 0; i < 10 && !final; i++) {
        final = await waitForRun(env.client, h.workflowId).catch(async (e: Error) => {
          // The client's connection may need a moment to reconnect after the restart.
          await sleep(500);
          if (i === 9) throw e;
          return undefined;
        });
      }
      assert.equal(final!.state, 'succeeded');
      assert.deepEqual(
        final!.stages.map((s) => s.state),
        ['succeeded', 'succeeded', 'succeeded'],
      );
    } finally {
      await env.stopWorker();
    }
  });
});
