import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileClassifier, trainClassifier, type TrainClassifierOptions } from './classifier.ts';
import { loadPredictor, padEncodings } from './predictor.ts';
import { latestCheckpoint } from './loop.ts';
import { syntheticRows, writeTextTable } from './synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { loadCheckpoint } from '../engine/checkpoint.ts';
import { createSession, toOrt } from '../engine/runtime.ts';
import { loadTokenizer } from '../models/tokenizer.ts';
import { InputError } from '../errors.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-predictor-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyBertDir(join(root, 'model'), 7, TINY_MINILM);
const train = writeTextTable(join(root, 'train.arrow'), syntheticRows(200, 1));
const texts = syntheticRows(40, 3).map((r) => r.text);
texts.push('a much longer text than the others so that it needs truncation at the maximum length of the model '.repeat(3));

const opts: TrainClassifierOptions = {
  modelDir,
  train,
  labels: ['negative', 'positive'],
  method: 'lora',
  lora: { r: 4, alpha: 8 },
  lr: 2e-2,
  maxSteps: 20,
  batchSize: 16,
  schedule: 'constant',
  weightDecay: 0.01,
  seed: 3,
  maxLength: 32,
  pooling: 'mean',
  device: 'cpu',
  threads: 2,
  checkpointDir: join(root, 'ck'),
  checkpointEvery: 20,
  outDir: join(root, 'out'),
};
await trainClassifier(opts);

test('predictor logits equal the training forward (LoRA unmerged) on the same inputs', async () => {
  // Training-side forward: the compiled eval graph, fed the trained adapter weights from the final checkpoint.
  const { program } = compileClassifier(opts);
  const ck = loadCheckpoint(latestCheckpoint(opts.checkpointDir)!);
  const session = await createSession(program.eval, { threads: 2 });
  const tok = loadTokenizer(modelDir);
  const feeds = padEncodings(
    tok,
    texts.map((t) => tok.encode(t, null, { maxLength: opts.maxLength })),
    opts.maxLength,
    8,
  );
  feeds.labels = toOrt('int64', new BigInt64Array(texts.length), [texts.length]);
  for (const p of program.params) feeds[p.name] = toOrt(p.dtype, ck.params.get(p.name)!, p.dims);
  const ref = (await session.run(feeds)).logits!.data as Float32Array;
  await session.release();

  const pred = await loadPredictor(opts.outDir, { threads: 2, batchSize: 7 });
  const got = await pred.logits(texts);
  await pred.close();
  assert.equal(got.length, ref.length);
  let max = 0;
  for (let i = 0; i < ref.length; i++) max = Math.max(max, Math.abs(got[i]! - ref[i]!));
  assert.ok(max < 1e-5, `max |predictor − training forward| = ${max}`);
  // The adapters learned something: logits are not those of the untrained head.
  assert.ok(ref.some((v) => Math.abs(v) > 0.1));
});

test('predict: probabilities per label, argmax label, deterministic and order-independent', async () => {
  const p = await loadPredictor(opts.outDir, { threads: 2 });
  assert.deepEqual(p.labels, ['negative', 'positive']);
  assert.match(p.id, /^[0-9a-f]{64}$/);
  const a = await p.predict(texts);
  const again = await p.predict(texts);
  assert.deepEqual(a, again);
  for (const r of a) {
    const s = r.scores.negative! + r.scores.positive!;
    assert.ok(Math.abs(s - 1) < 1e-12);
    assert.equal(r.label, r.scores.positive! > r.scores.negative! ? 'positive' : 'negative');
  }
  const reversed = await p.predict([...texts].reverse());
  reversed.reverse().forEach((r, i) => {
    assert.equal(r.label, a[i]!.label);
    assert.ok(Math.abs(r.scores.positive! - a[i]!.scores.positive!) < 1e-6);
  });
  const e = await p.embed(texts.slice(0, 3));
  assert.equal(e.dim, 32);
  assert.equal(e.data.length, 96);
  assert.deepEqual(await p.predict([]), []);
  await p.close();
});

// The up-front check's encodings serve the batches (each text tokenized once) up to keepBytes, the texts past them
// tokenized again in their batch: the logits must be the same bit for bit whichever way a text's tokens came, with batches
// (sorted by length) mixing kept texts and texts past the budget, and nothing kept by one call may serve the next.
test('predict tokenizes each text once where its tokens fit keepBytes, and again past them, with the same logits', async () => {
  const tok = loadTokenizer(opts.outDir);
  const tokens = texts.slice(0, 20).reduce((n, t) => n + tok.encode(t, null, { maxLength: opts.maxLength }).inputIds.length, 0);
  const none = await loadPredictor(opts.outDir, { threads: 2, batchSize: 7, keepBytes: 0 });
  const some = await loadPredictor(opts.outDir, { threads: 2, batchSize: 7, keepBytes: tokens * 5 + 20 * 8 });
  const all = await loadPredictor(opts.outDir, { threads: 2, batchSize: 7 });
  try {
    const ref = await none.logits(texts);
    assert.equal(none.tokenized, 2 * texts.length);
    assert.deepEqual(await some.logits(texts), ref);
    assert.equal(some.tokenized, 2 * texts.length - 20, 'the first 20 texts are kept, the others tokenized twice');
    assert.deepEqual(await all.logits(texts), ref);
    assert.equal(all.tokenized, texts.length);
    // Other texts at the same places: the second call's batches take its own texts' tokens.
    const other = [...texts].reverse();
    const otherRef = await none.logits(other);
    assert.deepEqual(await some.logits(other), otherRef);
    assert.deepEqual(await all.logits(other), otherRef);
    assert.deepEqual(
      (await all.predict(other)).map((p) => p.label),
      (await none.predict(other)).map((p) => p.label),
    );
  } finally {
    await Promise.all([none.close(), some.close(), all.close()]);
  }
});

test('a folder that is not an export is an InputError', async () => {
  await assert.rejects(
    loadPredictor(modelDir),
    (e: unknown) => e instanceof InputError && /tempered-model\.json not found/.test(e.message),
  );
});
