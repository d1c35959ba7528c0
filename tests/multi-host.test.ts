/**
 * tempered on several hosts, simulated on one machine: worker processes that each have their own
 * TEMPERED_HOME and share no folder of tempered's, only a real Temporal dev server, a real SeaweedFS
 * bucket (TEMPERED_STORE) and a real PostgreSQL (TEMPERED_DATABASE_URL). What they read besides is the
 * pipeline's input folder (data file and tiny base model), which on real hosts a source URL would name.
 *
 * - multi-host: the demo-shaped pipeline (ingest → … → deploy, tiny BERT) with `train` on queue `gpu`
 *   (served by its own worker, `device: cpu`); its outputs are read by the CLI from a fourth home.
 * - load: 50 concurrent tiny data pipelines over the three workers all succeed.
 * - chaos (seeded): during a batch of runs, workers are SIGKILLed at seeded moments, SeaweedFS,
 *   PostgreSQL and the dev server each restarted once; the killed training stage resumes on another
 *   worker from its checkpoint in the bucket with the uninterrupted run's weights; every run ends;
 *   every object in the bucket hashes to its key; no duplicate registry versions; the audit chain
 *   verifies. TEMPERED_CHAOS_RUNS / TEMPERED_CHAOS_KILLS make the batch longer (see README, Deployment).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { submitRun, waitForRun } from '../client/runs.ts';
import { registryModelSource } from '../cli/commands/serve.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { createModelServer } from '../src/serve/server.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { statePaths } from '../src/state-paths.ts';
import { Rng } from '../src/engine/prng.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import type { RunStatus } from '../workflows/types.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { assertPredictsSentiment, writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { rawClient } from './helpers/seaweedfs.ts';

const CPU_QUEUE = 'cpu';
const GPU_ARGS = ['--queue', `gpu:1,${CPU_QUEUE}`, '--activities-only'];
const CHECKPOINT_EVERY = 4;
const CHAOS_RUNS = Number(process.env.TEMPERED_CHAOS_RUNS ?? 6);
const CHAOS_KILLS = Number(process.env.TEMPERED_CHAOS_KILLS ?? 2);
const CHAOS_SEED = Number(process.env.TEMPERED_CHAOS_SEED ?? 17);

/** Short heartbeat timeouts, so the stage of a killed worker is retried elsewhere within seconds. */
const STAGE_DEFAULTS = 'defaults:\n  heartbeatTimeout: 8s\n  retry:\n    maximumAttempts: 6\n    initialInterval: 1s\n';

let cluster: Cluster;
let kinds: Awaited<ReturnType<typeof loadStageKinds>>;
let trainPipeline: string;
let tinyPipeline: string;
let reference: RunStatus;

/** The e2e fixture with `train` routed to the `gpu` queue on the CPU, and short heartbeat timeouts for every stage. */
function writeMultiHostPipeline(dir: string): string {
  const file = writeE2EPipeline(dir, { epochs: 6, checkpointEvery: CHECKPOINT_EVERY });
  const text = readFileSync(file, 'utf8')
    .replace('stages:\n', STAGE_DEFAULTS + 'stages:\n')
    .replace('    uses: train\n', '    uses: train\n    queue: gpu\n')
    .replace('      checkpointEvery:', '      device: cpu\n      checkpointEvery:');
  writeFileSync(file, text);
  return file;
}

/** The tiny data pipeline fixture (ingest → split of 10 rows), with short heartbeat timeouts so a killed worker's stage is retried soon. */
function writeTinyPipeline(dir: string): string {
  const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
  copyFileSync(join(fixtures, 'tiny.jsonl'), join(dir, 'tiny.jsonl'));
  const file = join(dir, 'tiny-pipeline.yaml');
  writeFileSync(file, readFileSync(join(fixtures, 'tiny-pipeline.yaml'), 'utf8').replace('stages:\n', STAGE_DEFAULTS + 'stages:\n'));
  return file;
}

async function submit(file: string, params: Record<string, string> = {}, opts: { noCache?: boolean } = {}): Promise<string> {
  const reg = kindRegistry(kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable, paramOverrides: params });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(
    cluster.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: 'multi-host', noCache: opts.noCache } },
    { taskQueue: CPU_QUEUE },
  );
  return h.workflowId;
}

/** Waits for a run, riding out a dev-server restart (the client reconnects). */
async function finish(runId: string): Promise<RunStatus> {
  for (let i = 0; ; i++) {
    try {
      return await waitForRun(cluster.client, runId);
    } catch (e) {
      if (i >= 60) throw e;
      await sleep(500);
    }
  }
}

