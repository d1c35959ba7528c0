// A Hugging Face folder as transformers' save_pretrained writes it for users, brought to causal-LM training: weights
// sharded past max_shard_size (model.safetensors.index.json + model-0000N-of-0000M.safetensors, no model.safetensors),
// and the tokenizer mistakes users make (another model's tokenizer.json copied beside the weights).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { InputError } from '../errors.ts';
import { readSafetensors, writeSafetensors } from '../formats/safetensors.ts';
import { INDEX_FILE, readSafetensorsIndex, writeShardedSafetensors } from '../formats/safetensors-index.ts';
import { Decoder } from '../generate/decoder.ts';
import { writeHfSafetensors } from '../generate/hf-weights.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { evaluateCausalLm, trainCausalLm } from './causal-lm.ts';
import { evaluateGenerative } from './generative-eval.ts';
import { familyModelDir } from './peft-family.testing.ts';
import { referenceLoraRun } from './peft-reference.testing.ts';
import { QA_TEMPLATE, writeReversalTable } from './reversal-task.testing.ts';

const root = mkdtempSync(join(tmpdir(), 'hf-folder-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** The tiny Qwen2 fixture with its weights in shards of at most 8 KiB, as save_pretrained(max_shard_size=…) leaves them. */
async function shardedQwen2(name: string): Promise<string> {
  const dir = await familyModelDir(join(root, name), 'tiny-qwen2');
  const single = join(dir, 'model.safetensors');
  const { tensors } = readSafetensors(single);
  rmSync(single);
  writeShardedSafetensors(dir, tensors, { maxShardBytes: 8192 });
  return dir;
}

const run = (modelDir: string, name: string) =>
  referenceLoraRun({
    modelDir,
    train: writeReversalTable(join(root, `${name}-train.arrow`), 8, 1),
    maxSteps: 1,
    checkpointDir: join(root, `${name}-ck`),
    outDir: join(root, `${name}-out`),
  });

test('a sharded folder trains and exports; its manifest identifies the weights by every shard', async () => {
  const dir = await shardedQwen2('sharded');
  const shards = [...new Set(readSafetensorsIndex(join(dir, INDEX_FILE)).weightMap.values())].sort();
  assert.ok(shards.length >= 3, `${shards.length} shards`);
  // Before: the export hashed model.safetensors, which a sharded folder lacks: ENOENT after every training step.
  await trainCausalLm(run(dir, 'a'));
  const manifest = (out: string) => JSON.parse(readFileSync(join(out, 'tempered-model.json'), 'utf8')) as { baseModel: { sha256: string } };
  const sha = manifest(join(root, 'a-out')).baseModel.sha256;
  assert.match(sha, /^[0-9a-f]{64}$/);
  await exportLoadsAsHfFolder(dir, join(root, 'a-out'));

  // One changed value in the last shard is another base model.
  const last = join(dir, shards.at(-1)!);
  const file = readSafetensors(last);
  const [name, t] = [...file.tensors][0]!;
  (t.data as Float32Array)[0]! += 1;
  writeSafetensors(last, new Map([...file.tensors, [name, t]]), file.metadata);
  await trainCausalLm(run(dir, 'b'));
  assert.notEqual(manifest(join(root, 'b-out')).baseModel.sha256, sha);
});

test("training rows with token ids past config.json's vocab_size are refused by name before the first step", async () => {
  const dir = await familyModelDir(join(root, 'vocab'), 'tiny-qwen2');
  const cfgPath = join(dir, 'config.json');
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { vocab_size: number };
  // As if the weights had 40 embedding rows and another model's tokenizer.json had been copied in.
  writeFileSync(cfgPath, JSON.stringify({ ...cfg, vocab_size: 40 }));
  // Before: onnxruntime's "indices element out of data bounds" from a Gather node, retried as transient.
  await assert.rejects(
    trainCausalLm(run(dir, 'vocab')),
    (e: unknown) =>
      e instanceof InputError &&
      e.message.startsWith(`${join(dir, 'tokenizer.json')}: the training rows hold token id `) &&
      /but config\.json's vocab_size is 40: this tokenizer is not the model's/.test(e.message),
  );
  // Training rows within the 64 rows the fixture has, validation rows past them (lower-case bytes): before, the first
  // validation pass failed with the Gather's out-of-bounds error.
  writeFileSync(cfgPath, JSON.stringify(cfg));
  const validation = join(root, 'vocab-val.arrow');
  const wr = new ArrowTableWriter(validation, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: ['abc', 'xyz'], response: ['cba', 'zyx'] });
  wr.close();
  await assert.rejects(
    trainCausalLm({ ...run(dir, 'vocab-val'), validation, evalEvery: 1 }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === join(dir, 'tokenizer.json') &&
      /the validation rows hold token id \d+, but config\.json's vocab_size is 64/.test(e.message),
  );
});

test('a config.json asking for attention dropout generates and is scored (transformers runs eval mode) but is refused for training', async () => {
  const dir = await familyModelDir(join(root, 'dropout'), 'tiny-qwen2');
  const cfgPath = join(dir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), attention_dropout: 0.1 }));
  // Before: generate, chat and serve refused it too, naming attention_dropout, though no dropout applies at inference.
  const dec = await Decoder.load(dir, { threads: 1 });
  await dec.close();
  // The evaluate stage's loss of the base model (its frozen baseline) was refused the same way.
  const table = writeReversalTable(join(root, 'dropout.arrow'), 4, 1);
  const scored = await evaluateCausalLm({ model: dir, table, chat: { template: QA_TEMPLATE }, maxLength: 32, threads: 1 });
  assert.ok(Number.isFinite(scored.perplexity) && scored.tokens > 0);
  // Rows whose ids the model has no embedding for (this fixture's tokenizer is larger than its vocabulary): an input
  // error naming the tokenizer, as in training, not onnxruntime's Gather failure, which a stage retried as transient.
  await assert.rejects(
    evaluateCausalLm({ model: dir, table, template: { prompt: '{prompt}\n', addEos: true }, maxLength: 32, threads: 1 }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === `${table}: row 0` &&
      /the row holds token id \d+, but config\.json's vocab_size is 64/.test(e.message) &&
      e.hint!.includes(join(dir, 'tokenizer.json')),
  );
  // The row named is the table's, past the rows the tokenizer left out: row 0's reply alone exceeds maxLength (left
  // out, as in training), rows 1 and 2 fit, row 3's lower-case prompt reaches ids past the 64 rows. Before, the error
  // named tokenizer.json and no row; the tokenized table's row 2 is the table's row 3.
  const dropped = join(root, 'dropout-dropped.arrow');
  const wr = new ArrowTableWriter(dropped, { prompt: 'utf8', response: 'utf8', _source: 'utf8', _row: 'int32' });
  wr.writeBatch({
    prompt: ['BCD', 'BCD', 'CDF', 'bcd'],
    response: ['K'.repeat(40), 'DCB', 'FDC', 'DCB'],
    _source: ['qa.jsonl', 'qa.jsonl', 'qa.jsonl', 'qa.jsonl'],
    _row: [1, 2, 3, 4],
  });
  wr.close();
  await assert.rejects(
    evaluateCausalLm({
      model: dir,
      table: dropped,
      tableName: 'evaluate.test',
      modelName: 'evaluate.model',
      chat: { template: QA_TEMPLATE },
      maxLength: 16,
      threads: 1,
    }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.test: row 3 (qa.jsonl:4)' &&
      /^the row is one evaluate\.model cannot take: the row holds token id \d+, but config\.json's vocab_size is 64: this tokenizer is not the model's/.test(
        e.bareMessage,
      ) &&
      /put back the tokenizer files saved with these weights/.test(e.hint!),
  );
  // With generation the loss is taken on the decoder (evaluateGenerative): row 1's lower-case prompt is named the same
  // way before any row runs. Before: onnxruntime's Gather failure, a plain error the evaluate stage retried as transient.
  await assert.rejects(
    evaluateGenerative({
      model: dir,
      prompts: ['BCD', 'bcd', 'CDF'],
      references: ['DCB', 'DCB', 'FDC'],
      rendering: { chat: { template: QA_TEMPLATE } },
      maxLength: 16,
      maxNewTokens: 2,
      threads: 1,
      tableName: 'evaluate.test',
      modelName: 'evaluate.model',
    }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === 'evaluate.test: row 1' &&
      /^the row is one evaluate\.model cannot take: the row holds token id \d+, but config\.json's vocab_size is 64/.test(e.bareMessage),
  );
  // Rows that fit, padded with an id past the 64 rows (a pad_token the model has no row for): the padding is named, not
  // a row (before, the rows together were said to hold it).
  const configPath = join(dir, 'tokenizer_config.json');
  const config = readFileSync(configPath, 'utf8');
  writeFileSync(configPath, JSON.stringify({ ...JSON.parse(config), pad_token: 'z' }));
  await assert.rejects(
    evaluateCausalLm({ model: dir, table, chat: { template: QA_TEMPLATE }, maxLength: 32, threads: 1 }),
    (e: unknown) =>
      e instanceof InputError &&
      e.where === join(dir, 'tokenizer.json') &&
      /^the tokenizer pads with token id 90 \(its pad_token, else its eos_token\), but config\.json's vocab_size is 64/.test(e.bareMessage),
  );
  writeFileSync(configPath, config);
  assert.throws(() => buildCausalLmGraph(dir), /config\.json: attention_dropout: 0\.1 is not supported/);
});

/**
 * The export's weights written for transformers (model.safetensors: Hugging Face names, [out, in]) are the base's tensor
 * set, and a folder holding only them and config.json decodes as model.onnx does. transformers' own loading of such a
 * file was measured outside the suite (README, Back to transformers).
 */
async function exportLoadsAsHfFolder(baseDir: string, outDir: string): Promise<void> {
  const hfDir = join(root, 'as-hf');
  mkdirSync(hfDir);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(outDir, f), join(hfDir, f));
  writeHfSafetensors(outDir, join(hfDir, 'model.safetensors'));
  const written = readSafetensors(join(hfDir, 'model.safetensors')).tensors;
  const base = new Map<string, number[]>();
  for (const shard of new Set(readSafetensorsIndex(join(baseDir, INDEX_FILE)).weightMap.values()))
    for (const [n, t] of readSafetensors(join(baseDir, shard)).tensors) base.set(n, t.shape);
  assert.deepEqual(new Map([...written].map(([n, t]) => [n, t.shape])), new Map([...base].sort(([a], [b]) => (a < b ? -1 : 1))));

  const ids = [3, 17, 40, 9, 22, 5];
  const logits = async (dir: string) => {
    const dec = await Decoder.load(dir, { threads: 1 });
    try {
      const r = await dec.run(
        BigInt64Array.from(ids, BigInt),
        BigInt64Array.from(ids.keys(), BigInt),
        new BigInt64Array(ids.length).fill(1n),
        1,
        dec.emptyCache(1),
      );
      return Float32Array.from(r.logits);
    } finally {
      await dec.close();
    }
  };
  const [fromOnnx, fromSafetensors] = [await logits(outDir), await logits(hfDir)];
  let diff = 0;
  for (let i = 0; i < fromOnnx.length; i++) diff = Math.max(diff, Math.abs(fromOnnx[i]! - fromSafetensors[i]!));
  assert.ok(diff < 1e-5, `model.safetensors against model.onnx: max |logit difference| ${diff}`);
}
