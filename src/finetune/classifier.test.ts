import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileClassifier, trainClassifier, loraTargetPatterns, type TrainClassifierOptions } from './classifier.ts';
import { syntheticClassifierTask, syntheticRows, writeTextTable } from './synthetic-text.testing.ts';
import { readSafetensorsHeader } from '../formats/safetensors.ts';
import { InputError } from '../errors.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-classifier-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const { modelDir, base } = syntheticClassifierTask(root);
// Frozen random features carry a weak signal: the head-only case needs more rows to show it reliably.
const bigTrain = writeTextTable(join(root, 'train-big.arrow'), syntheticRows(600, 1));
const bigVal = writeTextTable(join(root, 'val-big.arrow'), syntheticRows(400, 2));

function options(name: string, over: Partial<TrainClassifierOptions>): TrainClassifierOptions {
  return {
    ...base(name),
    method: 'lora',
    lora: { r: 4, alpha: 8 },
    lr: 2e-2,
    epochs: 3,
    device: 'cpu',
    threads: 2,
    checkpointEvery: 0,
    evalEvery: 16,
    ...over,
  };
}

/** Mean training loss over the first and last `k` steps. */
function lossDrop(history: { loss: number }[], k = 8): [number, number] {
  const mean = (a: { loss: number }[]) => a.reduce((s, h) => s + h.loss, 0) / a.length;
  return [mean(history.slice(0, k)), mean(history.slice(-k))];
}

// Chance is 0.5 on the balanced synthetic task; each method must clearly learn it.
for (const [method, over, minAcc] of [
  [
    'lora',
    { lora: { r: 4, alpha: 8 }, lr: 2e-2, epochs: 4, evalEvery: 64, peftBase: { name: 'org/tiny-bert', revision: 'b'.repeat(40) } },
    0.8,
  ],
  ['full', { lr: 3e-3, epochs: 4, evalEvery: 64 }, 0.8],
  ['head', { lr: 0.05, epochs: 20, train: bigTrain, validation: bigVal, evalEvery: 100 }, 0.65],
] as const) {
  test(`${method}: loss falls and validation accuracy reaches ${minAcc}`, async () => {
    const r = await trainClassifier(options(method, { method, ...over }));
    const [first, last] = lossDrop(r.history);
    assert.ok(last < first - (method === 'head' ? 0.08 : 0.15), `loss should fall: first ${first.toFixed(3)}, last ${last.toFixed(3)}`);
    const val = r.history.at(-1)!.val!;
    assert.ok(val.accuracy >= minAcc, `validation accuracy ${val.accuracy} < ${minAcc}`);
    assert.equal(r.steps, r.history.length);
    assert.equal(r.device, 'cpu', 'where the steps ran');
    const out = join(root, method, 'out');
    for (const f of ['model.onnx', 'tokenizer.json', 'config.json', 'labels.json', 'tempered-model.json'])
      assert.ok(existsSync(join(out, f)), f);
    const manifest = JSON.parse(readFileSync(join(out, 'tempered-model.json'), 'utf8'));
    assert.equal(manifest.method, method);
    assert.deepEqual(manifest.labels, ['negative', 'positive']);
    assert.equal(manifest.baseModel.name, 'tempered/tiny-random-bert');
    assert.equal(existsSync(join(out, 'adapter', 'adapter_model.safetensors')), method === 'lora');
    if (method === 'lora') {
      const h = readSafetensorsHeader(join(out, 'adapter', 'adapter_model.safetensors'));
      assert.deepEqual(h.tensors.get('base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight')?.shape, [4, 32]);
      assert.deepEqual(h.tensors.get('base_model.model.bert.encoder.layer.1.attention.self.value.lora_B.weight')?.shape, [32, 4]);
      assert.deepEqual(h.tensors.get('base_model.model.classifier.weight')?.shape, [2, 32]);
      const cfg = JSON.parse(readFileSync(join(out, 'adapter', 'adapter_config.json'), 'utf8'));
      assert.deepEqual(cfg.target_modules, ['query', 'value']);
      assert.equal(cfg.r, 4);
      assert.deepEqual([cfg.base_model_name_or_path, cfg.revision], ['org/tiny-bert', 'b'.repeat(40)]);
    }
  });
}

