// An encoder given a tokenizer larger than its embedding table (another model's tokenizer.json beside the weights), or
// rows longer than its positions: refused as input errors naming the folder, where onnxruntime's Gather (or Add) failed,
// which a stage retried as transient. A tokenizer with more entries than rows is fine while the text never reaches them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { trainClassifier, type TrainClassifierOptions } from './classifier.ts';
import { evaluateClassifier, frozenFeatureBaseline } from './evaluate.ts';
import { loadPredictor } from './predictor.ts';
import { syntheticClassifierTask, syntheticRows, writeTextTable } from './synthetic-text.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-classifier-vocab-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const { modelDir: miniLm, train, validation, base } = syntheticClassifierTask(root);

// The tiny tokenizer's 119 rows given MiniLM's tokenizer (30522 entries): its text reaches ids in the thousands.
const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(miniLm, f), join(small, f));
// A character MiniLM's vocabulary lacks: [CLS] [UNK] [SEP], ids 101, 100, 102, all within the 119 rows.
const unknownOnly = writeTextTable(
  join(root, 'unknown.arrow'),
  Array.from({ length: 16 }, (_, i) => ({ text: 'ꙮ'.repeat(1 + (i % 3)), label: i % 2 ? 'positive' : 'negative' })),
);

const options = (name: string, over: Partial<TrainClassifierOptions>): TrainClassifierOptions => ({
  ...base(name),
  modelDir: small,
  method: 'full',
  lr: 1e-3,
  maxSteps: 1,
  device: 'cpu',
  threads: 2,
  checkpointEvery: 0,
  evalEvery: 1,
  ...over,
});

const pastVocab = (dir: string, rows: string) => (e: unknown) =>
  e instanceof InputError &&
  e.where === join(dir, 'tokenizer.json') &&
  new RegExp(`the ${rows} hold token id \\d{3,}, but config\\.json's vocab_size is 119: this tokenizer is not the model's`).test(e.message);

test('training or validation rows with ids past the embedding rows are refused naming the tokenizer', async () => {
  // Before: onnxruntime's "indices element out of data bounds, idx=…" from a Gather node, a plain Error.
  await assert.rejects(trainClassifier(options('train-ids', { validation: undefined })), pastVocab(small, 'training rows'));
  // Training rows within the rows, validation rows past them: before, the first validation pass failed the same way.
  await assert.rejects(trainClassifier(options('val-ids', { train: unknownOnly })), pastVocab(small, 'validation rows'));
  // The evaluate stage's frozen baseline embeds with the base model and its tokenizer the same way.
  await assert.rejects(
    frozenFeatureBaseline({
      modelDir: small,
      train: unknownOnly,
      test: validation,
      labels: ['negative', 'positive'],
      pooling: 'mean',
      seed: 1,
      threads: 1,
    }),
    pastVocab(small, 'baseline rows'),
  );
});

test('a trained classifier answers texts within its rows and refuses, by input error, texts past them', async () => {
  const r = await trainClassifier(options('fits', { train: unknownOnly, validation: undefined }));
  const out = r.outDir;
  const p = await loadPredictor(out, { threads: 1 });
  try {
    assert.equal((await p.predict(['ꙮ', 'ꙮꙮ'])).length, 2);
    // Before: the Gather's plain Error, which the server and predict reported as a fault of theirs.
    await assert.rejects(p.predict(['ꙮ', 'a great day']), pastVocab(out, 'texts'));
    assert.equal((await p.predict(['ꙮ'])).length, 1, 'the predictor still answers after refusing a batch');
  } finally {
    await p.close();
  }
  await assert.rejects(evaluateClassifier({ modelFolder: out, table: validation, threads: 1 }), pastVocab(out, 'texts'));
});

test('validation rows longer than the positions the model has are refused naming maxLength', async () => {
  const dir = tinyBertDir(join(root, 'short'), 7, { ...TINY_MINILM, maxPositions: 16 });
  // Training rows of at most 4 tokens fit in 16 positions; the validation rows are up to 19 tokens, 24 once bucketed.
  const shortTrain = writeTextTable(
    join(root, 'short-train.arrow'),
    syntheticRows(64, 1).map((r) => ({
      text: r.text.split(' ').filter((w) => !['the', 'a', 'of', 'and', 'it'].includes(w))[0]!,
      label: r.label,
    })),
  );
  // Before: onnxruntime's broadcast failure of the position embeddings' Add, at the first validation pass.
  await assert.rejects(
    trainClassifier(options('positions', { modelDir: dir, train: shortTrain, validation, maxLength: 32 })),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'train.maxLength' &&
      /maxLength 32 exceeds the model's 16 positions \(config\.json's max_position_embeddings\): the validation rows are \d+ tokens long/.test(
        e.message,
      ),
  );
  // The evaluate stage's frozen baseline embeds with the base model the same way: before, the same Add failed inside
  // onnxruntime (a plain Error, which the stage retried as transient).
  await assert.rejects(
    frozenFeatureBaseline({
      modelDir: dir,
      train: shortTrain,
      test: validation,
      labels: ['negative', 'positive'],
      pooling: 'mean',
      maxLength: 32,
      seed: 1,
      threads: 1,
    }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.baseline.maxLength' &&
      /maxLength 32 exceeds the model's 16 positions \(config\.json's max_position_embeddings\): the baseline rows are \d+ tokens long/.test(
        e.message,
      ),
  );
});

test('rows whose token type ids the model has no row for are refused naming the tokenizer', async () => {
  // A post-processor that gives a single text type id 2 (as another model's template may), against type_vocab_size 2.
  const dir = tinyBertDir(join(root, 'types'), 7, TINY_MINILM);
  const tokPath = join(dir, 'tokenizer.json');
  const tok = JSON.parse(readFileSync(tokPath, 'utf8')) as { post_processor: { single: Record<string, { type_id: number }>[] } };
  for (const piece of tok.post_processor.single) for (const v of Object.values(piece)) v.type_id = 2;
  writeFileSync(tokPath, JSON.stringify(tok));
  // Before: the token-type Gather's "indices element out of data bounds, idx=2".
  await assert.rejects(
    trainClassifier(options('types', { modelDir: dir, validation: undefined })),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === tokPath &&
      /the training rows hold token type id 2, but config\.json's type_vocab_size is 2/.test(e.message),
  );
});
