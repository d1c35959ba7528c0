/**
 * `tempered submit --no-cache` trains from step 0 though another run of the same work left a checkpoint in the work's
 * folder (a run whose worker was stopped mid-training), and resumes only its own: a retry or `tempered resume` of it
 * continues from the last checkpoint it wrote, never from the other run's. Before, it took up the other run's
 * checkpoint (a retry said it resumed from a step further than the run ever got). Likewise a train stage with
 * `cache: false` in a run without --no-cache, which trained in the work's folder. A resume of a --no-cache run takes
 * from the stage cache only what that run finished: before, its unfinished training came back as another run's
 * finished one. The run's `run.submitted` record names its checkpoint folder. Real dev server, real CLI workers.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, type ScheduleDescriptionStartWorkflowAction, type ScheduleUpdateOptions } from '@temporalio/client';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { StageCache, type CacheRecord } from '../src/store/stage-cache.ts';
import { statePaths } from '../src/state-paths.ts';
import type { ArtifactRef } from '../src/types.ts';
import type { RunInput, RunStatus } from '../workflows/types.ts';
import { runInput, waitForRun, WORKFLOW_TYPE } from '../client/runs.ts';
import { runCheckpointName } from '../workflows/run-checkpoints.ts';
import { runCli, startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { writeTrainPipeline } from './helpers/train-fixture.ts';

const MAX_STEPS = 60;
let cluster: Awaited<ReturnType<typeof startCliServer>>;
let env: Record<string, string>;
let home: string;
let pipeline: string;
/** The same pipeline, its train stage with `cache: false`. */
let uncachedPipeline: string;
let reference: RunStatus;
/** The stage-cache record of the reference run's training. */
let referenceRecord: CacheRecord;

const train = (st: RunStatus) => st.stages.find((s) => s.id === 'train')!;
const resumedFrom = (st: RunStatus) => (train(st).outputs!.baseModel as { resumedFromStep: number | null }).resumedFromStep;
const modelSha = (st: RunStatus) => (train(st).outputs!.model as ArtifactRef).sha256;