test('LoRA on chosen layers adapts only those layers, and backprop stops below them', () => {
  assert.deepEqual(loraTargetPatterns(undefined, undefined), ['*.query.weight', '*.value.weight']);
  assert.deepEqual(loraTargetPatterns(['query'], [1]), ['encoder.layer.1.*.query.weight']);
  const compiled = (layers: number[]) =>
    compileClassifier({
      modelDir,
      labels: ['a', 'b'],
      method: 'lora',
      lora: { r: 4, alpha: 8, layers },
      pooling: 'mean',
      seed: 1,
      weightDecay: 0,
    }).program;
  const top = compiled([1]),
    bottom = compiled([0]);
  assert.deepEqual(
    top.params
      .map((p) => p.name)
      .filter((n) => n.includes('lora'))
      .sort(),
    [
      'encoder.layer.1.attention.self.query.lora_A.weight',
      'encoder.layer.1.attention.self.query.lora_B.weight',
      'encoder.layer.1.attention.self.value.lora_A.weight',
      'encoder.layer.1.attention.self.value.lora_B.weight',
    ],
  );
  // Adapters only in the top layer: the backward pass has no nodes for layer 0.
  const gradNodes = (p: typeof top) => p.step.graph.nodes.filter((n) => n.name.startsWith('grad_')).length;
  assert.ok(gradNodes(top) < gradNodes(bottom) * 0.75, `grad nodes: top-only ${gradNodes(top)}, bottom ${gradNodes(bottom)}`);
});

test('early stopping keeps the best step and exports its weights', async () => {
  const r = await trainClassifier(options('early', { lr: 0.3, epochs: 4, evalEvery: 4, earlyStopping: { metric: 'loss', patience: 2 } }));
  assert.ok(r.bestStep !== undefined);
  const evals = r.history.filter((h) => h.val);
  const best = evals.reduce((a, b) => (b.val!.loss < a.val!.loss ? b : a));
  assert.equal(r.bestStep, best.step);
  // Stopped once `patience` evaluations in a row failed to improve.
  assert.equal(evals.at(-1)!.step - best.step, 2 * 4);
});

test('bad options are InputErrors naming the field', async () => {
  await assert.rejects(trainClassifier(options('bad1', { lr: 0 })), (e: unknown) => e instanceof InputError && /train\.lr/.test(e.message));
  await assert.rejects(
    trainClassifier(options('bad2', { labels: ['a'] })),
    (e: unknown) => e instanceof InputError && /train\.labels/.test(e.message),
  );
  await assert.rejects(
    trainClassifier(options('bad3', { labels: ['neg', 'pos'] })),
    // Named as the pipeline holds it (the stage adapter makes it stages.<id>.with.labels), not by a store path.
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'train.labels' &&
      /^train\.labels: the train table has label "(positive|negative)" \(row \d+\), which is not one of these labels \["neg","pos"\]$/.test(
        e.message,
      ),
  );
  await assert.rejects(
    trainClassifier(options('bad4', { lora: { r: 4, alpha: 8, targets: ['nosuchmodule'] } })),
    (e: unknown) => e instanceof InputError && /lora\.targets/.test(e.message),
  );
  assert.equal(existsSync(join(root, 'bad3', 'out')), false);
  // A label the training rows never show (the split put a rare label's rows elsewhere).
  await assert.rejects(
    trainClassifier(options('bad5', { labels: ['negative', 'positive', 'neutral'] })),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'train.labels' &&
      /the training table has no rows labelled "neutral" \(of \d+ rows\); a classifier cannot learn a label it never sees/.test(e.message),
  );
  assert.equal(existsSync(join(root, 'bad5', 'out')), false);
});
