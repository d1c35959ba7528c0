/**
 * tempered on several hosts, simulated on one machine: worker processes that each have their own
 * TEMPERED_HOME and share no folder of tempered's, only a real Temporal dev server, a real SeaweedFS
 * bucket (TEMPERED_STORE) and a real PostgreSQL (TEMPERED_DATABASE_URL). What they read besides is the
 * pipeline's input folder (data file and tiny base model), which on real hosts a source URL would name.
 *
 * - multi-host: the demo-shaped pipeline (ingest → … → deploy, tiny BERT) with `train` on queue `gpu`
 *   (served by its own worker, `device: cpu`); its outputs are read by the CLI from a fourth home.
 * - load: 50 concurrent tiny data pipelines over the three workers all succeed.
 * - chaos (seeded): while tiny runs keep arriving (one every 500-800 ms, each holding a stage for
 *   1.5 s), workers are SIGKILLed at seeded moments, SeaweedFS, PostgreSQL and the dev server each
 *   restarted once, every fault while runs are in flight; the gpu worker is killed once the bucket's
 *   checkpoint pointer names its newest local checkpoint, and the training resumes on the takeover
 *   worker from that checkpoint with the uninterrupted run's weights; every run ends; every object in
 *   the bucket hashes to its key and every artifact the runs and the registry name is fetched whole
 *   from the bucket into an empty home; no duplicate registry versions; the audit chain verifies.
 *   TEMPERED_CHAOS_RUNS (the least number of batch runs) / TEMPERED_CHAOS_KILLS make it longer.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import pg from 'pg';
import { submitRun, waitForRun } from '../client/runs.ts';
import { registryModelSource } from '../cli/commands/serve.ts';
import { openAudit } from '../src/audit/log.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { startPostgres } from '../src/db/postgres.testing.ts';
import { createModelServer } from '../src/serve/server.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { statePaths } from '../src/state-paths.ts';
import { Rng } from '../src/engine/prng.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { readText } from '../src/store/object-backend.ts';
import { isArtifactRef, MEDIA, type ArtifactRef } from '../src/types.ts';
import type { RunStatus } from '../workflows/types.ts';
import { runCli, runCliInProcess } from './helpers/cli.ts';
import { startCluster, type Cluster } from './helpers/cluster.ts';
import { assertPredictsSentiment, writeE2EPipeline } from './helpers/e2e-fixture.ts';
import { rawClient } from './helpers/seaweedfs.ts';
import { probeKind } from './helpers/test-stages.ts';

const CPU_QUEUE = 'cpu';
const GPU_ARGS = ['--queue', `gpu:1,${CPU_QUEUE}`, '--activities-only'];
const CHECKPOINT_EVERY = 4;
const CHAOS_RUNS = Number(process.env.TEMPERED_CHAOS_RUNS ?? 6);
const CHAOS_KILLS = Number(process.env.TEMPERED_CHAOS_KILLS ?? 2);
const CHAOS_SEED = Number(process.env.TEMPERED_CHAOS_SEED ?? 17);
/** How long each chaos run's `hold` stage runs: longer than the pause between submissions. */
const HOLD_MS = 1500;

/** Short heartbeat timeouts, so the stage of a killed worker is retried elsewhere within seconds. */
const STAGE_DEFAULTS = 'defaults:\n  heartbeatTimeout: 8s\n  retry:\n    maximumAttempts: 6\n    initialInterval: 1s\n';

let cluster: Cluster;
let kinds: Awaited<ReturnType<typeof loadStageKinds>>;
let trainPipeline: string;
let tinyPipeline: string;
let chaosPipeline: string;
/** The pipelines' input folders (and the probe stage's log), removed after the tests. */
const inputDirs: string[] = [];
/** Where each execution of a `probe` stage is logged (tests/helpers/test-stages.ts). */
let probeLog: string;
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

/**
 * The chaos batch's run: the tiny pipeline, then a `probe` stage (tests/helpers/test-stages.ts) that
 * holds for HOLD_MS, heartbeating, and stores an artifact: each run stays in flight for seconds,
 * with a stage running, whatever the machine's speed, so the faults strike running stages.
 */
