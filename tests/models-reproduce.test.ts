/**
 * `tempered models reproduce NAME@V` on a real dev server and a real `tempered worker`: the version's recorded plan
 * runs again only as far as the stage that made the model (no evaluate, register or deploy), with the cache off; the same data and code give the same model bytes
 * (exit 0, `model.reproduced`, and no new version or alias move), a source file edited since gives other bytes and
 * names ingest's data hash as where the rerun diverged (exit 1), and a version whose run's spec the trail does not keep
 * is refused (exit 2) before anything runs. The rerun trains from step 0 though a run of the same work left a checkpoint.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { openAudit, type AuditRecord } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { testVersion } from '../src/registry/versions.testing.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { statePaths } from '../src/state-paths.ts';
import type { ArtifactRef } from '../src/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { runCli, startCliServer, startCliWorker, stopCliWorker } from './helpers/cli.ts';
import { writeTrainPipeline } from './helpers/train-fixture.ts';

let cluster: Awaited<ReturnType<typeof startCliServer>>;
let worker: ChildProcess;
let env: Record<string, string>;
let home: string;
let data: string;
let originalRun: string;

/** Appended to the short training pipeline (helpers/train-fixture.ts: ingest → split → train): the stages that act on the registry. */
const REGISTER_AND_DEPLOY = `  register:
    uses: register
    needs: [train, split]
    with:
      name: repro-clf
      model: \${{ stages.train.outputs.model }}
      data:
        train: \${{ stages.split.outputs.train }}
  deploy:
    uses: deploy
    needs: register
    with:
      name: repro-clf
      version: \${{ stages.register.outputs.version }}
      alias: production
`;

/** The registry's versions and aliases of repro-clf, and the audit records of reproductions. */
async function registryState(): Promise<{ versions: number; aliases: Record<string, number>; history: number }> {
  const reg = await openRegistry(join(home, 'registry.db'));
  try {
    const m = (await reg.listModels()).find((x) => x.name === 'repro-clf')!;
    return { versions: m.versions, aliases: m.aliases, history: (await reg.aliasHistory('repro-clf')).length };
  } finally {
    await reg.close();
  }
}

async function records(action: string): Promise<AuditRecord[]> {
  const audit = await openAudit(join(home, 'audit.db'));
  try {
    return await audit.query({ action });
  } finally {
    await audit.close();
  }
}

before(async () => {
  cluster = await startCliServer('tempered-reproduce-');
  home = cluster.home;
  data = join(home, 'project');
  mkdirSync(data);
  appendFileSync(writeTrainPipeline(data, { maxSteps: 2, checkpointEvery: 1 }), REGISTER_AND_DEPLOY);
  env = {
    TEMPORAL_ADDRESS: cluster.server.address,
    TEMPERED_HOME: home,
    TEMPERED_TASK_QUEUE: 'reproduce-test',
    TEMPERED_ACTOR: 'auditor',
  };
  worker = await startCliWorker([], env, { logFile: join(home, 'worker.log') });
  const first = await runCli(['submit', join(data, 'pipeline.yaml'), '--wait'], env, { timeoutMs: 180_000 });
  assert.equal(first.code, 0, first.stdout + first.stderr);
  originalRun = /submitted run (\S+)/.exec(first.stdout)![1]!;
});

async function runStatus(runId: string): Promise<RunStatus> {
  const r = await runCli(['status', runId, '--json'], env);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout) as RunStatus;
}

after(async () => {
  if (worker) await stopCliWorker(worker);
  await cluster?.close();
});

