/**
 * A train stage's checkpoint folder is named from the run's input (RunOptions.ownCheckpoints, the run id), which whoever
 * can start a workflow writes: a name that is a path out of the checkpoints folder is refused before anything is
 * written, instead of training in (and clearing at its end) a folder elsewhere on the worker. Real tiny GPT-2, real
 * onnxruntime training (what the stage did before the check), real files.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import { sharedCheckpointKeys } from '../store/shared-checkpoints.ts';
import { testStageContext } from './stage-context.testing.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import { MAX_CHECKPOINT_NAME_BYTES } from './train-checkpoint-name.ts';
import { trainStage } from './train.ts';
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

  // A run id beginning with a dot, where no cache key names the folder first: `store gc` takes such names for its own.
  await assert.rejects(run('.hidden', { cacheKey: undefined }), (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.match(e.message, /"\.hidden-train" is not one folder name/);
    return true;
  });
  assert.ok(!existsSync(join(dir, 'home', 'checkpoints', '.hidden-train')), 'trained in a dot-named folder');
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

test('a training in flight when long names began to be hashed resumes from its folder of the old name (235 to 250 bytes), never through a link', async (t) => {
  const { dir, root, run } = await setup(t);
  const checkpoints = join(root, 'checkpoints');
  // `<key>.fresh-<run id>-train` of a long `--run-id`: 240 bytes, a folder name a train stage kept as it was.
  const runId = 'r'.repeat(240 - 64 - '.fresh-'.length - '-train'.length);
  const old = `${'c'.repeat(64)}.fresh-${runId}-train`;
  assert.equal(Buffer.byteLength(old), 240);
  const stop = new AbortController();
  const progress = (p: { resume?: { latest?: string } }) => {
    if (p.resume?.latest?.endsWith('step-00000002')) stop.abort();
  };
  await assert.rejects(
    run(runId, { freshTraining: true, signal: stop.signal, progress }),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  const [hashed, ...more] = readdirSync(checkpoints).filter((n) => !n.endsWith('.lock'));
  assert.equal(more.length, 0);
  // Elsewhere, and linked to by the old name: not followed (a training in it would write, and clear, what it leads to).
  const elsewhere = join(dir, 'elsewhere');
  renameSync(join(checkpoints, hashed!), elsewhere);
  const held = readdirSync(elsewhere).sort();
  symlinkSync(elsewhere, join(checkpoints, old));
  const through = await run(runId, { freshTraining: true });
  assert.equal((through.baseModel as { resumedFromStep: unknown }).resumedFromStep, null, 'resumed through the link');
  assert.deepEqual(readdirSync(elsewhere).sort(), held);
  // The folder of the old name, as a worker before the upgrade left it: resumed, not trained again from step 0.
  rmSync(join(checkpoints, old));
  renameSync(elsewhere, join(checkpoints, old));
  const out = await run(runId, { freshTraining: true, executionId: 'r-exec-2' });
  assert.equal(out.steps, 4);
  assert.ok(Number((out.baseModel as { resumedFromStep: unknown }).resumedFromStep) >= 2, JSON.stringify(out.baseModel));
  assert.ok(existsSync(join(checkpoints, old, 'COMPLETE')), 'finished in another folder');
});

test("a training begun under the old name on another host resumes from the shared store's checkpoint alone; a link under that name here is not followed, whatever the store holds", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-ckname-shared-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const modelDir = tinyGpt2Dir(join(dir, 'model'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const bucket = new FolderBackend(join(dir, 'bucket'));
  const host = (name: string) => {
    const root = join(dir, name);
    return { root, checkpoints: join(root, 'checkpoints'), store: new ArtifactStore(join(root, 'store'), { remote: bucket }) };
  };
  const a = host('a');
  const trainRef = await a.store.putFile(writeRepeatTable(join(dir, 'train.arrow')), { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(modelDir, trainRef, { maxSteps: 4, seed: 3 });
  const runId = 'r'.repeat(240 - 64 - '.fresh-'.length - '-train'.length);
  const old = `${'c'.repeat(64)}.fresh-${runId}-train`;
  const run = (h: ReturnType<typeof host>, extra: Partial<StageContext>) =>
    trainStage.run(cfg, {
      ...testStageContext({ root: h.root, store: h.store, baseDir: dir, cacheKey: 'c'.repeat(64), runId }),
      freshTraining: true,
      ...extra,
    });
  // Host a pushes step 2; its pointer and files are then moved under the old name, as a worker before the upgrade left them.
  const stop = new AbortController();
  const progress = (p: { resume?: { latest?: string } }) => {
    if (p.resume?.latest?.endsWith('step-00000002')) stop.abort();
  };
  await assert.rejects(run(a, { signal: stop.signal, progress }), (e: unknown) => (e as Error).name === 'AbortError');
  const [hashed] = readdirSync(a.checkpoints).filter((n) => !n.endsWith('.lock'));
  const at = (key: string) => join(bucket.root, ...key.replace(/\/$/, '').split('/'));
  const [from, to] = [sharedCheckpointKeys(hashed!), sharedCheckpointKeys(old)];
  renameSync(at(from.pointer), at(to.pointer));
  renameSync(at(from.files), at(to.files));

  // Host b has none of it but a link under the old name: its training is not pulled into, nor cleared from, where that leads.
  const b = host('b');
  const elsewhere = join(dir, 'elsewhere');
  mkdirSync(elsewhere);
  writeFileSync(join(elsewhere, 'kept'), 'x');
  mkdirSync(b.checkpoints, { recursive: true });
  symlinkSync(elsewhere, join(b.checkpoints, old));
  // Its first checkpoint is far enough: it was pulled into the link by then, and resumed from.
  const first = new AbortController();
  const logs: string[] = [];
  const firstStep = (p: { resume?: { latest?: string } }) => {
    if (p.resume?.latest) first.abort();
  };
  await assert.rejects(
    run(b, { signal: first.signal, progress: firstStep, log: (m) => void logs.push(m) }),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  assert.deepEqual(readdirSync(elsewhere), ['kept'], 'trained through the link');
  assert.ok(!logs.some((m) => m.includes('named before long names were hashed')), logs.join('\n'));

  // Without the link: the shared store's checkpoint of the old name is resumed, not trained again from step 0.
  rmSync(join(b.checkpoints, old));
  const out = await run(b, { executionId: 'r-exec-2' });
  assert.equal(out.steps, 4);
  assert.equal((out.baseModel as { resumedFromStep: unknown }).resumedFromStep, 2, JSON.stringify(out.baseModel));
  assert.ok(existsSync(join(b.checkpoints, old, 'COMPLETE')), 'finished in another folder');
});