function writeChaosPipeline(tinyFile: string): string {
  const file = join(dirname(tinyFile), 'chaos-pipeline.yaml');
  const hold = `  hold:
    uses: probe
    needs: split
    with:
      value: seed \${{ params.seed }}
      inputs: ['\${{ stages.split.outputs.train }}']
      sleepMs: ${HOLD_MS}
`;
  writeFileSync(file, readFileSync(tinyFile, 'utf8').replace('name: tiny\n', 'name: tiny-chaos\n').trimEnd() + '\n' + hold);
  return file;
}

async function submit(
  file: string,
  params: Record<string, string> = {},
  opts: { noCache?: boolean; runId?: string } = {},
): Promise<string> {
  const reg = kindRegistry(kinds);
  const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable, paramOverrides: params });
  if (!res.ok) throw new Error(JSON.stringify(res.errors));
  const h = await submitRun(
    cluster.client,
    { plan: res.plan, options: { baseDir: dirname(file), actor: 'multi-host', noCache: opts.noCache } },
    { taskQueue: CPU_QUEUE, runId: opts.runId },
  );
  return h.workflowId;
}

/**
 * Submits under a run id of its own, again and again while the dev server is away (restarting). A
 * start that reached the server although its answer was lost is found by its id, so it is not
 * submitted twice.
 */
