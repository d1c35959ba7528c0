/**
 * Run status and resume where the usual path cannot serve, on a real dev server: `status` of a run
 * whose worker was killed mid-stage (no worker can answer the status query) comes from the run's
 * history, saying no worker polls its queue; a resumed run of a schedule stays tied to the schedule.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { findTemporalCli } from '../infra/temporal-cli.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { getRunStatus, listRuns, submitRun, WORKFLOW_TYPE } from '../client/runs.ts';
import { openAudit } from '../src/audit/log.ts';
import type { RunInput } from '../workflows/types.ts';
import { plannedPipeline, type StageDraft } from './helpers/plans.ts';
import { BIN, runCli, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { stageLine } from '../cli/format.ts';
import { probeKind } from './helpers/test-stages.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';
import { waitFor, writeData } from './helpers/schedule-fixtures.ts';

let env: TestEnv;
let cliEnv: Record<string, string>;

const stage = (id: string, needs: string[], w: Record<string, unknown> = {}): StageDraft => ({
  id,
  uses: 'probe',
  needs,
  with: { value: id, ...w },
  heartbeatTimeout: 3_000,
  retry: { maximumAttempts: 5, initialInterval: 200, backoffCoefficient: 1 },
});

before(async () => {
  env = await startTestEnv(new Map());
  const logFile = join(env.dir, 'executions.log');
  env.kinds.set('probe', probeKind(logFile));
  cliEnv = {
    TEMPORAL_ADDRESS: env.server.address,
    TEMPERED_HOME: env.dir,
    TEMPERED_ACTOR: 'status-tester',
    TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
    TEMPERED_PROBE_LOG: logFile,
  };
});
after(async () => env?.close());

describe('status without a worker', () => {
  it('a run whose worker was killed mid-stage: status from its history, saying no worker polls its queue', async () => {
    const queue = 'status-killed';
    let worker: ChildProcess = await startCliWorker(['--queue', queue], cliEnv);
    try {
      const h = await submitRun(
        env.client,
        {
          // b's heartbeat timeout is long, so that its killed attempt still reads started below.
          plan: plannedPipeline('killed', [
            stage('a', []),
            { ...stage('b', ['a'], { sleepMs: 600_000 }), heartbeatTimeout: 600_000 },
            stage('c', ['b']),
          ]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      await waitFor(
        'stage b running',
        async () => (await getRunStatus(env.client, h.workflowId)).stages.find((s) => s.id === 'b')?.state === 'running',
      );
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));

      const st = await getRunStatus(env.client, h.workflowId);
      assert.equal(st.state, 'running');
      assert.deepEqual(
        st.stages.map((s) => [s.id, s.state]),
        [
          ['a', 'succeeded'],
          ['b', 'running'],
          ['c', 'pending'],
        ],
      );
      assert.ok(st.stages[0]!.outputs?.out, "a finished stage's outputs come from its history");
      assert.equal(st.noWorkerAnswered?.taskQueue, queue);
      // The server lists the killed worker as a poller for minutes; its last poll's time tells. Read as if two and a
      // half minutes had passed (no wait): no worker has polled the queue since well over a long poll's minute ago.
      assert.equal(st.stages[1]!.queueUnpolled, undefined, 'polled moments ago');
      const later = (await getRunStatus(env.client, h.workflowId, { now: Date.now() + 150_000 })).stages[1]!;
      assert.ok(later.silentSec! >= 150, `silent ${later.silentSec}`);
      assert.equal(later.queueUnpolled?.queue, queue);
      assert.ok(Date.parse(later.queueUnpolled!.since!) <= Date.now(), later.queueUnpolled!.since);
      assert.ok(Date.parse(later.queueUnpolled!.retryAt!) > Date.now() + 500_000, `retried at ${later.queueUnpolled!.retryAt}`);
      assert.match(
        stageLine(later),
        new RegExp(
          `no heartbeat from its worker for 2m\\d\\ds, and no worker has polled task queue '${queue}' since \\S+ \\(.* ago; a live worker polls at least every minute unless all its slots are busy\\): its worker may be gone; its heartbeat timeout passes at \\S+ \\(in (9|10)m\\d\\ds\\), and the server then retries it`,
        ),
      );

      const r = await runCli(['status', h.workflowId], cliEnv);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(
          `no worker is polling task queue '${queue}' now.*the run continues when one starts \\(\`tempered worker --queue ${queue}\`\\)`,
        ),
      );
      assert.match(r.stdout, /✓ a\s+probe\s+succeeded/);
      assert.match(r.stdout, /▶ b\s+probe\s+running/);
      const json = JSON.parse((await runCli(['status', h.workflowId, '--json'], cliEnv)).stdout) as { noWorkerAnswered?: unknown };
      assert.deepEqual(json.noWorkerAnswered, { taskQueue: queue, pollersListed: true });
      // Resume refuses a running run; "wait for it" would do nothing here: a worker carries it on.
      const resumed = await runCli(['resume', h.workflowId], cliEnv);
      assert.notEqual(resumed.code, 0);
      assert.match(
        resumed.stderr,
        new RegExp(`still running, but no worker answers for it on task queue '${queue}'; start \`tempered worker --queue ${queue}\``),
      );
      await env.client.workflow.getHandle(h.workflowId).terminate('test done');
    } finally {
      await stopCliWorker(worker);
    }
  });
});

describe('resume of a scheduled run', () => {
  it("stays tied to the schedule: memo, run id, run.submitted and `runs` name it; listing the schedule's runs finds it", async () => {
    const name = 'resched';
    const input: RunInput = {
      plan: plannedPipeline('rs-pipe', [stage('bad', [], { inputError: true })]),
      options: { baseDir: env.dir, actor: 'scheduler', scheduleId: name },
    };
    // As client/schedules.ts makes a schedule's action: the run's input and memo name the schedule.
    await env.client.schedule.create({
      scheduleId: name,
      spec: { intervals: [{ every: '1 day' }] },
      action: {
        type: 'startWorkflow',
        workflowType: WORKFLOW_TYPE,
        taskQueue: TEST_QUEUE,
        workflowId: name,
        args: [input] as never,
        memo: { pipeline: input.plan.name, specHash: input.plan.specHash, actor: 'scheduler', resumeOf: '', scheduleId: name },
      },
      state: { paused: true },
    });
    await env.startWorker();
    try {
      const sched = env.client.schedule.getHandle(name);
      await sched.trigger();
      const old = await waitFor(
        'the schedule to start a run',
        async () => (await sched.describe()).info.recentActions[0]?.action.workflow.workflowId,
      );
      await env.client.workflow
        .getHandle(old)
        .result()
        .catch(() => undefined);

      const r = await runCli(['resume', old], cliEnv);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`resuming ${old} \\(pipeline rs-pipe, spec \\S+, schedule ${name}\\)`));
      const next = /submitted run (\S+)/.exec(r.stdout)?.[1];
      assert.ok(next, r.stdout);
      assert.ok(next.startsWith(`${name}-`), `named after the schedule as its runs are: ${next}`);

      const desc = await env.client.workflow.getHandle(next).describe();
      assert.equal(desc.memo?.scheduleId, name);
      assert.equal(desc.memo?.resumeOf, old);

      const audit = await openAudit(join(env.dir, 'audit.db'));
      try {
        const submitted = (await audit.query({ run: next, action: 'run.submitted' }))[0];
        assert.equal((submitted?.details as { scheduleId?: string } | undefined)?.scheduleId, name);
        assert.equal((submitted?.details as { resumeOf?: string } | undefined)?.resumeOf, old);
      } finally {
        await audit.close();
      }

      const ofSchedule = await waitFor('both runs to be listed under the schedule', async () => {
        const runs = await listRuns(env.client, 20, { schedule: name });
        return runs.length === 2 ? runs : undefined;
      });
      assert.deepEqual(ofSchedule.map((x) => x.runId).sort(), [old, next].sort());
      assert.deepEqual(
        ofSchedule.map((x) => x.scheduleId),
        [name, name],
      );
      assert.equal(ofSchedule.find((x) => x.runId === next)?.resumeOf, old);

      const listed = await runCli(['runs'], cliEnv);
      assert.equal(listed.code, 0, listed.stderr);
      const line = listed.stdout.split('\n').find((l) => l.startsWith(next));
      assert.ok(line, listed.stdout);
      assert.match(line, new RegExp(`schedule ${name}  resumes ${old}$`));
    } finally {
      await env.stopWorker();
      await env.client.schedule.getHandle(name).delete();
    }
  });
});

describe('resume when an ingest source is gone', () => {
  it('the resumed ingest re-reads its sources: a deleted one fails it, with a hint that says why', async () => {
    const queue = 'resume-gone';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    try {
      const data = writeData(env.dir, 'd2.jsonl', 20, 0.5);
      const file = join(env.dir, 'gone.yaml');
      writeFileSync(
        file,
        [
          'name: gone',
          'stages:',
          '  ingest:',
          '    uses: ingest',
          '    with:',
          '      path: d2.jsonl',
          '      task: classification',
          '  train:',
          '    uses: probe',
          '    needs: ingest',
          '    with:',
          '      value: x',
          '      inputError: true',
          "      inputs: ['${{ stages.ingest.outputs.table }}']",
          '',
        ].join('\n'),
      );
      const first = await runCli(['submit', file, '--queue', queue, '--wait', '--no-local-worker'], cliEnv);
      assert.equal(first.code, 1, first.stderr);
      assert.match(first.stdout, /✓ ingest/);
      const runId = /submitted run (\S+)/.exec(first.stdout)![1]!;
      rmSync(data);

      const resumed = await runCli(['resume', runId, '--wait', '--no-local-worker'], cliEnv);
      assert.equal(resumed.code, 1, resumed.stderr);
      // Said before the new run starts: what the old run finished (the cache gives it back) and what runs again.
      assert.match(
        resumed.stdout,
        new RegExp(
          `resuming ${runId} .*\\n  finished in ${runId}, reused from the stage cache unless their inputs changed .*: ingest\\n  to run .*: train\\n`,
        ),
      );
      assert.match(resumed.stdout, /✗ ingest .*"d2\.jsonl" does not exist/);
      assert.match(resumed.stdout, /hint: .*a resumed run reads its ingest sources again/);
    } finally {
      await stopCliWorker(worker);
    }
  });
});

/** The CLI in a child process, for what needs a signal: its output so far in `out`, its exit code from `exited`. */
function spawnCli(args: string[]) {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { stdout: '', stderr: '' };
  child.stdout.on('data', (d: Buffer) => (out.stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out.stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, out, exited };
}

describe('Ctrl-C while submit --wait follows a run', () => {
  it('stops waiting and exits 130, says the run is not cancelled, and leaves it on the server', async () => {
    const file = join(env.dir, 'interrupted.yaml');
    writeFileSync(
      file,
      [
        'name: interrupted',
        'stages:',
        '  slow:',
        '    uses: probe',
        '    with:',
        '      value: x',
        '      blockUntilCancelled: true',
        '',
      ].join('\n'),
    );
    // The reviewer's case: the waiting command is also the run's worker. Before, the SDK shut that
    // worker down on SIGINT and the command kept following a run nobody served (11 minutes, then SIGINT again).
    const { child, out, exited } = spawnCli(['submit', file, '--queue', 'interrupted', '--wait', '--local-worker']);
    try {
      for (let i = 0; !/▶ slow\s+probe\s+running/.test(out.stdout); i++) {
        assert.ok(i < 600, `the stage never ran:\n${out.stdout}\n${out.stderr}`);
        await sleep(100);
      }
      child.kill('SIGINT');
      const code = await Promise.race([exited, sleep(60_000).then(() => 'still running')]);
      assert.equal(code, 130, `${out.stdout}\n${out.stderr}`);
      const runId = /submitted run (\S+)/.exec(out.stdout)![1]!;
      assert.match(out.stderr, new RegExp(`SIGINT: stopped waiting for run ${runId}; it is not cancelled\. This process was its worker`));
      assert.match(out.stderr, /`tempered worker --queue interrupted` carries it on/);
      const desc = await env.client.workflow.getHandle(runId).describe();
      assert.equal(desc.status.name, 'RUNNING', 'the run goes on without the command that followed it');
      await env.client.workflow.getHandle(runId).terminate('test done');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('--wait on a run no worker picks up', () => {
  it('says the run waits for a worker of its queue, once, while it follows it', async () => {
    const file = join(env.dir, 'unserved.yaml');
    writeFileSync(file, ['name: unserved', 'stages:', '  only:', '    uses: probe', '    with: { value: x }', ''].join('\n'));
    // The journey's case: `resume --wait` on a queue whose worker was gone printed nothing for minutes.
    const { child, out, exited } = spawnCli(['submit', file, '--queue', 'nobody-at-all', '--wait', '--no-local-worker']);
    try {
      const waiting = /waiting: no worker has picked this run up yet; it starts when a worker serving task queue 'nobody-at-all' runs/;
      for (let i = 0; !waiting.test(out.stdout); i++) {
        assert.ok(i < 600, `never said it waits:\n${out.stdout}\n${out.stderr}`);
        await sleep(100);
      }
      await sleep(2500); // a few more polls: said once, not at each
      assert.equal(out.stdout.match(new RegExp(waiting.source, 'g'))!.length, 1, out.stdout);
      child.kill('SIGINT');
      assert.equal(await Promise.race([exited, sleep(60_000).then(() => 'still running')]), 130, `${out.stdout}\n${out.stderr}`);
      await env.client.workflow.getHandle(/submitted run (\S+)/.exec(out.stdout)![1]!).terminate('test done');
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('a stage routed to a queue no worker serves', () => {
  it('submit says so, and status shows the stage waiting for that queue instead of running', async () => {
    const queue = 'routed-home';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    try {
      const file = join(env.dir, 'routed.yaml');
      writeFileSync(
        file,
        [
          'name: routed',
          'stages:',
          '  first:',
          '    uses: probe',
          '    with: { value: x }',
          '  gpu_step:',
          '    uses: probe',
          '    needs: first',
          '    queue: nobody-serves',
          '    with: { value: y }',
          '',
        ].join('\n'),
      );
      const submitted = await runCli(['submit', file, '--queue', queue], cliEnv);
      assert.equal(submitted.code, 0, submitted.stderr);
      assert.match(
        submitted.stderr,
        /no worker of task queue 'nobody-serves' has asked for work lately \(none runs, or all are busy\): stage gpu_step waits for one there/,
      );
      const runId = /submitted run (\S+)/.exec(submitted.stdout)![1]!;
      try {
        await waitFor(
          'gpu_step waiting',
          async () => (await getRunStatus(env.client, runId)).stages.find((s) => s.id === 'gpu_step')?.waitingForWorker,
        );
        // Asked again and again (a --wait, the dashboard), the waiting stage's queue is not read from the history again.
        const service = env.client.workflowService;
        const read = service.getWorkflowExecutionHistory.bind(service);
        let historyReads = 0;
        service.getWorkflowExecutionHistory = (async (req: Parameters<typeof read>[0]) => (historyReads++, read(req))) as typeof read;
        try {
          for (let i = 0; i < 3; i++)
            assert.equal(
              (await getRunStatus(env.client, runId)).stages.find((s) => s.id === 'gpu_step')?.waitingForWorker,
              'nobody-serves',
            );
        } finally {
          service.getWorkflowExecutionHistory = read;
        }
        assert.equal(historyReads, 0);
        const st = await runCli(['status', runId], cliEnv);
        assert.equal(st.code, 0, st.stderr);
        assert.match(
          st.stdout,
          /▶ gpu_step\s+probe\s+running .*waiting: no worker of task queue 'nobody-serves' has asked for work lately \(none runs, or all are busy\); the stage starts when one takes it/,
        );
        assert.match(st.stdout, /✓ first/);
      } finally {
        await env.client.workflow.getHandle(runId).terminate('test done');
      }
    } finally {
      await stopCliWorker(worker);
    }
  });
});

describe('a stage whose queue is busy with another stage of the run', () => {
  // A gpu:1 worker trains one branch while the other waits: that stage read "running" with no progress,
  // and once the busy worker dropped off the server's poller list, "no worker … (none runs, or all are busy)".
  it('waits behind that stage, in status and in the CLI', async () => {
    const home = 'busy-home';
    const gpu = 'busy-gpu';
    const worker = await startCliWorker(['--queue', `${home},${gpu}:1`], cliEnv);
    try {
      const file = join(env.dir, 'busy.yaml');
      writeFileSync(
        file,
        [
          'name: busy',
          'stages:',
          '  first:',
          '    uses: probe',
          '    with: { value: x }',
          ...['train_a', 'train_b'].flatMap((id) => [
            `  ${id}:`,
            '    uses: probe',
            '    needs: first',
            `    queue: ${gpu}`,
            `    with: { value: ${id}, blockUntilCancelled: true }`,
          ]),
          '',
        ].join('\n'),
      );
      const submitted = await runCli(['submit', file, '--queue', home], cliEnv);
      assert.equal(submitted.code, 0, submitted.stderr);
      const runId = /submitted run (\S+)/.exec(submitted.stdout)![1]!;
      try {
        const waiting = await waitFor('a branch waiting behind the other', async () =>
          (await getRunStatus(env.client, runId)).stages.find((s) => s.waitingBehind !== undefined),
        );
        const other = waiting.id === 'train_a' ? 'train_b' : 'train_a';
        assert.deepEqual([waiting.state, waiting.waitingForWorker, waiting.waitingBehind], ['running', gpu, [other]]);
        const st = await runCli(['status', runId], cliEnv);
        assert.equal(st.code, 0, st.stderr);
        assert.match(
          st.stdout,
          new RegExp(
            `▶ ${waiting.id}\\s+probe\\s+running .*waiting: task queue '${gpu}' is busy with stage ${other} of this run; the stage starts when a worker slot there is free`,
          ),
        );
        assert.doesNotMatch(st.stdout, new RegExp(`▶ ${other}\\s+probe\\s+running .*waiting`));
      } finally {
        await env.client.workflow.getHandle(runId).terminate('test done');
      }
    } finally {
      await stopCliWorker(worker);
    }
  });
});

describe('a stage whose queue is busy with a stage of another run', () => {
  // A gpu:1 worker trains run A while run B's train waits: B's stage read "running" while the busy worker
  // stayed on the server's poller list, then "no worker … (none runs, or all are busy)".
  it('waits behind that run and stage, in status and in the CLI', async () => {
    const home = 'others-home';
    const gpu = 'others-gpu';
    const worker = await startCliWorker(['--queue', `${home},${gpu}:1`], cliEnv);
    const runs: string[] = [];
    try {
      const submit = async (name: string) => {
        const h = await submitRun(
          env.client,
          {
            plan: plannedPipeline(name, [{ ...stage('train', [], { blockUntilCancelled: true }), queue: gpu }]),
            options: { baseDir: env.dir, actor: 'test', noCache: true },
          },
          { taskQueue: home },
        );
        runs.push(h.workflowId);
        return h.workflowId;
      };
      const a = await submit('others-a');
      await waitFor('A training', async () => (await env.client.workflow.getHandle(a).describe()).raw.pendingActivities?.[0]?.state === 2);
      const b = await submit('others-b');
      const waiting = await waitFor('B waiting behind A', async () => {
        const st = (await getRunStatus(env.client, b)).stages[0]!;
        return st.waitingBehindRuns && st;
      });
      assert.deepEqual(
        [waiting.state, waiting.waitingForWorker, waiting.waitingBehind, waiting.waitingBehindRuns],
        ['running', gpu, undefined, [{ runId: a, stage: 'train' }]],
      );
      const trainingA = (await getRunStatus(env.client, a)).stages[0]!;
      assert.deepEqual(
        [trainingA.state, trainingA.waitingForWorker],
        ['running', undefined],
        'the stage that holds the queue waits for nothing',
      );
      const st = await runCli(['status', b], cliEnv);
      assert.equal(st.code, 0, st.stderr);
      assert.match(
        st.stdout,
        new RegExp(
          `▶ train\\s+probe\\s+running .*waiting: task queue '${gpu}' is busy with stage train of run ${a}; the stage starts when a worker slot there is free`,
        ),
      );
      assert.doesNotMatch((await runCli(['status', a], cliEnv)).stdout, /waiting/);
    } finally {
      await Promise.allSettled(runs.map((id) => env.client.workflow.getHandle(id).terminate('test done')));
      await stopCliWorker(worker);
    }
  });

  it('finds that run behind more than 50 older running runs', async () => {
    // Before, only the 50 oldest running runs (of the 500 newest) were looked at: a holder that started after them
    // was never found, and the waiting stage read "no worker … has asked for work lately", or just running.
    const home = 'older-home';
    const gpu = 'older-gpu';
    const runs: string[] = [];
    const submit = async (name: string, taskQueue: string) => {
      const h = await submitRun(
        env.client,
        {
          plan: plannedPipeline(name, [{ ...stage('train', [], { blockUntilCancelled: true }), queue: gpu }]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue },
      );
      runs.push(h.workflowId);
      return h.workflowId;
    };
    let worker: Awaited<ReturnType<typeof startCliWorker>> | undefined;
    try {
      // Running runs older than the holder that hold nothing: no worker serves their queue, so they never begin.
      for (let i = 0; i < 60; i++) await submit(`older-idle-${i}`, 'older-nobody-serves');
      await waitFor(
        'the older runs listed',
        async () =>
          (
            await env.client.workflow.count(
              `WorkflowType = '${WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND TaskQueue = 'older-nobody-serves'`,
            )
          ).count >= 60,
      );
      worker = await startCliWorker(['--queue', `${home},${gpu}:1`], cliEnv);
      const a = await submit('older-a', home);
      await waitFor('A training', async () => (await env.client.workflow.getHandle(a).describe()).raw.pendingActivities?.[0]?.state === 2);
      const b = await submit('older-b', home);
      // Looking through 60 runs made as many calls on one abort signal, each adding a listener the SDK never removes:
      // Node warned of a leak (MaxListenersExceededWarning) on every such status.
      const warnings: string[] = [];
      const onWarning = (w: Error) => void (w.name === 'MaxListenersExceededWarning' && warnings.push(w.message));
      process.on('warning', onWarning);
      const waiting = await waitFor('B waiting behind A', async () => {
        const st = (await getRunStatus(env.client, b)).stages[0]!;
        return st.waitingBehindRuns && st;
      }).finally(() => process.off('warning', onWarning));
      assert.deepEqual([waiting.waitingForWorker, waiting.waitingBehindRuns], [gpu, [{ runId: a, stage: 'train' }]]);
      assert.deepEqual(warnings, []);
    } finally {
      await Promise.allSettled(runs.map((id) => env.client.workflow.getHandle(id).terminate('test done')));
      if (worker) await stopCliWorker(worker);
    }
  });

  it('names the first few of them, and how many more', () => {
    const busy = ['r1', 'r2', 'r3', 'r4', 'r5'].map((runId) => ({ runId, stage: 'train' }));
    const line = stageLine({ id: 'train', uses: 'probe', needs: [], state: 'running', waitingForWorker: 'gpu', waitingBehindRuns: busy });
    assert.match(
      line,
      /waiting: task queue 'gpu' is busy with stage train of run r1, stage train of run r2, stage train of run r3 and 2 more; the stage starts when a worker slot there is free$/,
    );
  });
});

describe('a cancelled run read with no worker up', () => {
  it('is cancelled, with its stopped stage cancelled (its close event carries no status, and its history alone said running)', async () => {
    const queue = 'cancelled-closed';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    let runId: string;
    try {
      const h = await submitRun(
        env.client,
        {
          plan: plannedPipeline('cancelled-closed', [stage('a', []), stage('b', ['a'], { blockUntilCancelled: true }), stage('c', ['b'])]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      runId = h.workflowId;
      await waitFor('b running', async () => (await getRunStatus(env.client, runId)).stages.find((s) => s.id === 'b')?.state === 'running');
      await env.client.workflow.getHandle(runId).cancel();
      await waitFor('the run closed', async () => (await env.client.workflow.getHandle(runId).describe()).status.name === 'CANCELLED');
    } finally {
      await stopCliWorker(worker);
    }
    const st = await getRunStatus(env.client, runId);
    assert.equal(st.state, 'cancelled');
    assert.ok(st.endedAt, 'it ended');
    assert.deepEqual(
      st.stages.map((s) => [s.id, s.state]),
      [
        ['a', 'succeeded'],
        ['b', 'cancelled'],
        ['c', 'pending'],
      ],
    );
    assert.equal((st as { noWorkerAnswered?: unknown }).noWorkerAnswered, undefined, 'a closed run waits for no worker');
  });
});

describe('a run whose cancellation was asked for while a stage runs', () => {
  it('status says so until the stage stops (a second cancel looked like the first went nowhere)', async () => {
    const queue = 'cancelling';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    try {
      const h = await submitRun(
        env.client,
        {
          // A stage that does not notice cancellation for a while (a long onnxruntime run does the same).
          plan: plannedPipeline('cancelling', [stage('slow', [], { sleepMs: 30_000 })]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      try {
        await waitFor('slow running', async () => (await getRunStatus(env.client, h.workflowId)).stages[0]?.state === 'running');
        assert.equal((await getRunStatus(env.client, h.workflowId)).cancelRequested, undefined);
        await env.client.workflow.getHandle(h.workflowId).cancel();
        const st = await getRunStatus(env.client, h.workflowId);
        assert.equal(st.state, 'running');
        assert.equal(st.cancelRequested, true);
        const r = await runCli(['status', h.workflowId], cliEnv);
        assert.match(r.stdout, /cancelling: a cancellation was requested; the run ends once its running stages stop/);
      } finally {
        await env.client.workflow.getHandle(h.workflowId).terminate('test done');
      }
    } finally {
      // Not a graceful stop: that waits for the stage, which does not notice cancellation.
      worker.kill('SIGKILL');
      await new Promise((r) => (worker.exitCode !== null || worker.signalCode !== null ? r(undefined) : worker.once('exit', r)));
    }
  });
});

describe('a stage whose worker was killed mid-attempt', () => {
  // The retry no worker took kept the killed attempt's heartbeat: status read "running 64% step 691/1080 … eta 14s
  // retrying after: activity Heartbeat timeout" for as long as no worker came back.
  it("shows the retry waiting for a worker, not the killed attempt's progress as live", async () => {
    const queue = 'killed-home';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    const file = join(env.dir, 'killed.yaml');
    writeFileSync(
      file,
      [
        'name: killed',
        'stages:',
        '  slow:',
        '    uses: probe',
        '    heartbeatTimeout: 2s',
        '    retry: { maximumAttempts: 3, initialInterval: 1s }',
        '    with: { value: x, sleepMs: 600000 }',
        '',
      ].join('\n'),
    );
    const submitted = await runCli(['submit', file, '--queue', queue], cliEnv);
    assert.equal(submitted.code, 0, submitted.stderr);
    const runId = /submitted run (\S+)/.exec(submitted.stdout)![1]!;
    try {
      await waitFor(
        'the first attempt reporting progress',
        async () => (await getRunStatus(env.client, runId)).stages.find((s) => s.id === 'slow')?.progress,
      );
      worker.kill('SIGKILL');
      const waiting = await waitFor(
        'the second attempt waiting for a worker',
        async () => {
          const st = (await getRunStatus(env.client, runId)).stages.find((s) => s.id === 'slow');
          return st?.attempt === 2 && /no worker has taken it/.test(st.error?.message ?? '') ? st : undefined;
        },
        90_000,
        500,
      );
      assert.equal(waiting.state, 'running');
      assert.equal(waiting.progress, undefined);
      assert.match(waiting.error!.message, /^attempt 2 has not started: no worker has taken it .*; attempt 1 ended: .*[Hh]eartbeat/);
      const st = await runCli(['status', runId], cliEnv);
      assert.match(st.stdout, /▶ slow +probe +running .*\(attempt 2\) +attempt 2 has not started: no worker has taken it/);
    } finally {
      await stopCliWorker(worker);
      await env.client.workflow.getHandle(runId).terminate('test done');
    }
  });
});

describe('a stage an operator paused (temporal activity pause)', () => {
  // Its stopped attempt's progress read as live ("running 40% step 4/10"), with nothing said of the pause.
  it('says it is paused, by whom and why, keeps no progress as live, and names the command that unpauses it', async () => {
    const queue = 'paused-home';
    const worker = await startCliWorker(['--queue', queue], cliEnv);
    try {
      const h = await submitRun(
        env.client,
        {
          plan: plannedPipeline('paused', [{ ...stage('slow', [], { sleepMs: 600_000, stopOnAbort: true }), heartbeatTimeout: 60_000 }]),
          options: { baseDir: env.dir, actor: 'test', noCache: true },
        },
        { taskQueue: queue },
      );
      const runId = h.workflowId;
      try {
        await waitFor('the first attempt reporting progress', async () => (await getRunStatus(env.client, runId)).stages[0]?.progress);
        await env.client.workflowService.pauseActivity({
          namespace: 'default',
          execution: { workflowId: runId },
          id: 'stage-slow',
          identity: 'ops-tester',
          reason: 'database maintenance',
        });
        const paused = await waitFor('the stage paused', async () => {
          const s = (await getRunStatus(env.client, runId)).stages[0]!;
          return s.paused && !s.paused.pending ? s : undefined;
        });
        assert.equal(paused.state, 'running');
        assert.equal(paused.progress, undefined);
        assert.deepEqual([paused.paused!.by, paused.paused!.reason], ['ops-tester', 'database maintenance']);
        const unpause = `temporal activity unpause --workflow-id ${runId} --activity-id stage-slow`;
        assert.equal(paused.paused!.unpause, unpause);
        const shown = await runCli(['status', runId], cliEnv);
        assert.match(
          shown.stdout,
          new RegExp(
            `▶ slow +probe +running .* paused since \\S+ by ops-tester \\(reason: database maintenance\\): no attempt of it runs until it is unpaused \\(\`${unpause}\`\\)`,
          ),
        );
        // The command it names unpauses it: the next attempt runs.
        const temporal = findTemporalCli();
        assert.ok(temporal, 'the temporal CLI the dev server runs from');
        const un = spawnSync(temporal, [...unpause.split(' ').slice(1), '--address', env.server.address], { encoding: 'utf8' });
        assert.equal(un.status, 0, un.stderr);
        await waitFor('the next attempt running', async () => {
          const s = (await getRunStatus(env.client, runId)).stages[0]!;
          return !s.paused && (s.attempt ?? 1) >= 2 && s.progress;
        });
      } finally {
        await env.client.workflow.getHandle(runId).terminate('test done');
      }
    } finally {
      await stopCliWorker(worker);
    }
  });
});
