/**
 * A retry of a train stage that had finished (its completion lost: the worker or the Temporal server died before the
 * workflow recorded it; with `--no-cache` no stage-cache record remembers the result) returns the finished outputs
 * instead of training again from step 0. Real tiny GPT-2, real onnxruntime training, real store (a folder standing in
 * for the shared bucket where hosts share one).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdtempSync, readdirSync, renameSync, rmSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import { readText } from '../store/object-backend.ts';
import { collectGarbage } from '../store/garbage.ts';
import { collectLocalCheckpoints } from '../store/local-checkpoints.ts';
import { checkpointLeaseName, pushCheckpoint } from '../store/shared-checkpoints.ts';
import { acquireSharedLease } from '../store/shared-lease.ts';
import { StageCache } from '../store/stage-cache.ts';
import type { ArtifactRef } from '../types.ts';
import { trainStage } from './train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import type { StageContext } from './types.ts';

const KEY = 'f'.repeat(64);
const DAY = 86_400_000;

async function fixture(t: { after: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-trainfinished-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const tablePath = writeRepeatTable(join(dir, 'train.arrow'));
  const bucket = new FolderBackend(join(dir, 'bucket'));
  /** A host's state folder; `shared`: its store shares the bucket. */
  const home = (name: string, shared = false) => {
    const root = join(dir, name);
    return { root, store: new ArtifactStore(join(root, 'store'), shared ? { remote: bucket } : {}) };
  };
  /** Runs the stage as attempt `attempt` of `run` on `h`; says how many training steps it reported. */
  const attempt = async (
    h: ReturnType<typeof home>,
    train: ArtifactRef,
    o: { run?: string; execution?: string; attempt?: number; onMessage?: (m: string) => void } = {},
  ) => {
    let steps = 0;
    const logs: string[] = [];
    const ctx: StageContext = {
      runId: o.run ?? 'r',
      executionId: o.execution ?? 'r-exec',
      stageId: 'train',
      attempt: o.attempt ?? 1,
      baseDir: dir,
      specHash: 's',
      actor: 't',
      cacheKey: KEY,
      store: h.store,
      workDir: join(h.root, `work-${o.attempt ?? 1}-${Math.random().toString(36).slice(2)}`),
      stateDir: h.root,
      signal: new AbortController().signal,
      progress: (p) => {
        if (typeof p.metrics?.step === 'number') steps++;
        if (p.message) o.onMessage?.(p.message);
      },
      log: (m) => void logs.push(m),
    };
    const outputs = await trainStage.run(tinyLoraTrainConfig(modelDir, train, { maxSteps: 3, seed: 5 }), ctx);
    return { outputs, steps, logs };
  };
  const putTable = (h: ReturnType<typeof home>) => h.store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  return { home, attempt, putTable, bucket, modelDir };
}

test("a retry of this run's finished training returns its outputs; another run, or the same id's next execution, trains again", async (t) => {
  const { home, attempt, putTable } = await fixture(t);
  const a = home('a');
  const train = await putTable(a);
  const first = await attempt(a, train);
  assert.equal(first.steps, 3);
  assert.deepEqual(readdirSync(join(a.root, 'checkpoints', KEY)), ['COMPLETE'], 'the finished stage deleted its checkpoints');

  const retry = await attempt(a, train, { attempt: 2 });
  assert.equal(retry.steps, 0, 'the retry trained nothing');
  assert.deepEqual(retry.outputs, first.outputs, "it returned the finished attempt's outputs");
  assert.ok(
    retry.logs.some((m) => m.includes('an earlier attempt of this stage finished its training (3 steps)')),
    retry.logs.join('\n'),
  );

  // The folder is the work's (its cache key), shared with every run of it: only this execution's retries reuse it.
  const reused = await attempt(a, train, { execution: 'r-exec-2' });
  assert.equal(reused.steps, 3, 'a run id used again (a new execution) trains afresh');
  const other = await attempt(a, train, { run: 'r2', execution: 'r2-exec' });
  assert.equal(other.steps, 3, 'another run of the same work trains afresh');
  assert.equal((other.outputs.model as ArtifactRef).sha256, (first.outputs.model as ArtifactRef).sha256, 'same seed, same model');
});