async function submitRiding(file: string, params: Record<string, string>, runId: string, stop: () => boolean): Promise<string> {
  for (let i = 0; ; i++) {
    try {
      return await submit(file, params, { runId });
    } catch (e) {
      if (e instanceof WorkflowExecutionAlreadyStartedError) return runId;
      if (i >= 240 || stop()) throw e;
      await sleep(500);
    }
  }
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

/** The step of each shared checkpoint pointer in the bucket (`checkpoints/<name>.json`), by name. */
async function sharedCheckpointSteps(): Promise<Map<string, number>> {
  const { client, sdk } = await rawClient(cluster.s3.env);
  const { bucket, prefix } = parseS3(cluster.storeUrl);
  const steps = new Map<string, number>();
  try {
    const listed = await client.send(new sdk.ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}checkpoints/` }));
    for (const o of listed.Contents ?? []) {
      if (!o.Key!.endsWith('.json')) continue;
      const got = await client.send(new sdk.GetObjectCommand({ Bucket: bucket, Key: o.Key! }));
      const pointer = JSON.parse(await got.Body!.transformToString()) as { step: number };
      steps.set(o.Key!.slice(`${prefix}checkpoints/`.length, -'.json'.length), pointer.step);
    }
    return steps;
  } finally {
    client.destroy();
  }
}

/**
 * The highest complete checkpoint (a step-N folder with its manifest) of each checkpoint folder in a
 * worker's own home, TEMPERED_HOME/checkpoints/<name>/step-N, by name (0 when it has none).
 */
function localCheckpointSteps(home: string): Map<string, number> {
  const root = join(home, 'checkpoints');
  const steps = new Map<string, number>();
  if (!existsSync(root)) return steps;
  for (const name of readdirSync(root)) {
    let step = 0;
    try {
      for (const d of readdirSync(join(root, name))) {
        const m = /^step-(\d+)$/.exec(d);
        if (m && existsSync(join(root, name, d, 'manifest.json'))) step = Math.max(step, Number(m[1]));
      }
    } catch {
      continue; // a lock file, or a folder removed meanwhile
    }
    steps.set(name, step);
  }
  return steps;
}

/** Every artifact reference in a stage's outputs, however deep. */
function artifactRefs(v: unknown, out: ArtifactRef[] = []): ArtifactRef[] {
  if (isArtifactRef(v)) out.push(v);
  else if (Array.isArray(v)) for (const x of v) artifactRefs(x, out);
  else if (typeof v === 'object' && v !== null) for (const x of Object.values(v)) artifactRefs(x, out);
  return out;
}

function parseS3(url: string): { bucket: string; prefix: string } {
  const u = new URL(url);
  const p = u.pathname.replace(/^\//, '');
  return { bucket: u.host, prefix: p ? `${p.replace(/\/$/, '')}/` : '' };
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'multi-host-in-'));
  inputDirs.push(dir);
  // The `probe` test stage kind, here (to plan runs) and on every worker (to run them).
  const probe = {
    TEMPERED_PLUGINS: fileURLToPath(new URL('./helpers/probe-plugin.ts', import.meta.url)),
    TEMPERED_PROBE_LOG: join(dir, 'probe.log'),
  };
  kinds = await loadStageKinds();
  probeLog = probe.TEMPERED_PROBE_LOG;
  kinds.set('probe', probeKind(probeLog));
  cluster = await startCluster({ workerEnv: probe });
  trainPipeline = writeMultiHostPipeline(dir);
  inputDirs.push(mkdtempSync(join(tmpdir(), 'multi-host-tiny-')));
  tinyPipeline = writeTinyPipeline(inputDirs[1]!);
  chaosPipeline = writeChaosPipeline(tinyPipeline);
  // Three hosts: two CPU workers that run the workflows and stages, and a "GPU" host that trains one
  // stage at a time and helps with the other stages.
  await Promise.all([
    cluster.startWorker('cpu-a', ['--queue', CPU_QUEUE]),
    cluster.startWorker('cpu-b', ['--queue', CPU_QUEUE]),
    cluster.startWorker('gpu', GPU_ARGS),
  ]);
});
after(async () => {
  await cluster?.close();
  if (process.env.TEMPERED_KEEP_CLUSTER !== '1') for (const d of inputDirs) rmSync(d, { recursive: true, force: true });
});

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
    // A store that refuses the reports (a wrong secret): the status without them, and a note saying why.
    // A process of its own: the note goes to stderr, which the in-process runner does not keep.
    const refused = await runCli(['status', runId], cluster.hostEnv(cluster.newHome('wrong-secret'), { AWS_SECRET_ACCESS_KEY: 'wrong' }));
    assert.equal(refused.code, 0, refused.stderr);
    assert.match(refused.stdout, /ingest .*succeeded/);
    assert.match(
      refused.stderr,
      /note: \d+ stage report\(s\) could not be read from the store s3:\/\/\S+, so the status is shown without them: .*was refused/,
    );
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

  it('chaos: kills and restarts during a batch; runs end, the store and registry stay sound, training resumes elsewhere', async (t) => {
    assert.ok(reference, 'needs the multi-host run as the uninterrupted reference');
    const rng = new Rng(CHAOS_SEED);
    const rand = () => rng.next();
    const events: string[] = [];
    /** Each fault with the moment it struck (the kill sent, the server about to stop): a run must be in flight then. */
    const faults: { what: string; at: number }[] = [];
    const fault = (what: string) => faults.push({ what, at: Date.now() });
    // The training run again (noCache: it must train), slowed per step so kills land mid-training.
    await cluster.killWorker('gpu');
    const gpu = await cluster.startWorker('gpu', GPU_ARGS, { env: { TEMPERED_TEST_STEP_BLOCK_MS: '150' } });
    const trainRun = await submit(trainPipeline, {}, { noCache: true });

    // The batch: a tiny run every 500-800 ms (seeded) from before the first fault until the last
    // fault and restart are over, at least CHAOS_RUNS of them, so every fault strikes runs in flight.
    // Each has a seed of its own (distinct work) and its own run id, so a submission that the dev
    // server's restart interrupted is retried without starting the run twice.
    const batch: string[] = [];
    let chaosOver = false;
    let stopped = false;
    const pace = new Rng(CHAOS_SEED + 1);
    // Those waiting for the next run to be submitted (see runJustStarted).
    const submitted: (() => void)[] = [];
    const submitting = (async () => {
      for (let i = 0; !stopped && (!chaosOver || batch.length < CHAOS_RUNS); i++) {
        const runId = `tiny-chaos-${CHAOS_SEED}-${i}-${randomBytes(3).toString('hex')}`;
        batch.push(await submitRiding(chaosPipeline, { seed: String(100 + i) }, runId, () => stopped));
        for (const wake of submitted.splice(0)) wake();
        await sleep(500 + Math.floor(pace.next() * 300));
      }
    })();
    // A fault right after the dev server's restart could fall where no run is in flight: submissions
    // stall while the server is down and the runs before it end. A run submitted a moment ago runs
    // for seconds (its probe stage alone holds 1.5 s), so a fault struck just after one is in flight.
    const runJustStarted = () =>
      Promise.race([
        new Promise<void>((resolve) => submitted.push(resolve)),
        submitting.then(() => {
          throw new Error('the batch stopped submitting runs before the chaos was over');
        }),
      ]);
    // A failed submitter must not leave an unhandled rejection while the faults go on; it is awaited below.
    submitting.catch(() => undefined);

    // Kill the gpu host once the bucket's pointer names the newest checkpoint in the gpu host's own
    // home, its second or a later one: read the pointer first, then the folder, so a pointer that lags
    // behind what the trainer wrote never passes. A new gpu host (empty home) takes over.
    let seen = 'nothing yet';
    let ckptName: string | undefined;
    let pointerStep = 0;
    let localStep = 0;
    let pointerAfterKill = 0;
    let attemptAtKill = 1;
    let takeover: Promise<unknown> = Promise.resolve();
    // A killed cpu host comes back while the next fault happens (a worker takes seconds to start).
    const restarts = new Map<string, Promise<unknown>>();
    const deadline = Date.now() + 10 * 60_000;
    try {
      while (ckptName === undefined) {
        const pointers = await sharedCheckpointSteps();
        const local = localCheckpointSteps(gpu.home);
        // The last sight of training under way, for the message below (once training ends, both are gone).
        if ([...local.values()].some((l) => l > 0) || pointers.size > 0)
          seen = `bucket pointers ${JSON.stringify([...pointers])}, local checkpoints ${JSON.stringify([...local])}`;
        for (const [name, l] of local)
          if (l >= 2 * CHECKPOINT_EVERY && pointers.get(name) === l) [ckptName, pointerStep, localStep] = [name, l, l];
        if (ckptName !== undefined) break;
        // Training that ended (its folder holds only COMPLETE) or ran long without a match: the pointer never caught up.
        const ended = [...local.keys()].some((n) => existsSync(join(gpu.home, 'checkpoints', n, 'COMPLETE')));
        assert.ok(
          !ended && Date.now() < deadline,
          `the bucket's checkpoint pointer never named the gpu worker's newest local checkpoint (step >= ${2 * CHECKPOINT_EVERY}) ` +
            `${ended ? 'before training ended' : 'within 10 minutes'}: a pointer lagging behind the trainer's checkpoints; last seen ${seen}`,
        );
        await sleep(50);
      }
      // The attempt the kill ends (history keeps only an activity's last attempt, so it is read now).
      const pendingTrain = ((await cluster.client.workflow.getHandle(trainRun).describe()).raw.pendingActivities ?? []).find((a) =>
        a.activityId?.startsWith('stage-train'),
      );
      attemptAtKill = pendingTrain?.attempt ?? 1;
      fault('killed gpu');
      await cluster.killWorker('gpu');
      pointerAfterKill = (await sharedCheckpointSteps()).get(ckptName) ?? 0;
      events.push(`killed gpu at checkpoint ${localStep} (pointer ${pointerStep}, after the kill ${pointerAfterKill})`);
      takeover = cluster.startWorker('gpu-2', GPU_ARGS);

      // Seeded chaos on the cpu hosts and the servers while the batch runs.
      const actions: (() => Promise<void>)[] = [
        async () => {
          await runJustStarted();
          fault('restarted SeaweedFS');
          await cluster.s3.server.restart();
          events.push('restarted SeaweedFS');
        },
        async () => {
          await runJustStarted();
          fault('restarted PostgreSQL');
          await cluster.pg.restart();
          events.push('restarted PostgreSQL');
        },
        async () => {
          // A worker that is starting gives up when it cannot reach Temporal: let restarts finish first.
          await Promise.all([takeover, ...restarts.values()]);
          await runJustStarted();
          fault('restarted the dev server');
          await cluster.restartTemporal();
          events.push('restarted the dev server');
        },
      ];
      for (let k = 0; k < CHAOS_KILLS; k++) {
        actions.push(async () => {
          const name = rand() < 0.5 ? 'cpu-a' : 'cpu-b';
          const pause = Math.floor(rand() * 1500);
          // An earlier kill may have hit the same host, whose restart may still be under way.
          await restarts.get(name);
          await runJustStarted();
          fault(`killed ${name}`);
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
    } catch (e) {
      // No submission or worker start may outlive the test: the cluster goes next.
      stopped = true;
      await Promise.allSettled([submitting, takeover, ...restarts.values()]);
      throw e;
    }
    chaosOver = true;
    await submitting;

    const batchDone = await Promise.all(batch.map((id) => finish(id)));
    const trained = await finish(trainRun);
    const ctx = `chaos (seed ${CHAOS_SEED}, ${batch.length} tiny runs): ${events.join(', ')}`;
    // Every run ends: succeeded, or failed with a clear error naming the stage and what went wrong.
    for (const st of [...batchDone, trained]) {
      if (st.state === 'succeeded') continue;
      const errs = st.stages.filter((s) => s.error);
      assert.ok(errs.length > 0 && errs.every((s) => s.error!.message.length > 0), `${st.runId} ${st.state} without a stage error; ${ctx}`);
    }
    // Every fault struck while tiny runs were going on (started before it, ended after it).
    const inFlight = (at: number) =>
      batchDone.filter((st) => Date.parse(st.startedAt) < at && st.endedAt !== undefined && at < Date.parse(st.endedAt)).length;
    const holds = existsSync(probeLog)
      ? readFileSync(probeLog, 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as { attempt: number; outcome: string })
      : [];
    t.diagnostic(
      `${ctx}; runs in flight at each fault: ${faults.map((f) => `${f.what} ${inFlight(f.at)}`).join(', ')}; ` +
        `hold stages that ended: ${holds.length}, on a retry: ${holds.filter((h) => h.attempt > 1).length}, failed: ${holds.filter((h) => h.outcome !== 'ok').length}`,
    );
    assert.deepEqual(
      faults.filter((f) => inFlight(f.at) === 0).map((f) => f.what),
      [],
      `every fault strikes while a tiny run is in flight; runs ${JSON.stringify(batchDone.map((st) => [st.startedAt, st.endedAt]))}, faults ${JSON.stringify(faults.map((f) => [f.what, new Date(f.at).toISOString()]))}`,
    );
    assert.equal(
      faults.filter((f) => f.what.startsWith('killed cpu-')).length + faults.filter((f) => f.what.startsWith('restarted ')).length,
      CHAOS_KILLS + 3,
      `each cpu kill and server restart happened; ${ctx}`,
    );

    assert.equal(trained.state, 'succeeded', `${ctx}: ${JSON.stringify(trained.stages.map((s) => [s.id, s.error]))}`);
    const resumedFrom = (stageOut(trained, 'train').baseModel as { resumedFromStep: number | null }).resumedFromStep;
    assert.ok(
      pointerAfterKill >= localStep,
      `the bucket's checkpoint after the kill (${pointerAfterKill}) is the killed worker's newest (${localStep}) or later; ${ctx}`,
    );
    assert.equal(modelSha(trained), modelSha(reference), `same final weights as the uninterrupted run; ${ctx}`);
    // The attempt that trained to the end ran on the takeover host, after one on the killed host.
    const gpu2 = cluster.workers.get('gpu-2')!;
    const trainScheduled = new Set<string>();
    const trainStarts = new Map<string, { identity: string; attempt: number }>();
    let completedBy: { identity: string; attempt: number } | undefined;
    for (const ev of (await cluster.client.workflow.getHandle(trainRun).fetchHistory()).events ?? []) {
      const sched = ev.activityTaskScheduledEventAttributes;
      if (sched?.activityId?.startsWith('stage-train')) trainScheduled.add(String(ev.eventId));
      const started = ev.activityTaskStartedEventAttributes;
      if (started && trainScheduled.has(String(started.scheduledEventId)))
        trainStarts.set(String(ev.eventId), { identity: started.identity ?? '', attempt: started.attempt ?? 1 });
      const done = ev.activityTaskCompletedEventAttributes;
      if (done && trainScheduled.has(String(done.scheduledEventId))) completedBy = trainStarts.get(String(done.startedEventId));
    }
    assert.ok(completedBy, `the train activity completed in the run's history; ${ctx}`);
    assert.ok(
      completedBy.identity.startsWith(gpu2.pidPrefix()),
      `the train stage finished on ${completedBy.identity}, not the takeover gpu-2 (${gpu2.pidPrefix()}…); ${ctx}`,
    );
    const onKilled = [...trainStarts.values()].some((s) => s.identity.startsWith(gpu.pidPrefix()));
    // The first attempt after the kill resumed from the checkpoint the bucket named then, which is at
    // least the killed worker's newest local one: at most one checkpoint interval was trained again.
    // Only that attempt's resume point is in the output when it finished the stage; when a later fault
    // (the dev server's restart outlasting the 8 s heartbeat timeout) ended it, the next attempt on the
    // takeover host resumed from that checkpoint or a newer one the takeover attempt wrote.
    const takeoverStarts = completedBy.attempt - attemptAtKill;
    if (takeoverStarts === 1) assert.equal(resumedFrom, pointerAfterKill, `resumed from the bucket's checkpoint after the kill; ${ctx}`);
    else
      assert.ok(
        resumedFrom !== null && resumedFrom >= pointerAfterKill && resumedFrom % CHECKPOINT_EVERY === 0,
        `after ${takeoverStarts} attempts on the takeover host, resumed from a checkpoint (${resumedFrom}) no older than the bucket's after the kill (${pointerAfterKill}); ${ctx}`,
      );
    t.diagnostic(
      `train: resumed from step ${resumedFrom}, finished by attempt ${completedBy.attempt} on ${completedBy.identity} (gpu-2 ${gpu2.pidPrefix()}, ${takeoverStarts} attempt(s) there; killed gpu ${gpu.pidPrefix()})`,
    );
    assert.ok(
      completedBy.attempt >= 2 || onKilled,
      `the train stage's finishing attempt (${completedBy.attempt}) followed one on the killed gpu worker (${gpu.pidPrefix()}…); ${ctx}`,
    );
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
    // Every training finished, so none left a checkpoint behind, the killed one included: what stays of each is its
    // pointer, holding only the record of its finished outputs (for a retry whose completion was lost), no files.
    const backend = cluster.s3.backend(cluster.storeUrl);
    const leftovers: string[] = [];
    for await (const key of backend.list('checkpoint')) leftovers.push(key);
    assert.ok(
      leftovers.every((k) => /^checkpoints\/[^/]+\.json$/.test(k)),
      `only finished pointers stay in the bucket, no checkpoint files: ${leftovers.join(', ')}`,
    );
    for (const key of leftovers) {
      const pointer = JSON.parse((await readText(backend, key))!) as { finished?: { outputs?: unknown } };
      assert.ok(pointer.finished?.outputs, `${key} records a finished training, not a checkpoint to resume`);
    }

    // What is in the bucket is intact; what the runs and the registry name is there too. From a home
    // that holds nothing, every artifact reference in every run's stage outputs and of every registry
    // version is fetched from the bucket and verified, a tree with each of its files.
    const verifier = cluster.newHome('verifier');
    const fresh = new ArtifactStore(statePaths(verifier, cluster.hostEnv(verifier)).store, {
      remote: cluster.s3.backend(cluster.storeUrl),
    });
    const named = new Map<string, { ref: ArtifactRef; where: string }>();
    for (const st of [reference, ...batchDone, trained])
      for (const s of st.stages)
        for (const ref of artifactRefs(s.outputs ?? {}))
          if (!named.has(`${ref.sha256} ${ref.mediaType}`))
            named.set(`${ref.sha256} ${ref.mediaType}`, { ref, where: `run ${st.runId} stage ${s.id}` });

    // The registry: one version per distinct model, none twice; the audit chain verifies.
    const reg = await openRegistry(cluster.databaseUrl);
    try {
      const versions = await reg.listVersions('e2e-clf');
      const shas = versions.map((v) => v.artifacts.find((a) => a.role === 'model')!.sha256);
      assert.equal(new Set(shas).size, shas.length, `no duplicate versions: ${shas.join(', ')}`);
      assert.equal(versions.length, 1, 'the chaos run trained the same bytes: no new version');
      for (const v of versions)
        for (const a of v.artifacts) {
          const ref: ArtifactRef = { uri: a.uri, sha256: a.sha256, bytes: a.bytes, mediaType: a.mediaType ?? MEDIA.octet };
          named.set(`registry ${v.name} v${v.version} ${a.role}`, { ref, where: `registry ${v.name} v${v.version} artifact ${a.role}` });
        }
    } finally {
      await reg.close();
    }
    for (const { ref, where } of named.values())
      await assert.doesNotReject(fresh.verifyDeep(ref), `${where}: ${ref.uri} (${ref.mediaType}) is whole in the bucket`);
    assert.ok(named.size > batchDone.length, `verified ${named.size} artifact references`);
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
  it("a worker without the team's store and database refuses the team's run and stops; one with them carries the run on", async () => {
    // A worker started in a shell without the exports: it used to take the stages, answer from its own folder, and
    // leave outputs no other host could read ("not in the store") and audit records in its own file. Refusing alone
    // was not enough: idle, it took every retry of the stage, so it now stops after the first refusal.
    const stray = await cluster.startWorker('stray', ['--queue', 'stray'], { env: { TEMPERED_STORE: '', TEMPERED_DATABASE_URL: '' } });
    const exited = new Promise<number | null>((r) => stray.proc.once('exit', (code) => r(code)));
    try {
      const submitted = await cli(
        ['submit', tinyPipeline, '--queue', 'stray', '--param', 'seed=77', '--json'],
        cluster.newHome('submitter'),
      );
      assert.equal(submitted.code, 0, submitted.stderr);
      const runId = (JSON.parse(submitted.stdout) as { runId: string }).runId;
      assert.equal(await Promise.race([exited, sleep(120_000).then(() => 'still running')]), 1);
      const said = readFileSync(join(cluster.dir, 'stray.log'), 'utf8');
      assert.match(
        said,
        new RegExp(
          `refused run ${runId}: this worker keeps artifacts in this host's folder \\(no TEMPERED_STORE\\), the run in ${cluster.storeUrl}; ` +
            "keeps the registry and audit log in this host's SQLite file \\(no TEMPERED_DATABASE_URL\\), the run in the database ",
        ),
      );
      assert.match(said, /stopping: it lacks the shared store or database of the runs it is given/);
      // One line a refusal, not the SDK's warning of 30 lines with its stack besides.
      assert.doesNotMatch(said, /Activity failed/);
      // A worker with the settings takes the next attempt, and the run ends well.
      await cluster.startWorker('stray-fixed', ['--queue', 'stray']);
      const st = await finish(runId);
      assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((x) => [x.id, x.attempt, x.error?.message])));
      // Nothing of the run went into the stray host's own audit log.
      if (existsSync(join(stray.home, 'audit.db'))) {
        const own = await openAudit(join(stray.home, 'audit.db'));
        try {
          assert.deepEqual(await own.query({ run: runId }), []);
        } finally {
          await own.close();
        }
      }
    } finally {
      await cluster.killWorker('stray');
      await cluster.killWorker('stray-fixed');
    }
  });
  it("a worker whose database is another server's of the same name refuses the team's run: told apart by the database's instance id", async () => {
    // Another cluster's PostgreSQL with a database of the team's name (a staging cluster's URL pasted into a worker):
    // by name, the same; by the instance id each database keeps, another, so the run is refused there.
    const other = await startPostgres();
    try {
      const name = new URL(cluster.databaseUrl).pathname.slice(1);
      const admin = new pg.Client({ connectionString: other.url('postgres') });
      await admin.connect();
      await admin.query(`CREATE DATABASE ${name}`);
      await admin.end();
      const twinUrl = other.url(name);
      await cluster.startWorker('twin', ['--queue', 'twin'], { env: { TEMPERED_DATABASE_URL: twinUrl } });
      const submitted = await cli(
        ['submit', tinyPipeline, '--queue', 'twin', '--param', 'seed=78', '--json'],
        cluster.newHome('submitter-2'),
      );
      assert.equal(submitted.code, 0, submitted.stderr);
      const runId = (JSON.parse(submitted.stdout) as { runId: string }).runId;
      const refusal = new RegExp(
        `refused run ${runId}: this worker keeps the registry and audit log in the database ${name}, and the run in another database of that name \\(instance [0-9a-f-]{36} there, [0-9a-f-]{36} here, as this worker's tempered_instance row says\\)\\. Start`,
      );
      const log = () => readFileSync(join(cluster.dir, 'twin.log'), 'utf8');
      for (let i = 0; !refusal.test(log()); i++) {
        assert.ok(i < 240, `no refusal in the twin's log:\n${log()}`);
        await sleep(500);
      }
      // Not one of the lacking kind (it has a shared database, just not the team's): it keeps polling, so it is
      // stopped here, and a worker with the team's settings carries the run on.
      await cluster.killWorker('twin');
      await cluster.startWorker('twin-fixed', ['--queue', 'twin']);
      const st = await finish(runId);
      assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((x) => [x.id, x.attempt, x.error?.message])));
      // Nothing of the run went into the other cluster's audit log.
      const theirs = await openAudit(twinUrl);
      try {
        assert.deepEqual(await theirs.query({ run: runId }), []);
      } finally {
        await theirs.close();
      }
    } finally {
      await cluster.killWorker('twin');
      await cluster.killWorker('twin-fixed');
      await other.stop();
    }
  });
});
