/**
 * A train stage that finds, under its work's key, a checkpoint written with other settings refuses it naming the
 * settings that differ, and with a shared store says where the store keeps its copy (deleting the local folder alone
 * would not do: the next attempt fetches it back). Real tiny MiniLM, real onnxruntime, a folder as the shared store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import { MEDIA } from '../types.ts';
import { trainStage } from './train.ts';
import { tinyClassifierTrainConfig } from './train-config.testing.ts';
import { testStageContext } from './stage-context.testing.ts';

/**
 * A work of key `key` stopped after its step-2 checkpoint (in the shared store too), run again with another learning
 * rate (as another tempered version's defaults would give): what that second run rejects with.
 */
async function rerunWithOtherLr(root: string, key: string, ownCheckpoints?: string): Promise<unknown> {
  const store = new ArtifactStore(join(root, 'store'), { remote: new FolderBackend(join(root, 'shared')) });
  const train = await store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(48, 5)), { mediaType: MEDIA.arrow });
  const model = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const cfg = (lr: number) => tinyClassifierTrainConfig(model, train, { lr, maxSteps: 4, checkpointEvery: 2 });
  const stop = new AbortController();
  const progress = (p: { resume?: { latest?: string } }) => {
    if (p.resume?.latest?.endsWith('step-00000002')) stop.abort();
  };
  await assert.rejects(
    trainStage.run(cfg(1e-2), {
      ...testStageContext({ root, store, baseDir: root, cacheKey: key, signal: stop.signal, progress }),
      ownCheckpoints,
    }),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  return trainStage.run(cfg(3e-3), { ...testStageContext({ root, store, baseDir: root, cacheKey: key }), ownCheckpoints }).then(
    () => assert.fail('the checkpoint of other settings was taken'),
    (e: unknown) => e,
  );
}

/** The refusal names the learning rate that differs, the local folder and the bucket keys of the shared copy. */
function assertRefusedNaming(e: unknown, root: string, folder: string, bucketKey: string): asserts e is InputError {
  assert.ok(e instanceof InputError, String(e));
  assert.match(e.message, /hyper\.lr: 0\.01 → 0\.003$/);
  assert.match(
    String(e.hint),
    new RegExp(`delete ${join(root, 'checkpoints', folder)} .*checkpoints/${bucketKey}\\.json and checkpoint-files/${bucketKey}/`),
  );
}

test('a checkpoint of other settings under the work key is refused naming them and the shared copy to delete', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-train-settings-'));
  try {
    const key = 'a'.repeat(64);
    const e = await rerunWithOtherLr(root, key);
    assertRefusedNaming(e, root, key, key);
    assert.match(e.message, /different training settings, model or data \(checkpoint → now\):\n {2}hyper\.lr: 0\.01 → 0\.003$/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a --no-cache run's own checkpoint of other settings is refused naming the bucket keys its copy is under (a long name's hash)", async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-train-settings-'));
  try {
    const key = 'b'.repeat(64);
    // As submitRun names it for a run id of 40 characters or more: the folder's name is over the 128 characters a
    // bucket key segment takes as it is.
    const ownCheckpoints = `${'n'.repeat(40)}-0a1b2c3d4e5f`;
    const name = `${key}.fresh-${ownCheckpoints}-train`;
    const hashed = createHash('sha256').update(name).digest('hex');
    assertRefusedNaming(await rerunWithOtherLr(root, key, ownCheckpoints), root, name, hashed);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
