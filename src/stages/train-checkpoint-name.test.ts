/**
 * A train stage's checkpoint folder is named from the run's input (RunOptions.ownCheckpoints, the run id), which whoever
 * can start a workflow writes: a name that is a path out of the checkpoints folder is refused before anything is
 * written, instead of training in (and clearing at its end) a folder elsewhere on the worker. Real tiny GPT-2, real
 * onnxruntime training (what the stage did before the check), real files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { testStageContext } from './stage-context.testing.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import { MAX_CHECKPOINT_NAME_BYTES, trainStage } from './train.ts';
import type { StageContext } from './types.ts';

async function setup(t: { after(fn: () => void): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ckname-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const root = join(dir, 'home');
  const store = new ArtifactStore(join(root, 'store'));
  const trainRef = await store.putFile(writeRepeatTable(join(dir, 'train.arrow')), { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(modelDir, trainRef, { maxSteps: 4, seed: 3 });
  const run = (runId: string, extra: Partial<StageContext>) =>
    trainStage.run(cfg, { ...testStageContext({ root, store, baseDir: dir, cacheKey: 'c'.repeat(64), runId }), ...extra });
  return { dir, root, run };
}

test("a run's checkpoint name that leads out of the checkpoints folder is refused, naming the field, and nothing is written there", async (t) => {
  const { dir, run } = await setup(t);

  // `<key>.fresh-x/../../../escape-train` under <dir>/home/checkpoints is <dir>/escape-train.
  await assert.rejects(run('r1', { ownCheckpoints: 'x/../../../escape' }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, 'RunOptions.ownCheckpoints');
    assert.match(e.message, /letters, digits/);
    return true;
  });
  assert.ok(!existsSync(join(dir, 'escape-train')), 'trained in a folder out of the checkpoints folder');

  // models reproduce's folder of a run submitted before 7 Dec (freshTraining, named by the run id).
  await assert.rejects(run('x/../../../escape2', { freshTraining: true }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /is not one folder name/);
    return true;
  });
  assert.ok(!existsSync(join(dir, 'escape2-train')), 'trained in a folder out of the checkpoints folder');
});

test("models reproduce's legacy folder (freshTraining) of a run id of any length fits a folder name: the training ends", async (t) => {
  const { root, run } = await setup(t);
  // `submit --run-id` takes any length; the folder was `<key>.fresh-<run id>-train`, past 255 bytes: ENAMETOOLONG.
  const out = await run('r'.repeat(300), { freshTraining: true });
  assert.equal(out.steps, 4);
  const names = readdirSync(join(root, 'checkpoints'));
  assert.ok(names.length > 0, 'no checkpoint folder');
  for (const n of names) assert.ok(Buffer.byteLength(n) <= MAX_CHECKPOINT_NAME_BYTES, `${n.length}-byte folder name ${n}`);
});
