/**
 * Two attempts of the same train stage (a retry while the attempt that lost its heartbeat still
 * runs): one checkpoint folder, one writer. Real tiny GPT-2, real onnxruntime training, real store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { acquireDirLock, LockBusyError } from '../util/dir-lock.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import { readText } from '../store/object-backend.ts';
import { acquireSharedLease } from '../store/shared-lease.ts';
import { claimSharedCheckpoint, PointerMovedError, pushCheckpoint } from '../store/shared-checkpoints.ts';
import { trainStage, type TrainConfig } from './train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import type { StageContext } from './types.ts';

/** A tiny causal-lm train stage over `store`, its state in `stateDir` (a host's TEMPERED_HOME). */
async function fixture(dir: string, store: ArtifactStore) {
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const tablePath = join(dir, 'train.arrow');
  writeRepeatTable(tablePath);
  const trainRef = await store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = (maxSteps: number): TrainConfig => tinyLoraTrainConfig(modelDir, trainRef, { maxSteps });
  const ctx = (attempt: number, signal: AbortSignal, over: Partial<StageContext> = {}): StageContext => ({
    runId: 'r',
    stageId: 'train',
    attempt,
    baseDir: dir,
    specHash: 's',
    actor: 't',
    cacheKey: 'k'.repeat(64),
    store,
    workDir: join(dir, `work-${attempt}`),
    stateDir: dir,
    signal,
    progress() {},
    log() {},
    ...over,
  });
  return { cfg, ctx };
}

/** Locks and leases go stale after `ms` for the rest of the test (TEMPERED_CHECKPOINT_LOCK_STALE_MS). */
function staleAfter(t: { after: (fn: () => void) => void }, ms: number): void {
  const before = process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS;
  process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS = String(ms);
  t.after(() => {
    if (before === undefined) delete process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS;
    else process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS = before;
  });
}

/**
 * The train fixture on a host that shares only a store (a folder standing in for the bucket) with
 * others, its locks and leases going stale after `staleMs` (10 s: a lease kept by a thread on a
 * loaded 2-core machine must not be given up for a refresh that came late).
 */
async function sharedStoreFixture(t: { after: (fn: () => void) => void }, staleMs = 10_000) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-trainlease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const shared = new FolderBackend(join(dir, 'bucket'));
  const store = new ArtifactStore(join(dir, 'store'), { remote: shared });
  staleAfter(t, staleMs);
  return { dir, shared, ...(await fixture(dir, store)) };
}

test("a second attempt cannot write the checkpoint folder while the first still runs; another run's training is waited for; each can once the holder stopped", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-trainlock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(join(dir, 'store'));
  const { cfg, ctx } = await fixture(dir, store);

  // Attempt 1 (a zombie that lost its heartbeat) holds the folder; it had finished a run before, so
  // the folder carries COMPLETE, which a new attempt would clear.
  const ckDir = join(dir, 'checkpoints', 'k'.repeat(64));
  mkdirSync(ckDir, { recursive: true });
  writeFileSync(join(ckDir, 'COMPLETE'), 'earlier');
  const zombie = acquireDirLock(`${ckDir}.lock`, { what: 'run r stage train attempt 1' });
  await assert.rejects(
    trainStage.run(cfg(2), ctx(2, new AbortController().signal)),
    (e: unknown) => e instanceof LockBusyError && /attempt 1/.test(e.message),
  );
  assert.ok(existsSync(join(ckDir, 'COMPLETE')), 'the rejected attempt deleted nothing the holder writes');
  zombie.release();
  // Another run's training of the same work (overlap allow-all) holds the folder for its whole training: the stage
  // waits for it, saying so, where it failed at once and its retries (three in about 3 s) failed the run meanwhile.
  const other = acquireDirLock(`${ckDir}.lock`, { what: 'run nightly-2 stage train attempt 1' });
  const waits: string[] = [];
  let settled = false;
  // Aborted when the test ends: a failed assert below leaves the holder in place, and the stage would wait for good.
  const waiting = new AbortController();
  t.after(() => waiting.abort());
  const running = trainStage.run(cfg(2), ctx(3, waiting.signal, { progress: (p) => void (p.message && waits.push(p.message)) }));
  running.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled && waits.length === 0) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    waits.map((m) => /waiting for the checkpoint: .* held by run nightly-2 stage train attempt 1/.test(m)),
    [true],
    waits.join('\n'),
  );
  assert.ok(existsSync(join(ckDir, 'COMPLETE')), 'the waiting attempt deleted nothing the holder writes');
  // Once the holder stopped, the stage runs (and clears the finished folder as before).
  other.release();
  const out = await running;
  assert.equal(out.steps, 2);
  assert.equal(existsSync(`${ckDir}.lock`), false, 'the lock is released after the run');
});