test('a retry whose finished outputs are gone from the store trains again', async (t) => {
  const { home, attempt, putTable } = await fixture(t);
  const a = home('a');
  const train = await putTable(a);
  const first = await attempt(a, train);
  rmSync(a.store.pathOf(first.outputs.history as ArtifactRef));
  const retry = await attempt(a, train, { attempt: 2 });
  assert.equal(retry.steps, 3, 'it trained again');
  assert.ok(
    retry.logs.some((m) => m.includes('its outputs are not all in the store')),
    retry.logs.join('\n'),
  );
  assert.deepEqual(retry.outputs.history, first.outputs.history, 'and stored the same history again');
});

test('with a shared store, a retry on another worker finds the finished record there; no checkpoint files are left', async (t) => {
  const { home, attempt, putTable, bucket, modelDir } = await fixture(t);
  const a = home('a', true);
  const train = await putTable(a);
  const first = await attempt(a, train);
  const files: string[] = [];
  for await (const k of bucket.list('checkpoint-files/')) files.push(k);
  assert.deepEqual(files, [], 'the finished stage deleted its shared checkpoint files');
  const pointer = JSON.parse((await readText(bucket, `checkpoints/${KEY}.json`))!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(pointer), ['finished', 'write'], 'the pointer holds the record (and its write id), no checkpoint');

  const b = home('b', true);
  // Nor does it fetch the base model (gigabytes on a worker that never had it): it is not even there.
  renameSync(modelDir, `${modelDir}.away`);
  const retry = await attempt(b, train, { attempt: 2 });
  renameSync(`${modelDir}.away`, modelDir);
  assert.equal(retry.steps, 0, 'the retry on worker B trained nothing');
  assert.deepEqual(retry.outputs, first.outputs);

  // Another run of the work on B trains from step 0: the record is no checkpoint to resume (nor a damaged one).
  const other = await attempt(b, train, { run: 'r2', execution: 'r2-exec' });
  assert.equal(other.steps, 3);
  assert.equal((other.outputs.baseModel as { resumedFromStep: number | null }).resumedFromStep, null);
  assert.ok(!other.logs.some((m) => m.includes('ignoring the shared checkpoint')), other.logs.join('\n'));
});

test('a retry that waited for the attempt still running (it lost its heartbeat, not its process) returns what that attempt finished with', async (t) => {
  const { home, attempt, putTable, bucket } = await fixture(t);
  const a = home('a', true);
  const train = await putTable(a);
  const first = await attempt(a, train);
  // Replayed in the order it happens: attempt 1 holds the lease and has not finished when attempt 2, on worker B, looks
  // for a record; attempt 2 waits for the lease, and attempt 1 writes its record (under the lease) and releases it.
  const pointerKey = `checkpoints/${KEY}.json`;
  const record = (await readText(bucket, pointerKey))!;
  await bucket.delete(pointerKey);
  const running = await acquireSharedLease(bucket, checkpointLeaseName(KEY), { what: 'run r stage train attempt 1', inProcess: true });
  let waiting!: () => void;
  const waited = new Promise<void>((resolve) => (waiting = resolve));
  const b = home('b', true);
  const retry = attempt(b, train, { attempt: 2, onMessage: (m) => void (m.startsWith('waiting for the checkpoint') && waiting()) });
  retry.catch(() => waiting());
  await waited;
  await bucket.putBytes(pointerKey, Buffer.from(record), { ifAbsent: false });
  await running.release();
  const r = await retry;
  assert.equal(r.steps, 0, 'the retry trained nothing once the lease was its');
  assert.deepEqual(r.outputs, first.outputs);
});

test("a record that names this execution but whose outputs are not a training's (a broken or hostile bucket) is ignored: the stage trains", async (t) => {
  const { home, attempt, putTable, bucket } = await fixture(t);
  const train = await putTable(home('a', true));
  const forged = (outputs: Record<string, unknown>) =>
    bucket.putBytes(
      `checkpoints/${KEY}.json`,
      Buffer.from(JSON.stringify({ finished: { finishedAt: '', runId: 'r', executionId: 'r-exec', stageId: 'train', outputs } })),
      { ifAbsent: false },
    );
  const stranger = await home('a', true).store.putJson({ not: 'a model' });
  // An output missing, one of another type, one that names no stored object.
  // Each retry on a worker of its own: a training that finished leaves its own record behind.
  for (const [i, outputs] of [
    { model: stranger, checkpoint: stranger, steps: 3 },
    { model: 'model.onnx', checkpoint: stranger, history: stranger, steps: 3 },
    { model: { uri: 'artifact://sha256/../../../etc/passwd', sha256: '../../../etc/passwd' }, checkpoint: stranger, history: stranger },
  ].entries()) {
    await forged(outputs);
    const r = await attempt(home(`b${i}`, true), train, { attempt: 2 });
    assert.equal(r.steps, 3, `it trained (${JSON.stringify(outputs.model)})`);
    assert.ok(
      r.logs.some((m) => m.includes('its outputs are not all in the store as recorded')),
      r.logs.join('\n'),
    );
  }
});

