import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainClassifier } from './classifier.ts';
import { evaluateClassifier, frozenFeatureBaseline } from './evaluate.ts';
import { loadPredictor } from './predictor.ts';
import { syntheticRows, writeTextTable } from './synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { InputError } from '../errors.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-evaluate-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyBertDir(join(root, 'model'), 7, TINY_MINILM);
const trainRows = syntheticRows(200, 1);
const train = writeTextTable(join(root, 'train.arrow'), trainRows);
const testRows = syntheticRows(60, 4);
const labels = ['negative', 'positive'];
const outDir = join(root, 'out');
await trainClassifier({
  modelDir,
  train,
  labels,
  method: 'lora',
  lora: { r: 4, alpha: 8 },
  lr: 2e-2,
  maxSteps: 24,
  batchSize: 16,
  schedule: 'constant',
  weightDecay: 0.01,
  seed: 3,
  maxLength: 32,
  pooling: 'mean',
  device: 'cpu',
  threads: 2,
  checkpointDir: join(root, 'ck'),
  checkpointEvery: 0,
  outDir,
});

test('evaluateClassifier reports the confusion of a known labelling', async () => {
  const p = await loadPredictor(outDir, { threads: 2 });
  const preds = (await p.predict(testRows.map((r) => r.text))).map((r) => r.label);
  await p.close();
  // Truth = the model's own predictions, with the first 7 flipped: exactly 7 errors, at known places.
  const flip = (l: string) => (l === 'positive' ? 'negative' : 'positive');
  const truth = preds.map((l, i) => (i < 7 ? flip(l) : l));
  const table = writeTextTable(
    join(root, 'known.arrow'),
    testRows.map((r, i) => ({ text: r.text, label: truth[i]! })),
  );
  const { metrics, predictions } = await evaluateClassifier({ modelFolder: outDir, table, threads: 2 });
  assert.deepEqual(predictions, preds);
  assert.equal(metrics.n, 60);
  assert.equal(metrics.accuracy, 53 / 60);
  const k = (t: string, q: string) => preds.filter((l, i) => truth[i] === t && l === q).length;
  assert.deepEqual(metrics.confusion, [
    [k('negative', 'negative'), k('negative', 'positive')],
    [k('positive', 'negative'), k('positive', 'positive')],
  ]);
  assert.equal(metrics.confusion[0]![1]! + metrics.confusion[1]![0]!, 7);
  for (const l of labels) assert.ok(metrics.perClass[l]!.f1 >= 0 && metrics.perClass[l]!.f1 <= 1);
});

test('evaluateClassifier names a missing column', async () => {
  const bad = writeTextTable(join(root, 'known.arrow'), testRows);
  await assert.rejects(
    evaluateClassifier({ modelFolder: outDir, table: bad, labelColumn: 'gold' }),
    (e: unknown) => e instanceof InputError && /"gold" not found/.test(e.message),
  );
});

test('evaluateClassifier names a label the model was not trained on, by the name the caller gives the table', async () => {
  const table = writeTextTable(join(root, 'three.arrow'), [...testRows.slice(0, 5), { text: 'so-so', label: 'neutral' }]);
  await assert.rejects(
    evaluateClassifier({ modelFolder: outDir, table, tableName: 'evaluate.test' }),
    (e: unknown) =>
      e instanceof InputError &&
      /label "neutral" in the table is not one of the model's labels \["negative","positive"\]/.test(e.message) &&
      e.where === 'evaluate.test (labelColumn)' &&
      /same labels as its training rows/.test(e.hint ?? ''),
  );
});

test('frozen-feature baseline: base-model embeddings + logistic regression, deterministic', async () => {
  const test = writeTextTable(join(root, 'test.arrow'), testRows);
  const run = (keepBytes?: number) =>
    frozenFeatureBaseline({ modelDir, train, test, labels, pooling: 'mean', seed: 1, maxLength: 32, threads: 2, keepBytes });
  const a = await run();
  assert.equal(a.trainRows, 200);
  assert.equal(a.testRows, 60);
  assert.equal(a.dim, 32);
  assert.equal(a.metrics.n, 60);
  assert.ok(a.metrics.accuracy > 0.5, `baseline accuracy ${a.metrics.accuracy} is not above chance`);
  // The same whether the batches take the check's tokens (a), tokenize every row again (b), or each table's first rows'
  // tokens and then tokenize the others (4,000 bytes, 2,000 a table: some 20 rows of each).
  const b = await run(0);
  assert.deepEqual(b.metrics, a.metrics);
  assert.deepEqual((await run(4000)).metrics, a.metrics);
  // Progress while it embeds: rows done of train + test, rising to all of them.
  const seen: [number, number][] = [];
  await frozenFeatureBaseline({
    modelDir,
    train,
    test,
    labels,
    pooling: 'mean',
    seed: 1,
    maxLength: 32,
    threads: 2,
    onProgress: (d, t) => seen.push([d, t]),
  });
  assert.ok(seen.length >= 2, JSON.stringify(seen));
  assert.deepEqual(seen.at(-1), [260, 260]);
  assert.ok(
    seen.every(([d], i) => i === 0 || d > seen[i - 1]![0]),
    'rises',
  );
});