test('across hosts sharing only the store: an attempt waits for the live holder of the checkpoint lease, heartbeating, and takes it over once its holder died', async (t) => {
  // This host's own home and store cache; the other host is represented by its lease alone. While
  // attempt 2 waits for the live holder, leases go stale after 5 s: it gives up after waiting 6.25 s.
  const { dir, shared, cfg, ctx } = await sharedStoreFixture(t, 5000);

  // Attempt 1 still runs on the other host and keeps its lease fresh. (Refreshed from this thread,
  // which only waits meanwhile: a keeper thread starting on a loaded machine is the train stage's
  // own lease's business, below.)
  const name = `checkpoint-${'k'.repeat(64)}`;
  const other = await acquireSharedLease(shared, name, {
    what: 'run r stage train attempt 1',
    staleMs: 5000,
    inProcess: true,
    refreshMs: 200,
  });
  const waits: string[] = [];
  await assert.rejects(
    trainStage.run(cfg(2), ctx(2, new AbortController().signal, { progress: (p) => void (p.message && waits.push(p.message)) })),
    (e: unknown) => e instanceof LockBusyError && /attempt 1/.test(e.message),
  );
  assert.ok(waits.length >= 1 && waits.every((m) => /waiting for the checkpoint: .*attempt 1/.test(m)), waits.join('\n'));
  assert.equal(
    existsSync(`${join(dir, 'checkpoints', 'k'.repeat(64))}.lock`),
    false,
    "the host's folder lock is released when the lease is not had",
  );

  // Its next attempt there dies: a generation above the released one, never refreshed. (From here
  // on, leases go stale after 10 s: attempt 4's own, kept by its keeper thread, is not given up.)
  process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS = '10000';
  await other.release();
  const gens: string[] = [];
  for await (const k of shared.list(`leases/${name}/`)) gens.push(k);
  const next = Math.max(...gens.map((k) => Number(k.slice(-17, -5)))) + 1;
  const deadKey = `leases/${name}/${String(next).padStart(12, '0')}.json`;
  await shared.putBytes(
    deadKey,
    Buffer.from(JSON.stringify({ token: 'dead', pid: 1, host: 'gone', what: 'run r stage train attempt 3', since: '' })),
    { ifAbsent: true },
  );
  const taken: string[] = [];
  const running = trainStage.run(
    cfg(2),
    ctx(4, new AbortController().signal, { progress: (p) => void (p.message && taken.push(p.message)) }),
  );
  let settled = false;
  running.then(
    () => (settled = true),
    () => (settled = true),
  );
  // Once attempt 4 waits for it, the dead generation goes unrefreshed past the stale time: its write
  // time moves a minute back, as if that minute had passed.
  while (!settled && !taken.some((m) => /waiting for the checkpoint: .*attempt 3/.test(m))) await new Promise((r) => setTimeout(r, 20));
  const aMinuteAgo = new Date(Date.now() - 60_000);
  utimesSync(join(shared.root, ...deadKey.split('/')), aMinuteAgo, aMinuteAgo);
  const out = await running;
  assert.equal(out.steps, 2);
  assert.ok(
    taken.some((m) => /waiting for the checkpoint: .*attempt 3/.test(m)),
    'it waited for the dead holder first',
  );
  const left: string[] = [];
  for await (const k of shared.list('leases/')) left.push(k);
  assert.equal(left.length, 1, `the dead generation is deleted: ${left.join(', ')}`);
  assert.equal(JSON.parse((await readText(shared, left[0]!))!).released, true, 'the lease is released: its newest generation says so');
});