describe('models reproduce', () => {
  it('reruns the version without register and deploy: same bytes, exit 0, recorded, the registry untouched', async () => {
    const before = await registryState();
    assert.deepEqual(before, { versions: 1, aliases: { production: 1 }, history: 1 });
    // A checkpoint of the same work left under its key, as a run killed after its step-2 checkpoint leaves one: the
    // original run's last checkpoint (its `checkpoint` output) put back in the work's folder, which the original emptied.
    // Before the rerun trained fresh it took this one up (and here failed on it, until checkpoints hashed their
    // settings over canonical JSON: the rerun's plan, read back from the trail, has lora's keys sorted).
    const train = (await runStatus(originalRun)).stages.find((s) => s.id === 'train')!;
    const work = join(home, 'checkpoints', train.cacheKey!);
    rmSync(work, { recursive: true, force: true });
    const left = join(work, 'step-00000002');
    await new ArtifactStore(join(home, 'store')).materializeTree(train.outputs!.checkpoint as ArtifactRef, left);
    const r = await runCli(['models', 'reproduce', 'repro-clf@1'], env, { timeoutMs: 180_000 });
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Progress as submit --wait prints it, then the verdict.
    assert.match(r.stdout, /without register, deploy/);
    assert.match(r.stdout, /submitted run train-only-reproduce-/);
    assert.match(r.stdout, /\nreproduced: same model bytes \(sha256 [0-9a-f]{64}\)\n/);
    assert.match(r.stdout, /\n {4}ingest +same\n {4}split +same\n/);
    assert.deepEqual(await registryState(), before);
    const [rec] = await records('model.reproduced');
    assert.equal(rec!.model, 'repro-clf@1');
    assert.equal(rec!.actor, 'auditor');
    assert.match(rec!.runId!, /^train-only-reproduce-/);
    assert.equal(rec!.details.rerunModelHash, rec!.modelHash);
    assert.deepEqual(rec!.details.leftOut, ['register', 'deploy']);
    // Trained from step 0: the checkpoint of the same work was neither resumed nor deleted.
    assert.match(r.stdout, /\n {2}rerun trained from step 0 /);
    assert.equal(rec!.details.trainedFromStep, 0);
    const rerun = (await runStatus(rec!.runId!)).stages;
    const rerunTrain = rerun.find((s) => s.id === 'train')!;
    assert.equal((rerunTrain.outputs!.baseModel as { resumedFromStep: unknown }).resumedFromStep, null);
    assert.equal(rerunTrain.cacheKey, train.cacheKey, 'the rerun is the same work');
    assert.ok(existsSync(left) && readdirSync(left).length > 0, 'the checkpoint the other run left is still there');
    // The check recorded no outputs under the work's keys: later runs of the work reuse the original run's, never a
    // rerun's (which need not be the same bytes when it does not reproduce).
    const cache = new StageCache(statePaths(home).cache, new ArtifactStore(join(home, 'store')));
    assert.deepEqual(
      rerun.map((s) => s.id),
      ['ingest', 'split', 'train'],
    );
    for (const s of rerun) assert.equal((await cache.get(s.cacheKey!))?.producedBy.runId, originalRun, `${s.id}'s cache record`);
  });

  it('a source file changed since: exit 1, diverged at ingest by its data hash, --json', async () => {
    appendFileSync(join(data, 'data.jsonl'), JSON.stringify({ text: 'one more review, quite a good one', label: 'positive' }) + '\n');
    const r = await runCli(['models', 'reproduce', 'repro-clf@1', '--json'], env, { timeoutMs: 180_000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    const out = JSON.parse(r.stdout) as {
      reproduced: boolean;
      verdict: string;
      divergedAt: { stage: string; what: string };
      stages: { stage: string; same: boolean; differs: { output: string }[] }[];
    };
    assert.equal(out.reproduced, false);
    assert.deepEqual(out.divergedAt, { stage: 'ingest', kind: 'ingest', what: 'data' });
    assert.match(out.verdict, /^NOT reproduced: the data diverged at stage ingest \(ingest\): its data hash was [0-9a-f]{12}…/);
    assert.ok(out.stages[0]!.differs.some((d) => d.output === 'dataHash'));
    assert.equal((await registryState()).versions, 1);
    const [rec] = await records('model.not_reproduced');
    assert.equal(rec!.model, 'repro-clf@1');
    assert.deepEqual(rec!.details.divergedAt, { stage: 'ingest', kind: 'ingest', what: 'data' });
  });

  it('a version whose run the trail keeps no spec of, and an unknown version: exit 2, nothing submitted', async () => {
    const audit = await openAudit(join(home, 'audit.db'));
    // A run recorded before specs were kept: its submission has the hash alone.
    await audit.append({
      action: 'run.submitted',
      subject: 'old-run',
      runId: 'old-run',
      actor: 'bob',
      specHash: 'ab'.repeat(32),
      details: {},
    });
    await audit.close();
    const reg = await openRegistry(join(home, 'registry.db'));
    await reg.registerVersion(testVersion('old-clf', 'a', { runId: 'old-run', specHash: 'ab'.repeat(32) }));
    await reg.registerVersion(testVersion('old-clf', 'b', { runId: 'never-submitted', specHash: 'cd'.repeat(32) }));
    await reg.close();
    const old = await runCli(['models', 'reproduce', 'old-clf@1'], env);
    assert.equal(old.code, 2, old.stdout + old.stderr);
    assert.match(
      old.stderr,
      /old-clf@1: the audit trail keeps only the hash of the spec of run old-run .*registered before the trail kept specs/,
    );
    const none = await runCli(['models', 'reproduce', 'old-clf@2'], env);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no submission of run never-submitted.*not registered by a pipeline run/);
    const unknown = await runCli(['models', 'reproduce', 'repro-clf@9'], env);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /repro-clf.*9/);
    assert.equal((await records('run.submitted')).filter((x) => x.runId?.startsWith('old-clf')).length, 0);
  });
});
