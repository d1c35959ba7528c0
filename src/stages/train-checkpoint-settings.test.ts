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

test('a checkpoint of other settings under the work key is refused naming them and the shared copy to delete', async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-train-settings-'));
  try {
    const store = new ArtifactStore(join(root, 'store'), { remote: new FolderBackend(join(root, 'shared')) });
    const train = await store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(48, 5)), { mediaType: MEDIA.arrow });
    const model = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
    const cfg = (lr: number) => tinyClassifierTrainConfig(model, train, { lr, maxSteps: 4, checkpointEvery: 2 });
    const key = 'a'.repeat(64);
    // A run of this work stopped after its step-2 checkpoint, which is in the shared store too.
    const stop = new AbortController();
    const progress = (p: { resume?: { latest?: string } }) => {
      if (p.resume?.latest?.endsWith('step-00000002')) stop.abort();
    };
    await assert.rejects(
      trainStage.run(cfg(1e-2), testStageContext({ root, store, baseDir: root, cacheKey: key, signal: stop.signal, progress })),
      (e: unknown) => (e as Error).name === 'AbortError',
    );
    // The same key with another learning rate (as another tempered version's defaults would give).
    await assert.rejects(trainStage.run(cfg(3e-3), testStageContext({ root, store, baseDir: root, cacheKey: key })), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, /different training settings, model or data \(checkpoint → now\):\n {2}hyper\.lr: 0\.01 → 0\.003$/);
      assert.match(
        String(e.hint),
        new RegExp(`delete ${join(root, 'checkpoints', key)} .*checkpoints/${key}\\.json and checkpoint-files/${key}/`),
      );
      return true;
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test("a --no-cache run's own checkpoint of other settings is refused naming the bucket keys its copy is under (a long name's hash)", async () => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-train-settings-'));
  try {
    const store = new ArtifactStore(join(root, 'store'), { remote: new FolderBackend(join(root, 'shared')) });
    const train = await store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(48, 5)), { mediaType: MEDIA.arrow });
    const model = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
    const cfg = (lr: number) => tinyClassifierTrainConfig(model, train, { lr, maxSteps: 4, checkpointEvery: 2 });
    const key = 'b'.repeat(64);
    // As submitRun names it for a run id of 40 characters or more: the folder's name is over the 128 characters a
    // bucket key segment takes as it is.
    const ownCheckpoints = `${'n'.repeat(40)}-0a1b2c3d4e5f`;
    const name = `${key}.fresh-${ownCheckpoints}-train`;
    const hashed = createHash('sha256').update(name).digest('hex');
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
    await assert.rejects(
      trainStage.run(cfg(3e-3), { ...testStageContext({ root, store, baseDir: root, cacheKey: key }), ownCheckpoints }),
      (e: unknown) => {
        assert.ok(e instanceof InputError);
        assert.match(e.message, /hyper\.lr: 0\.01 → 0\.003$/);
        assert.match(
          String(e.hint),
          new RegExp(`delete ${join(root, 'checkpoints', name)} .*checkpoints/${hashed}\\.json and checkpoint-files/${hashed}/`),
        );
        return true;
      },
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
