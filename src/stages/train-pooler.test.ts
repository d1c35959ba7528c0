/**
 * A pipeline's train stage offers `pooling: pooler`, the one pooling that transformers' BertForSequenceClassification
 * computes, so a classifier a pipeline trained has a route back to transformers (`tempered models pull` writes its
 * model.safetensors). Before, the stage offered only `mean` and `cls`, for which pull writes no weights. Real tiny BERT,
 * real onnxruntime training, a real folder store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { tinyBertDir, TINY_MINILM } from '../models/tiny.testing.ts';
import { writeTransformersWeights } from '../models/transformers-folder.ts';
import { withValidator } from '../spec/schema.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import type { ArtifactRef } from '../types.ts';
import { testStageContext } from './stage-context.testing.ts';
import { trainStage, type TrainConfig } from './train.ts';

test('train stage: pooling pooler validates, trains, and its export pulls into BertForSequenceClassification', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-train-pooler-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const store = new ArtifactStore(join(dir, 'store'));
  const train = await store.putFile(writeTextTable(join(dir, 'cls.arrow'), syntheticRows(32, 5)), {
    mediaType: 'application/vnd.apache.arrow.file',
  });
  const cfg = {
    model: tinyBertDir(join(dir, 'bert'), 7, TINY_MINILM),
    task: 'classification',
    train,
    labels: ['negative', 'positive'],
    method: 'full',
    lr: 1e-3,
    maxSteps: 2,
    batchSize: 8,
    maxLength: 32,
    threads: 1,
    seed: 3,
    pooling: 'pooler',
  } as TrainConfig;

  const validate = withValidator('train', trainStage.withSchema as object);
  assert.ok(validate(cfg), JSON.stringify(validate.errors));
  assert.equal(validate({ ...cfg, pooling: 'max' }), false, 'an unknown pooling is still refused');

  const out = await trainStage.run(
    cfg,
    testStageContext({ root: dir, store, baseDir: dir, cacheKey: 'p'.padEnd(64, '0'), signal: new AbortController().signal }),
  );
  const exported = await store.materializeTree(out.model as ArtifactRef, join(dir, 'export'));
  assert.equal(JSON.parse(readFileSync(join(exported, 'tempered-model.json'), 'utf8')).pooling, 'pooler');
  assert.deepEqual(await writeTransformersWeights(exported), { auto: 'AutoModelForSequenceClassification' });
  const config = JSON.parse(readFileSync(join(exported, 'config.json'), 'utf8'));
  assert.deepEqual(config.architectures, ['BertForSequenceClassification']);
  assert.deepEqual(config.id2label, { 0: 'negative', 1: 'positive' });
});