const stageOut = (st: RunStatus, id: string) => st.stages.find((s) => s.id === id)!.outputs!;
const modelSha = (st: RunStatus) => (stageOut(st, 'train').model as { sha256: string }).sha256;

/** The four homes' view: the CLI in this process with a state folder that nothing ran in. */
function cli(args: string[], home: string) {
  return runCliInProcess(args, cluster.hostEnv(home));
}

/** The highest checkpoint step a train stage has pushed to the bucket (its pointer), or 0. */
async function sharedCheckpointStep(): Promise<{ step: number; complete: boolean }> {
  const { client, sdk } = await rawClient(cluster.s3.env);
  const { bucket, prefix } = parseS3(cluster.storeUrl);
  try {
    const listed = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}checkpoints/` }));
    let step = 0;
    for (const o of listed.Contents ?? []) {
      if (!o.Key!.endsWith('.json')) continue;
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
      const pointer = JSON.parse(await got.Body!.transformToString()) as { step: number };
      step = Math.max(step, pointer.step);
    }
    return { step, complete: false };
  } finally {
    client.destroy();
  }
}

function parseS3(url: string): { bucket: string; prefix: string } {
  const u = new URL(url);
  const p = u.pathname.replace(/^\//, '');
  return { bucket: u.host, prefix: p ? `${p.replace(/\/$/, '')}/` : '' };
}

before(async () => {
  kinds = await loadStageKinds();
  cluster = await startCluster();
  const dir = mkdtempSync(join(tmpdir(), 'multi-host-in-'));
  trainPipeline = writeMultiHostPipeline(dir);
  tinyPipeline = writeTinyPipeline(mkdtempSync(join(tmpdir(), 'multi-host-tiny-')));
  // Three hosts: two CPU workers that run the workflows and stages, and a "GPU" host that trains one
  // stage at a time and helps with the other stages.
  await Promise.all([
    cluster.startWorker('cpu-a', ['--queue', CPU_QUEUE]),
    cluster.startWorker('cpu-b', ['--queue', CPU_QUEUE]),
    cluster.startWorker('gpu', GPU_ARGS),
  ]);
});
after(async () => cluster?.close());

describe('tempered on several hosts', () => {
  it('multi-host: the demo-shaped pipeline completes, trains on the gpu worker, and a fourth home reads its outputs', async () => {
    const runId = await submit(trainPipeline);
    reference = await finish(runId);
    assert.equal(reference.state, 'succeeded', JSON.stringify(reference.stages.map((s) => [s.id, s.error])));
    assert.equal(stageOut(reference, 'deploy').promoted, true, String(stageOut(reference, 'deploy').explanation));

    const fourth = cluster.newHome('laptop');
    // Where each stage ran, from the run's history as `tempered logs` shows it.
    const logs = await cli(['logs', runId, '--json'], fourth);
    assert.equal(logs.code, 0, logs.stderr);
    const started = (JSON.parse(logs.stdout) as { event: string; activity?: string; worker?: string }[]).filter(
      (l) => l.event === 'started',
    );
    const gpu = cluster.workers.get('gpu')!;
    const trainStarts = started.filter((l) => l.activity?.startsWith('stage-train '));
    assert.ok(trainStarts.length >= 1);
    for (const l of trainStarts) {
      assert.match(l.activity!, /on gpu\)$/);
      assert.ok(l.worker!.startsWith(gpu.pidPrefix()), `train ran on ${l.worker}, not the gpu worker (${gpu.pidPrefix()}…)`);
    }
    for (const l of started.filter((x) => !x.activity?.startsWith('stage-train '))) assert.match(l.activity!, /on cpu\)$/);
    // The gpu host has training checkpoints; the cpu hosts have none (nothing shared through folders).
    assert.ok(existsSync(join(gpu.home, 'checkpoints')));
    for (const n of ['cpu-a', 'cpu-b']) assert.equal(existsSync(join(cluster.workers.get(n)!.home, 'checkpoints')), false);

    // The fourth home: status with the ingest report (fetched from the bucket), the registry, the audit chain.
    const status = await cli(['status', runId], fourth);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /ingest .*succeeded/);
    assert.match(status.stdout, /\n {6}\| .*rows/i, `the data reports are read from the shared store:\n${status.stdout}`);
    const show = await cli(['models', 'show', 'e2e-clf@production', '--json'], fourth);
    assert.equal(show.code, 0, show.stderr);
    assert.equal((JSON.parse(show.stdout) as { version: number }).version, 1);
    const verify = await cli(['audit', '--verify'], fourth);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);

    // ...and serves the promoted model, whose files come from the bucket into the fourth home.
    const paths = statePaths(fourth, cluster.hostEnv(fourth));
    const store = new ArtifactStore(paths.store, { remote: cluster.s3.backend(cluster.storeUrl) });
    const server = await createModelServer({
      resolveCurrent: registryModelSource({
        registryDb: cluster.databaseUrl,
        store,
        servingDir: paths.serving,
        name: 'e2e-clf',
        alias: 'production',
      }),
      token: 'test-token-123456',
    });
    try {
      await assertPredictsSentiment(await server.listen(0, '127.0.0.1'));
    } finally {
      await server.close();
    }
  });

  it('load: 50 concurrent tiny pipelines over three workers all succeed', async () => {
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => submit(tinyPipeline, { seed: String(i + 1) })));
    const done = await Promise.all(ids.map((id) => finish(id)));
    const failed = done.filter((st) => st.state !== 'succeeded');
    assert.deepEqual(
      failed.map((st) => [st.runId, st.stages.map((s) => s.error?.message).filter(Boolean)]),
      [],
    );
    // Each split was computed and its outputs stored: the 10 rows split 6/2/2.
    for (const st of done) assert.equal((stageOut(st, 'split').train as { rows: number }).rows, 6);
    // Every worker took a share of the stages (the gpu host serves the cpu queue too).
    const ranOn = new Set<string>();
    for (const id of ids)
      for (const ev of (await cluster.client.workflow.getHandle(id).fetchHistory()).events ?? [])
        if (ev.activityTaskStartedEventAttributes?.identity) ranOn.add(ev.activityTaskStartedEventAttributes.identity.split('@')[0]!);
    const pids = ['cpu-a', 'cpu-b', 'gpu'].map((n) => String(cluster.workers.get(n)!.proc.pid));
    assert.deepEqual(
      pids.filter((p) => !ranOn.has(p)),
      [],
      `stages ran on ${[...ranOn].join(', ')}`,
    );
  });

  it('chaos: kills and restarts during a batch; runs end, the store and registry stay sound, training resumes elsewhere', async () => {
    assert.ok(reference, 'needs the multi-host run as the uninterrupted reference');
    const rng = new Rng(CHAOS_SEED);
    const rand = () => rng.next();
    const events: string[] = [];
    // The training run again (noCache: it must train), slowed per step so kills land mid-training.
    await cluster.killWorker('gpu');
    await cluster.startWorker('gpu', GPU_ARGS, { env: { TEMPERED_TEST_STEP_BLOCK_MS: '150' } });
    const trainRun = await submit(trainPipeline, {}, { noCache: true });
    const batch = await Promise.all(Array.from({ length: CHAOS_RUNS }, (_, i) => submit(tinyPipeline, { seed: String(100 + i) })));

    // Kill the gpu host once its second checkpoint is in the bucket; a new gpu host (empty home) takes over.
    let killedAt = 0;
    for (let i = 0; i < 1200 && killedAt < 2 * CHECKPOINT_EVERY; i++) {
      killedAt = (await sharedCheckpointStep()).step;
      if (killedAt < 2 * CHECKPOINT_EVERY) await sleep(100);
    }
    assert.ok(killedAt >= 2 * CHECKPOINT_EVERY, 'training pushed its checkpoints to the bucket');
    await cluster.killWorker('gpu');
    events.push(`killed gpu after checkpoint ${killedAt}`);
    const takeover = cluster.startWorker('gpu-2', GPU_ARGS);

    // Seeded chaos on the cpu hosts and the servers while the batch runs.
    const actions: (() => Promise<void>)[] = [
      async () => {
        await cluster.s3.server.restart();
        events.push('restarted SeaweedFS');
      },
      async () => {
        await cluster.pg.restart();
        events.push('restarted PostgreSQL');
      },
      async () => {
        // A worker that is starting gives up when it cannot reach Temporal: let restarts finish first.
        await Promise.all([takeover, ...restarts.values()]);
        await cluster.restartTemporal();
        events.push('restarted the dev server');
      },
    ];
    // A killed cpu host comes back while the next fault happens (a worker takes seconds to start).
    const restarts = new Map<string, Promise<unknown>>();
    for (let k = 0; k < CHAOS_KILLS; k++) {
      actions.push(async () => {
        const name = rand() < 0.5 ? 'cpu-a' : 'cpu-b';
        const pause = Math.floor(rand() * 1500);
        // An earlier kill may have hit the same host, whose restart may still be under way.
        await restarts.get(name);
        await cluster.killWorker(name);
        events.push(`killed ${name}`);
        restarts.set(
          name,
          sleep(pause)
            .then(() => cluster.startWorker(name, ['--queue', CPU_QUEUE], { home: cluster.workers.get(name)!.home }))
            .then(() => events.push(`restarted ${name}`)),
        );
      });
    }
    // Shuffled by the seed, each after a seeded pause.
    for (let i = actions.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [actions[i], actions[j]] = [actions[j]!, actions[i]!];
    }
    for (const act of actions) {
      await sleep(Math.floor(rand() * 2000));
      await act();
    }
    await Promise.all([takeover, ...restarts.values()]);

    const batchDone = await Promise.all(batch.map((id) => finish(id)));
    const trained = await finish(trainRun);
    const ctx = `chaos (seed ${CHAOS_SEED}): ${events.join(', ')}`;
    // Every run ends: succeeded, or failed with a clear error naming the stage and what went wrong.
    for (const st of [...batchDone, trained]) {
      if (st.state === 'succeeded') continue;
      const errs = st.stages.filter((s) => s.error);
      assert.ok(errs.length > 0 && errs.every((s) => s.error!.message.length > 0), `${st.runId} ${st.state} without a stage error; ${ctx}`);
    }
    assert.equal(trained.state, 'succeeded', `${ctx}: ${JSON.stringify(trained.stages.map((s) => [s.id, s.error]))}`);
    const resumedFrom = (stageOut(trained, 'train').baseModel as { resumedFromStep: number | null }).resumedFromStep;
    assert.ok(
      resumedFrom !== null && resumedFrom >= killedAt,
      `resumed from step ${resumedFrom}, killed after checkpoint ${killedAt}; ${ctx}`,
    );
    assert.equal(modelSha(trained), modelSha(reference), `same final weights as the uninterrupted run; ${ctx}`);
    assert.equal(
      batchDone.filter((st) => st.state === 'succeeded').length,
      batchDone.length,
      `${ctx}: ${JSON.stringify(batchDone.filter((s) => s.state !== 'succeeded').map((s) => s.stages.map((x) => x.error)))}`,
    );

    // Every object in the bucket hashes to its key.
    const { client, sdk } = await rawClient(cluster.s3.env);
    const { bucket, prefix } = parseS3(cluster.storeUrl);
    let checked = 0;
    try {
      let token: string | undefined;
      do {
        const page = await client.send(
          new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}sha256/`, ContinuationToken: token }),
        );
        for (const o of page.Contents ?? []) {
          const got = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
          const h = createHash('sha256');
          for await (const chunk of got.Body as AsyncIterable<Uint8Array>) h.update(chunk);
          assert.equal(h.digest('hex'), o.Key!.slice(o.Key!.lastIndexOf('/') + 1), `object ${o.Key} is intact`);
          checked++;
        }
        token = page.NextContinuationToken;
      } while (token);
    } finally {
      client.destroy();
    }
    assert.ok(checked > 10, `re-hashed ${checked} objects`);
    // Every training finished, so none left a checkpoint behind, the killed one included.
    const leftovers: string[] = [];
    for await (const key of cluster.s3.backend(cluster.storeUrl).list('checkpoint')) leftovers.push(key);
    assert.deepEqual(leftovers, [], 'no checkpoint pointer or file stays in the bucket');

    // The registry: one version per distinct model, none twice; the audit chain verifies.
    const reg = await openRegistry(cluster.databaseUrl);
    try {
      const versions = await reg.listVersions('e2e-clf');
      const shas = versions.map((v) => v.artifacts.find((a) => a.role === 'model')!.sha256);
      assert.equal(new Set(shas).size, shas.length, `no duplicate versions: ${shas.join(', ')}`);
      assert.equal(versions.length, 1, 'the chaos run trained the same bytes: no new version');
    } finally {
      await reg.close();
    }
    const audit = await openAudit(cluster.databaseUrl);
    try {
      const v = await audit.verify();
      assert.equal(v.ok, true, JSON.stringify(v));
    } finally {
      await audit.close();
    }
    const fourth = cluster.newHome('auditor');
    const verify = await cli(['audit', '--verify'], fourth);
    assert.equal(verify.code, 0, verify.stderr + verify.stdout);
  });
});
