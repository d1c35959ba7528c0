/**
 * A train stage killed on one worker resumes on another from the checkpoint in the shared store: two
 * state folders (TEMPERED_HOME) that share nothing but a real SeaweedFS bucket. Real tiny GPT-2, real
 * onnxruntime training; the resumed run must end bitwise equal to an uninterrupted one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tinyGpt2Dir } from '../src/models/tiny.testing.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { readText } from '../src/store/object-backend.ts';
import { trainStage } from '../src/stages/train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from '../src/stages/train-config.testing.ts';
import { testStageContext } from '../src/stages/stage-context.testing.ts';
import type { StageContext } from '../src/stages/types.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

let s3: TestS3;
useTestS3((h) => (s3 = h));

test('a train stage aborted after its second checkpoint on home A resumes on home B from the shared store, same final weights', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sharedck-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = s3.freshUrl();
  // The base model is a model source both workers can read; everything else is per home.
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const tablePath = join(dir, 'train.arrow');
  writeRepeatTable(tablePath);
  const home = (name: string, shared: boolean) => {
    const root = join(dir, name);
    return { root, store: new ArtifactStore(join(root, 'store'), { remote: shared ? s3.backend(url) : undefined }) };
  };
  const a = home('home-a', true);
  const trainRef = await a.store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(modelDir, trainRef, { maxSteps: 4, seed: 3 });
  const logs: string[] = [];
  const ctx = (
    h: { root: string; store: ArtifactStore },
    cacheKey: string,
    signal: AbortSignal,
    onProgress = (_: unknown) => {},
  ): StageContext => testStageContext({ ...h, baseDir: dir, cacheKey, signal, progress: onProgress, log: (m) => logs.push(m) });
  const key = 'c'.repeat(64);

  // Home A: killed (aborted) right after its second checkpoint was reported.
  const stop = new AbortController();
  await assert.rejects(
    trainStage.run(
      cfg,
      ctx(a, key, stop.signal, (p) => {
        const latest = (p as { resume?: { latest?: string } }).resume?.latest;
        if (latest?.endsWith('step-00000002')) stop.abort();
      }),
    ),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  const pointer = JSON.parse((await readText(s3.backend(url), `checkpoints/${key}.json`))!) as { step: number };
  assert.ok(pointer.step >= 2 && pointer.step < 4, `the bucket holds a mid-run checkpoint (step ${pointer.step})`);
  const stepFolders = async () => {
    const found = new Set<string>();
    // (Each push's files are in a folder of its own, `step-N.<write id>`.)
    for await (const k of s3.backend(url).list(`checkpoint-files/${key}/`)) found.add(k.split('/')[2]!.replace(/\.[0-9a-f]{16}$/, ''));
    return [...found];
  };
  assert.deepEqual(await stepFolders(), [`step-${String(pointer.step).padStart(8, '0')}`], 'only the newest checkpoint is kept');

  // Home B: nothing local, same bucket: the stage resumes from A's checkpoint and finishes.
  const b = home('home-b', true);
  assert.equal(existsSync(join(b.root, 'checkpoints', key)), false);
  const resumed = await trainStage.run(cfg, ctx(b, key, new AbortController().signal));
  assert.equal(resumed.steps, 4);
  assert.equal((resumed.baseModel as { resumedFromStep: number | null }).resumedFromStep, pointer.step);
  assert.ok(logs.some((m) => m.includes(`checkpoint at step ${pointer.step}`)));
  const finished = JSON.parse((await readText(s3.backend(url), `checkpoints/${key}.json`))!) as Record<string, unknown>;
  assert.deepEqual(
    Object.keys(finished),
    ['finished', 'write'],
    "a finished stage's pointer names no checkpoint, only its finished record (and its write id)",
  );
  assert.deepEqual(await stepFolders(), [], 'and its files are deleted');

  // Its completion lost (a server restart before the workflow recorded it), the stage is retried on home A, whose
  // folder still holds the aborted attempt's checkpoints: the record in the bucket is found, nothing is trained.
  let retrySteps = 0;
  const retry = await trainStage.run(
    cfg,
    ctx(
      a,
      key,
      new AbortController().signal,
      (p) => void (typeof (p as { metrics?: { step?: number } }).metrics?.step === 'number' && retrySteps++),
    ),
  );
  assert.equal(retrySteps, 0, 'the retry trained nothing');
  assert.deepEqual(retry, resumed, "it returned home B's outputs");

  // An uninterrupted run on a third, local-only home gives the same weights.
  const c = home('home-c', false);
  await c.store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  const cDir = join(c.root, 'checkpoints', 'd'.repeat(64));
  let most = 0;
  const whole = await trainStage.run(
    cfg,
    ctx(c, 'd'.repeat(64), new AbortController().signal, (p) => {
      if ((p as { resume?: { latest?: string } }).resume?.latest)
        most = Math.max(most, readdirSync(cDir).filter((n) => n.startsWith('step-')).length);
    }),
  );
  assert.equal(most, 2, 'at most the two newest checkpoints are on disk');
  assert.deepEqual(readdirSync(cDir), ['COMPLETE'], 'a finished stage keeps nothing but its mark: its last checkpoint is an output');
  assert.equal((whole.baseModel as { resumedFromStep: number | null }).resumedFromStep, null);
  assert.equal((resumed.model as { sha256: string }).sha256, (whole.model as { sha256: string }).sha256, 'bitwise the same exported model');
});

test("a --no-cache run's training (ownCheckpoints) starts from step 0 though the bucket holds another run's checkpoint of the work, and its resume on another home continues its own", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-sharedown-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = s3.freshUrl();
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const tablePath = join(dir, 'train.arrow');
  writeRepeatTable(tablePath);
  const home = (name: string) => {
    const root = join(dir, name);
    return { root, store: new ArtifactStore(join(root, 'store'), { remote: s3.backend(url) }) };
  };
  const trainRef = await home('home-a').store.putFile(tablePath, { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(modelDir, trainRef, { maxSteps: 4, seed: 3 });
  const key = 'e'.repeat(64);
  /** Runs the stage of `runId` on `name`, aborted once it reported its checkpoint of step 2 when `abortAt2`. */
  const run = (name: string, runId: string, ownCheckpoints: string | undefined, abortAt2 = false) => {
    const stop = new AbortController();
    return trainStage.run(cfg, {
      ...testStageContext({
        ...home(name),
        baseDir: dir,
        cacheKey: key,
        runId,
        signal: stop.signal,
        progress: (p) => {
          if (abortAt2 && (p as { resume?: { latest?: string } }).resume?.latest?.endsWith('step-00000002')) stop.abort();
        },
      }),
      ...(ownCheckpoints ? { ownCheckpoints } : {}),
    });
  };
  const resumedFrom = (o: Record<string, unknown>) => (o.baseModel as { resumedFromStep: number | null }).resumedFromStep;
  const pointerStep = async (name: string) =>
    (JSON.parse((await readText(s3.backend(url), `checkpoints/${name}.json`))!) as { step: number }).step;

  // Another run of the work, its worker stopped mid-training: its checkpoint is the work's in the bucket.
  await assert.rejects(run('home-a', 'other', undefined, true), (e: unknown) => (e as Error).name === 'AbortError');
  const others = await pointerStep(key);
  assert.ok(others >= 2);

  // A --no-cache run on another home: from step 0.
  const fresh = await run('home-b', 'nocache-1', 'nocache-1-0a0a0a0a0a0a');
  assert.equal(resumedFrom(fresh), null, "trained from step 0, not from the other run's checkpoint");
  assert.equal(await pointerStep(key), others, "the other run's checkpoint is left as it was");

  // A --no-cache run stopped mid-training on home C, resumed (another run id, the same ownCheckpoints) on home D.
  await assert.rejects(run('home-c', 'nocache-2', 'nocache-2-1b1b1b1b1b1b', true), (e: unknown) => (e as Error).name === 'AbortError');
  const own = await pointerStep(`${key}.fresh-nocache-2-1b1b1b1b1b1b-train`);
  const resumed = await run('home-d', 'nocache-2-resumed', 'nocache-2-1b1b1b1b1b1b');
  assert.equal(resumedFrom(resumed), own, 'the resume continued its own checkpoint');
  assert.equal((resumed.model as { sha256: string }).sha256, (fresh.model as { sha256: string }).sha256, 'the same weights as from step 0');
});