/** The processes under `pid`, read from /proc (Linux, where these tests run). */
function descendants(pid: number): number[] {
  const children = (p: number): number[] => {
    try {
      return readFileSync(`/proc/${p}/task/${p}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
    } catch {
      return [];
    }
  };
  const out: number[] = [];
  for (let todo = children(pid); todo.length > 0; ) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...children(p));
  }
  return out;
}

/** Running, not a zombie (one whose parent died is reaped only by whatever adopts it, which may be slow or never). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

async function runStatus(runId: string): Promise<RunStatus> {
  const r = await runCli(['status', runId, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout) as RunStatus;
}

async function submit(args: string[], file = pipeline): Promise<string> {
  const r = await runCli(['submit', file, ...args, ...(args.includes('--wait') ? ['--no-local-worker'] : [])], env, {
    timeoutMs: 300_000,
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return /submitted run (\S+)/.exec(r.stdout)![1]!;
}

/**
 * The work's folder holds the other run's last checkpoint (step MAX_STEPS), as a run stopped just before its end leaves
 * it; and, that run not having finished, no stage-cache record of the work (a resume, which reads the cache, would
 * reuse it instead of training).
 */
async function leaveOtherRunsCheckpoint(): Promise<string> {
  const store = new ArtifactStore(join(home, 'store'));
  await new StageCache(statePaths(home).cache, store).evict(train(reference).cacheKey!);
  const work = join(home, 'checkpoints', train(reference).cacheKey!);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const left = join(work, `step-${String(MAX_STEPS).padStart(8, '0')}`);
  await store.materializeTree(train(reference).outputs!.checkpoint as ArtifactRef, left);
  return left;
}

/** The details of run `runId`'s `run.submitted` audit record. */
async function submittedRecord(runId: string): Promise<Record<string, unknown>> {
  const r = await runCli(['audit', '--action', 'run.submitted', '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const rec = (JSON.parse(r.stdout) as { subject: string; details: Record<string, unknown> }[]).find((x) => x.subject === runId);
  assert.ok(rec, `no run.submitted record of ${runId}`);
  return rec.details;
}

/** The highest step-N in the checkpoint folders whose name starts with `prefix`; 0 when none. */
function latestStep(prefix: string): number {
  const root = join(home, 'checkpoints');
  let best = 0;
  for (const d of existsSync(root) ? readdirSync(root, { withFileTypes: true }) : [])
    if (d.isDirectory() && d.name.startsWith(prefix))
      for (const n of readdirSync(join(root, d.name))) {
        const m = /^step-(\d+)$/.exec(n);
        if (m) best = Math.max(best, Number(m[1]));
      }
  return best;
}

before(async () => {
  cluster = await startCliServer('tempered-no-cache-');
  home = cluster.home;
  const data = join(home, 'project');
  mkdirSync(data);
  pipeline = writeTrainPipeline(data, { maxSteps: MAX_STEPS, checkpointEvery: 2 });
  uncachedPipeline = join(data, 'uncached.yaml');
  const text = readFileSync(pipeline, 'utf8');
  assert.ok(text.includes('  train:\n    uses: train\n'));
  writeFileSync(uncachedPipeline, text.replace('  train:\n    uses: train\n', '  train:\n    uses: train\n    cache: false\n'));
  env = { TEMPORAL_ADDRESS: cluster.server.address, TEMPERED_HOME: home, TEMPERED_TASK_QUEUE: 'no-cache-test', TEMPERED_ACTOR: 'tester' };
  const w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
  try {
    reference = await runStatus(await submit(['--wait']));
  } finally {
    await stopCliWorker(w);
  }
  assert.equal(reference.state, 'succeeded');
  assert.equal(resumedFrom(reference), null);
  referenceRecord = (await new StageCache(statePaths(home).cache, new ArtifactStore(join(home, 'store'))).get(train(reference).cacheKey!))!;
  assert.ok(referenceRecord);
});

after(async () => cluster?.close());

describe('--no-cache training', () => {
  it('trains from step 0, not from the checkpoint another run of the work left, and leaves that one', async () => {
    const left = await leaveOtherRunsCheckpoint();
    const w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
    try {
      const runId = await submit(['--no-cache', '--wait']);
      const st = await runStatus(runId);
      // The audit trail names the run's own checkpoint folder.
      const own = (await submittedRecord(runId)).ownCheckpoints;
      assert.equal(typeof own, 'string', 'run.submitted names no checkpoint folder');
      assert.ok(existsSync(join(home, 'checkpoints', `${train(reference).cacheKey!}.fresh-${own as string}-train`)));
      assert.equal(st.state, 'succeeded');
      assert.equal(train(st).cacheKey, train(reference).cacheKey, 'the same work');
      assert.equal(resumedFrom(st), null, 'trained from step 0');
      assert.equal(train(st).outputs!.steps, MAX_STEPS);
      assert.equal(modelSha(st), modelSha(reference), 'the same bytes as the run trained from step 0');
      assert.ok(existsSync(left) && readdirSync(left).length > 0, "the other run's checkpoint is still there");
    } finally {
      await stopCliWorker(w);
    }
  });

  it('a train stage with `cache: false`, in a run without --no-cache, trains from step 0, not from the checkpoint another run of the work left', async () => {
    const left = await leaveOtherRunsCheckpoint();
    const w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
    try {
      const runId = await submit(['--wait'], uncachedPipeline);
      const st = await runStatus(runId);
      assert.equal(st.state, 'succeeded');
      assert.equal(train(st).cacheKey, train(reference).cacheKey, 'the same work');
      assert.equal(resumedFrom(st), null, 'trained from step 0');
      assert.equal(modelSha(st), modelSha(reference), 'the same bytes as the run trained from step 0');
      assert.ok(existsSync(left) && readdirSync(left).length > 0, "the other run's checkpoint is still there");
      // In a folder of its own, which its run.submitted record names (and a resume, copying the options, keeps).
      const own = (await submittedRecord(runId)).uncachedCheckpoints;
      assert.equal(typeof own, 'string', 'run.submitted names no checkpoint folder');
      assert.ok(existsSync(join(home, 'checkpoints', `${train(reference).cacheKey!}.fresh-${own as string}-train`)));
      // Its resume trains in that same folder, where the run's own checkpoints are.
      const r = await runCli(['resume', runId, '--json', '--wait', '--no-local-worker'], env, { timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const resumed = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as RunStatus;
      assert.equal(train(resumed).state, 'succeeded');
      assert.equal((await submittedRecord(resumed.runId)).uncachedCheckpoints, own, "the resume's checkpoint folder is the run's");
    } finally {
      await stopCliWorker(w);
    }
  });

  it("tempered resume of a --no-cache run that died continues from that run's own last checkpoint, though the cache holds another run's finished training", async () => {
    const left = await leaveOtherRunsCheckpoint();
    const key = train(reference).cacheKey!;
    let w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
    let runId: string;
    try {
      runId = await submit(['--no-cache']);
      // Its own folder, named after it: killed once it holds a checkpoint, mid-training. Before, it trained in the
      // work's folder, resumed the other run's last step and finished at once, writing none of its own.
      const own = `${key}.fresh-${runId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 40)}-`;
      for (let i = 0; latestStep(own) < 4; i++) {
        assert.ok(
          i < 12_000,
          `run ${runId} wrote no checkpoint of its own (folders: ${readdirSync(join(home, 'checkpoints')).join(', ')})`,
        );
        assert.ok(!existsSync(join(home, 'checkpoints', key, 'COMPLETE')), "it finished in the work's folder, from the other run's step");
        assert.ok(
          !readdirSync(join(home, 'checkpoints')).some((n) => n.startsWith(own) && existsSync(join(home, 'checkpoints', n, 'COMPLETE'))),
          'it finished before its kill',
        );
        await sleep(10);
      }
      // Its training child (stage isolation) notices its parent is gone only after the step it is in, which may write
      // one more checkpoint: the step killed at is read once every process under the worker has exited.
      const under = descendants(w.pid!);
      w.kill('SIGKILL');
      await new Promise((r) => w.once('exit', r));
      for (let i = 0; under.some(alive); i++) {
        assert.ok(i < 6_000, `the worker's processes ${under.filter(alive).join(', ')} outlived it by a minute`);
        await sleep(10);
      }
      const connection = await Connection.connect({ address: cluster.server.address });
      try {
        await new Client({ connection }).workflow.getHandle(runId).terminate('simulated crash of the whole deployment');
      } finally {
        await connection.close();
      }
      const killedAt = latestStep(own);
      assert.ok(killedAt >= 4 && killedAt < MAX_STEPS, `killed mid-training (its last checkpoint is of step ${killedAt})`);
      // Meanwhile another run of the work finished its training: the stage cache has it, which a resume read before.
      await new StageCache(statePaths(home).cache, new ArtifactStore(join(home, 'store'))).put(referenceRecord);
      w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
      const r = await runCli(['resume', runId, '--json', '--wait', '--no-local-worker'], env, { timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const st = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as RunStatus;
      assert.equal(st.resumeOf, runId);
      assert.equal(train(st).state, 'succeeded', "trained, not the other run's training from the cache");
      for (const id of ['ingest', 'split'])
        assert.equal(st.stages.find((s) => s.id === id)!.state, 'cached', `${id}, which the run finished, comes from the cache`);
      assert.equal(resumedFrom(st), killedAt, "resumed from the dead run's own last checkpoint, not the other run's");
      assert.equal(modelSha(st), modelSha(reference), 'the same bytes as a training never interrupted');
      assert.ok(existsSync(left) && readdirSync(left).length > 0, "the other run's checkpoint is still there");
    } finally {
      await stopCliWorker(w);
    }
  });
  it('a run that a schedule starts trains its `cache: false` stage in a folder of its own (named from its run id), which its resume keeps, also where the schedule was made before its input said so', async () => {
    const left = await leaveOtherRunsCheckpoint();
    const key = train(reference).cacheKey!;
    const w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
    const connection = await Connection.connect({ address: cluster.server.address });
    try {
      const made = await runCli(['schedule', 'create', 'nc-nightly', '--pipeline', uncachedPipeline, '--cron', '0 3 1 1 *'], env);
      assert.equal(made.code, 0, made.stdout + made.stderr);
      // Made so by a CLI of before 8 Dec 2026, which set no uncachedCheckpointsFromRunId in the input every run gets
      // (a schedule keeps it until `schedule update`): its runs trained in the work's folder and took up the other
      // run's step. With the flag the workflow derives the same name (workflows/run-checkpoints.test.ts).
      await new Client({ connection }).schedule.getHandle('nc-nightly').update((prev) => {
        const action = prev.action as ScheduleDescriptionStartWorkflowAction;
        const [input] = action.args as [RunInput];
        const { uncachedCheckpointsFromRunId: flag, ...options } = input.options;
        assert.equal(flag, true, 'schedule create set no uncachedCheckpointsFromRunId');
        return { ...prev, action: { ...action, args: [{ ...input, options }] } } as unknown as ScheduleUpdateOptions;
      });
      const fired = await runCli(['schedule', 'trigger', 'nc-nightly'], env);
      assert.equal(fired.code, 0, fired.stdout + fired.stderr);
      const runId = /run (nc-nightly-[^\s)]+)/.exec(fired.stdout)?.[1];
      assert.ok(runId, fired.stdout);
      const st = await waitForRun(new Client({ connection }), runId);
      assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => [s.id, s.state, s.error?.message])));
      assert.equal(resumedFrom(st), null, 'trained from step 0');
      assert.equal(modelSha(st), modelSha(reference), 'the same bytes as the run trained from step 0');
      assert.ok(existsSync(left) && readdirSync(left).length > 0, "the other run's checkpoint is still there");
      const own = runCheckpointName(runId);
      assert.ok(existsSync(join(home, 'checkpoints', `${key}.fresh-${own}-train`)), `no folder ${key}.fresh-${own}-train`);
      // Its resume (another run id, named after the schedule) is given the run's name: it continues in that folder.
      const r = await runCli(['resume', runId, '--json', '--wait', '--no-local-worker'], env, { timeoutMs: 300_000 });
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const resumed = JSON.parse(r.stdout.slice(r.stdout.indexOf('{'))) as RunStatus;
      assert.equal(train(resumed).state, 'succeeded');
      const details = await submittedRecord(resumed.runId);
      assert.equal(details.uncachedCheckpoints, own, "the resume's checkpoint folder is the run's");
    } finally {
      await runCli(['schedule', 'delete', 'nc-nightly'], env);
      await connection.close();
      await stopCliWorker(w);
    }
  });

  it("a run whose input names its checkpoint folder or its cached stages otherwise than tempered's client would is refused, naming the field", async () => {
    const connection = await Connection.connect({ address: cluster.server.address });
    const client = new Client({ connection });
    // The cache holds the finished training, which a cachedStages of `"train"` (a string: matched by substring) took.
    await new StageCache(statePaths(home).cache, new ArtifactStore(join(home, 'store'))).put(referenceRecord);
    const w = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
    try {
      const input = await runInput(client, reference.runId);
      const start = async (workflowId: string, next: RunInput) => {
        await client.workflow.start(WORKFLOW_TYPE, { workflowId, taskQueue: 'no-cache-test', args: [next] });
        return waitForRun(client, workflowId);
      };
      const uncached = { ...input.plan, stages: input.plan.stages.map((s) => (s.id === 'train' ? { ...s, cache: false } : s)) };
      const a = await start('bad-uncached-checkpoints', {
        plan: uncached,
        options: { ...input.options, uncachedCheckpoints: 'x/../../../escape' },
      });
      assert.equal(a.state, 'failed');
      const why = train(a).error?.message ?? '';
      assert.match(why, /RunOptions\.uncachedCheckpoints: "x\/\.\.\/\.\.\/\.\.\/escape" is not 1 to 64/, why);
      assert.doesNotMatch(why, /ownCheckpoints/, 'named a field the input does not have');
      assert.match(train(a).error?.hint ?? '', /tempered submit/);
      assert.ok(!existsSync(join(home, '..', 'escape-train')));

      const b = await start('bad-cached-stages', {
        plan: input.plan,
        options: { ...input.options, noCache: true, cachedStages: 'train' as unknown as string[] },
      });
      assert.equal(b.state, 'failed', 'ran, its training taken from the stage cache');
      const ingest = b.stages.find((s) => s.id === 'ingest')!;
      assert.match(ingest.error?.message ?? '', /RunOptions\.cachedStages: "train" is not a list of stage ids/);
      assert.notEqual(train(b).state, 'cached');
    } finally {
      await connection.close();
      await stopCliWorker(w);
    }
  });
});
