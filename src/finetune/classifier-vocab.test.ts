// An encoder given a tokenizer larger than its embedding table (another model's tokenizer.json beside the weights), or
// rows longer than its positions: refused as input errors naming the folder (training) or the text's row (predict,
// evaluate, the baseline: before onnxruntime runs any of them), where onnxruntime's Gather (or Add) failed, which a stage
// retried as transient. A tokenizer with more entries than rows is fine while the text never reaches them.
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
import { UnfitTextError } from './token-ids.ts';
import { exportTinyClassifier } from '../serve/tiny-classifier.testing.ts';
import { syntheticClassifierTask, syntheticRows, writeTextTable } from './synthetic-text.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'ft-classifier-vocab-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const { modelDir: miniLm, train, validation, base } = syntheticClassifierTask(root);

// The tiny tokenizer's 119 rows given MiniLM's tokenizer (30522 entries): its text reaches ids in the thousands.
const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(miniLm, f), join(small, f));
// A character MiniLM's vocabulary lacks: [CLS] [UNK] [SEP], ids 101, 100, 102, all within the 119 rows.
const unknownRows = Array.from({ length: 16 }, (_, i) => ({ text: 'ꙮ'.repeat(1 + (i % 3)), label: i % 2 ? 'positive' : 'negative' }));
const unknownOnly = writeTextTable(join(root, 'unknown.arrow'), unknownRows);
// The same rows and then, row 16, one whose ids reach past the 119 rows: the batches before it are the model's to take.
const unfitLast = writeTextTable(join(root, 'unfit-last.arrow'), [...unknownRows, { text: 'a great day', label: 'positive' }]);

// Rows of one word (at most 4 tokens with [CLS] and [SEP]).
const shortTrain = () =>
  writeTextTable(
    join(root, 'short-train.arrow'),
    syntheticRows(64, 1).map((r) => ({
      text: r.text.split(' ').filter((w) => !['the', 'a', 'of', 'and', 'it'].includes(w))[0]!,
      label: r.label,
    })),
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
});

test("the frozen baseline refuses a row past the base model's rows, naming the row, before it embeds any", async () => {
  // The train rows fit and the test table's row 16 does not: before, every train row was embedded (minutes on a large
  // split), then the test rows' batch was refused naming tokenizer.json, with no row.
  const progress: number[] = [];
  await assert.rejects(
    frozenFeatureBaseline({
      modelDir: small,
      train: unknownOnly,
      test: unfitLast,
      testName: 'evaluate.test',
      labels: ['negative', 'positive'],
      pooling: 'mean',
      seed: 1,
      threads: 1,
      onProgress: (done) => progress.push(done),
    }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.test: row 16' &&
      /^the text holds token id \d{3,}, but config\.json's vocab_size is 119: this tokenizer is not the model's/.test(e.bareMessage) &&
      e.hint!.includes(join(small, 'tokenizer.json')),
  );
  assert.deepEqual(progress, [], 'rows were embedded before the refusal');
});

test('a trained classifier answers texts within its rows and refuses, by input error, texts past them', async () => {
  const r = await trainClassifier(options('fits', { train: unknownOnly, validation: undefined }));
  const out = r.outDir;
  const p = await loadPredictor(out, { threads: 1 });
  try {
    assert.equal((await p.predict(['ꙮ', 'ꙮꙮ'])).length, 2);
    // Before: the Gather's plain Error, which the server and predict reported as a fault of theirs.
    await assert.rejects(p.predict(['ꙮ', 'a great day']), unfitText(out, 1));
    assert.equal((await p.predict(['ꙮ'])).length, 1, 'the predictor still answers after refusing a batch');
  } finally {
    await p.close();
  }
});

const unfitText = (folder: string, index: number) => (e: unknown) =>
  e instanceof UnfitTextError &&
  e.where === folder &&
  e.index === index &&
  new RegExp(
    `^texts\\[${index}\\]: the text holds token id \\d{3,}, but config\\.json's vocab_size is 119: this tokenizer is not the model's`,
  ).test(e.bareMessage) &&
  /tokenizer files in this folder are not the ones the model was trained with/.test(e.hint!);

test('predict, logits and embed refuse a text past the rows, naming it, before onnxruntime runs any batch', async () => {
  const r = await trainClassifier(options('first', { train: unknownOnly, validation: undefined }));
  const p = await loadPredictor(r.outDir, { threads: 1, batchSize: 2 });
  try {
    // Nine batches of up to two; the unfit text is the longest, so its batch is the last: before, the eight before it ran
    // and then the refusal named tokenizer.json and no text.
    const texts = [...unknownRows.map((row) => row.text), 'a great day'];
    await assert.rejects(p.predict(texts), unfitText(r.outDir, 16));
    await assert.rejects(p.logits(texts), unfitText(r.outDir, 16));
    await assert.rejects(p.embed(texts), unfitText(r.outDir, 16));
    assert.equal(p.runs, 0, 'onnxruntime ran batches before the refusal');
    // predictEach runs the others, the unfit text left out: the eight batches.
    const each = await p.predictEach(texts);
    assert.ok('unfit' in each[16]! && each.slice(0, 16).every((x) => 'label' in x));
    assert.equal(p.runs, 8);
  } finally {
    await p.close();
  }
  // The check finds it as well with the first texts' tokens kept for the batches and the others not (keepBytes 100: 4
  // texts of 3 tokens, [CLS] [UNK] [SEP]), or none kept.
  for (const keepBytes of [100, 0]) {
    const q = await loadPredictor(r.outDir, { threads: 1, batchSize: 2, keepBytes });
    try {
      await assert.rejects(q.predict([...unknownRows.map((row) => row.text), 'a great day']), unfitText(r.outDir, 16));
      assert.equal(q.runs, 0);
      assert.equal((await q.predict(['ꙮ', 'ꙮꙮꙮ'])).length, 2);
    } finally {
      await q.close();
    }
  }
  // The evaluate stage's table: the row, the model as the pipeline calls it, and what to do.
  await assert.rejects(
    evaluateClassifier({
      modelFolder: r.outDir,
      modelName: 'evaluate.model',
      table: unfitLast,
      tableName: 'evaluate.test',
      threads: 1,
      batchSize: 2,
    }),
    (e: unknown) =>
      e instanceof InputError &&
      !(e instanceof UnfitTextError) &&
      e.where === 'evaluate.test: row 16' &&
      /^the text is one evaluate\.model cannot take: the text holds token id \d{3,}, but config\.json's vocab_size is 119/.test(
        e.bareMessage,
      ) &&
      e.hint!.includes(r.outDir),
  );
});