test('a training whose shared lease is taken over stops, writes no further checkpoint, and leaves the new holder its pointer', async (t) => {
  const { shared, cfg, ctx } = await sharedStoreFixture(t);
  const pointer = `checkpoints/${'k'.repeat(64)}.json`;
  const training = trainStage.run(cfg(100_000), ctx(1, new AbortController().signal));
  training.catch(() => undefined);
  // Once it has shared a checkpoint, another host (whose clock reads two minutes later) takes its lease.
  while (!(await shared.head(pointer))) await new Promise((r) => setTimeout(r, 20));
  // (No refreshes of its own, so nothing writes once the test ends; waitMs: a refresh of the holder
  // landing between the taker's look and its put makes it try again.)
  const taker = await acquireSharedLease(shared, `checkpoint-${'k'.repeat(64)}`, {
    what: 'taker',
    staleMs: 3000,
    now: () => Date.now() + 120_000,
    waitMs: 5000,
    inProcess: true,
    refreshMs: 3_600_000,
  });
  try {
    await assert.rejects(training, /lost the lease/);
    const stepAtStop = JSON.parse((await readText(shared, pointer))!).step as number;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(JSON.parse((await readText(shared, pointer))!).step, stepAtStop, 'no checkpoint after it stopped');
    assert.equal(taker.signal.aborted, false, "the taker's lease stands");
  } finally {
    await taker.release();
  }
});

test('a training paused between its lease check and its pointer write, taken over meanwhile, moves nothing and fails its attempt', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-trainpause-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const shared = new FolderBackend(join(dir, 'bucket'));
  // The training's pointer write with a checkpoint in it waits at this gate: the process paused (GC, SIGSTOP) right
  // after its last lease check, the pointer not yet written.
  let reached!: () => void;
  let resume!: () => void;
  const paused = new Promise<void>((r) => (reached = r));
  const resumed = new Promise<void>((r) => (resume = r));
  const gated = Object.assign(Object.create(shared) as FolderBackend, {
    async swapBytes(key: string, bytes: Uint8Array, expect: string | undefined) {
      if (Buffer.from(bytes).includes('"step"')) {
        reached();
        await resumed;
      }
      return shared.swapBytes(key, bytes, expect);
    },
  });
  staleAfter(t, 10_000);
  const { cfg, ctx } = await fixture(dir, new ArtifactStore(join(dir, 'store'), { remote: gated }));
  const name = 'k'.repeat(64);
  const training = trainStage.run(cfg(100_000), ctx(1, new AbortController().signal));
  training.catch(() => undefined);
  // (A training that fails or ends before its pointer write fails the test here, instead of leaving it waiting for ever.)
  await Promise.race([paused, training.then(() => assert.fail('the training ended without a checkpoint'))]);
  // Another host (whose clock reads two minutes later) takes the lease, claims the pointer and shares its step 999.
  const taker = await acquireSharedLease(shared, `checkpoint-${name}`, {
    what: 'taker',
    staleMs: 3000,
    now: () => Date.now() + 120_000,
    waitMs: 5000,
    inProcess: true,
    refreshMs: 3_600_000,
  });
  try {
    const other = new ArtifactStore(join(dir, 'other'), { remote: shared });
    const hold = await claimSharedCheckpoint(other, name, 'taker');
    const ck = join(dir, 'taker', 'step-00000999');
    mkdirSync(ck, { recursive: true });
    writeFileSync(join(ck, 'manifest.json'), '{"step":999}');
    await pushCheckpoint(other, name, ck, undefined, () => taker.assertHeld(), hold);
    resume();
    await assert.rejects(training, PointerMovedError);
    assert.equal(JSON.parse((await readText(shared, `checkpoints/${name}.json`))!).step, 999, "the taker's pointer stands");
    const files: string[] = [];
    for await (const k of shared.list(`checkpoint-files/${name}/`)) files.push(k);
    assert.ok(
      files.some((k) => /^checkpoint-files\/k+\/step-00000999\.[0-9a-f]{16}\/manifest\.json$/.test(k)),
      `its files stay: ${files.join(', ')}`,
    );
  } finally {
    resume();
    await taker.release();
  }
});

test("the train cache key follows the base model's content: a re-exported folder under the same path misses the cache", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-trainkey-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const key = async () => (await trainStage.externalInputs!({ model: 'model' } as TrainConfig, { baseDir: dir, stateDir: dir })).join();
  const before = await key();
  assert.equal(await key(), before, 'same bytes, same key');
  // Re-export: same folder, other weights.
  tinyGpt2Dir(join(dir, 'model'), 6, { hidden: 32, layers: 2, maxPositions: 64 });
  assert.ok(existsSync(modelDir));
  assert.notEqual(await key(), before);
});