test('store gc between the finish and the retry keeps the record (until the horizon): the retry trains nothing', async (t) => {
  const { home, attempt, putTable } = await fixture(t);
  const a = home('a');
  const train = await putTable(a);
  const first = await attempt(a, train);
  const dir = join(a.root, 'checkpoints');
  const gc = collectLocalCheckpoints({ dir, horizon: Date.now() - 30 * 86_400_000, completed: new Map(), collect: true });
  assert.deepEqual(gc.items, [], 'nothing collected');
  assert.deepEqual(readdirSync(join(dir, KEY)), ['COMPLETE']);
  const retry = await attempt(a, train, { attempt: 2 });
  assert.equal(retry.steps, 0, 'the retry trained nothing');
  assert.deepEqual(retry.outputs, first.outputs);
});

test("store gc keeps what a kept finished record names, as a shared pointer's: its outputs, older than the mark, outlive it", async (t) => {
  const { home, attempt, putTable } = await fixture(t);
  const a = home('a');
  const train = await putTable(a);
  const first = await attempt(a, train);
  // Near the horizon: the mark a day short of it, the outputs past it. Outputs are older than the mark when their bytes
  // were stored less than a day before the training put them again (a put marks an object over a day old only).
  const at = (days: number) => new Date(Date.now() - days * DAY);
  const walk = (p: string, when: Date) => {
    if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) walk(join(p, n), when);
    utimesSync(p, when, when);
  };
  walk(join(a.store.root, 'sha256'), at(31));
  walk(join(a.root, 'checkpoints', KEY), at(29));
  const cache = new StageCache(join(a.root, 'cache'), a.store);
  const checkpointsDir = join(a.root, 'checkpoints');
  const gc = await collectGarbage({ store: a.store, cache, roots: [], olderThanMs: 30 * DAY, collect: true, checkpointsDir });
  assert.deepEqual(gc.localCheckpoints?.items, [], 'the mark is kept');
  assert.deepEqual(readdirSync(join(checkpointsDir, KEY)), ['COMPLETE']);
  // The training's input is not the record's to keep: stored again, as a retry's run would find it.
  await putTable(a);
  const retry = await attempt(a, train, { attempt: 2 });
  assert.equal(retry.steps, 0, 'the retry trained nothing: the outputs the mark names are still in the store');
  assert.deepEqual(retry.outputs, first.outputs);
});

test("a retry that finds the record only in this worker's mark (its attempt died before it replaced the shared checkpoint) replaces it: no checkpoint files stay in the bucket", async (t) => {
  const { home, attempt, putTable, bucket } = await fixture(t);
  const a = home('a', true);
  const train = await putTable(a);
  const first = await attempt(a, train);
  // The bucket as it is when the attempt died between its COMPLETE mark and finishSharedCheckpoint: the pointer names
  // its last checkpoint, whose files (gigabytes for an LLM) are there.
  const last = join(a.root, 'last', 'step-3');
  await a.store.materializeTree(first.outputs.checkpoint as ArtifactRef, last);
  await pushCheckpoint(a.store, KEY, last);
  const files = async () => {
    const out: string[] = [];
    for await (const k of bucket.list('checkpoint-files/')) out.push(k);
    return out;
  };
  assert.notDeepEqual(await files(), []);

  const retry = await attempt(a, train, { attempt: 2 });
  assert.equal(retry.steps, 0, 'the retry trained nothing');
  assert.deepEqual(retry.outputs, first.outputs);
  assert.deepEqual(await files(), [], "the finished training's checkpoint files are gone from the bucket");
  const pointer = JSON.parse((await readText(bucket, `checkpoints/${KEY}.json`))!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(pointer), ['finished', 'write'], 'the pointer holds the record (and its write id)');
  // Which a retry on another worker returns too.
  const b = await attempt(home('b', true), train, { attempt: 3 });
  assert.equal(b.steps, 0);
  assert.deepEqual(b.outputs, first.outputs);
});