test('validation rows longer than the positions the model has are refused naming maxLength', async () => {
  const dir = tinyBertDir(join(root, 'short'), 7, { ...TINY_MINILM, maxPositions: 16 });
  // Training rows of at most 4 tokens fit in 16 positions; the validation rows are up to 19 tokens, 24 once bucketed.
  // Before: onnxruntime's broadcast failure of the position embeddings' Add, at the first validation pass.
  await assert.rejects(
    trainClassifier(options('positions', { modelDir: dir, train: shortTrain(), validation, maxLength: 32 })),
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
      train: shortTrain(),
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
      new RegExp(
        `maxLength 32 exceeds the model's 16 positions \\(config\\.json's max_position_embeddings\\): row \\d+ of ${validation.replace(/[.]/g, '\\.')} is (1[7-9]|2\\d) tokens long`,
      ).test(e.message),
  );
});

test("the frozen baseline pads its rows to the base model's positions at most, not to a bucket past them", async () => {
  // 12 positions, rows of at most 4 tokens, maxLength 32: the 16-token bucket was padded past the positions, and the
  // baseline refused rows that fit ('maxLength 32 exceeds the model's 12 positions: the baseline rows are 16 tokens long').
  const dir = tinyBertDir(join(root, 'twelve'), 7, { ...TINY_MINILM, maxPositions: 12 });
  const r = await frozenFeatureBaseline({
    modelDir: dir,
    train: shortTrain(),
    test: shortTrain(),
    labels: ['negative', 'positive'],
    pooling: 'mean',
    maxLength: 32,
    seed: 1,
    threads: 1,
  });
  assert.equal(r.testRows, 64);
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

test('a padding token the model has no row for is refused naming the tokenizer, by the predictor and the baseline', async () => {
  // Every text fits the 119 rows; the pad_token is an added token of id 300. Before: each text passed its check and
  // every padded batch failed onnxruntime's Gather ("idx=300"), a plain error, which evaluate retried as transient.
  const padPast = (dir: string) => {
    const tokPath = join(dir, 'tokenizer.json');
    const tok = JSON.parse(readFileSync(tokPath, 'utf8')) as { added_tokens: Record<string, unknown>[] };
    tok.added_tokens.push({
      id: 300,
      content: '[PAD2]',
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    });
    writeFileSync(tokPath, JSON.stringify(tok));
    const cfgPath = join(dir, 'tokenizer_config.json');
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), pad_token: '[PAD2]' }));
    return dir;
  };
  const refused = (dir: string) => (e: unknown) =>
    e instanceof InputError &&
    e.where === join(dir, 'tokenizer.json') &&
    /^the tokenizer pads with token id 300 \(tokenizer_config\.json's pad_token\), but config\.json's vocab_size is 119/.test(
      e.bareMessage,
    );
  const tiny = () => tinyBertDir(mkdtempSync(join(root, 'pad-')), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  const exported = padPast(await exportTinyClassifier(mkdtempSync(join(root, 'pad-export-')), { modelDir: tiny() }));
  await assert.rejects(loadPredictor(exported, { threads: 1 }), refused(exported));
  const base = padPast(tiny());
  const texts = writeTextTable(
    join(root, 'pad-rows.arrow'),
    ['good', 'a great day was had by all', 'bad', 'not good at all'].map((text, i) => ({ text, label: i % 2 ? 'positive' : 'negative' })),
  );
  await assert.rejects(
    frozenFeatureBaseline({
      modelDir: base,
      train: texts,
      test: texts,
      labels: ['negative', 'positive'],
      pooling: 'mean',
      seed: 1,
      threads: 1,
    }),
    refused(base),
  );
});
