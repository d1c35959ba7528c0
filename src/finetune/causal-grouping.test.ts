// Length-grouped batches for causal LMs: each batch holds rows of similar length and is cut to its longest row
// (rounded up to 8), the data order is the encoders' seeded scheme, trimming padding leaves the numbers as they were,
// and an interrupted grouped run resumes bitwise.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { compileTrainStep } from '../engine/compile.ts';
import { Rng } from '../engine/prng.ts';
import { Trainer, type Dataset } from '../engine/trainer.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { trainCausalLm, type TrainCausalLmOptions } from './causal-lm.ts';
import { epochBatches } from './loop.ts';

const root = mkdtempSync(join(tmpdir(), 'causal-group-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const modelDir = tinyLlamaDir(join(root, 'model'), 4, { hidden: 16, layers: 1, heads: 2, kvHeads: 1, maxPositions: 64 });

// 16 short rows (a 2-letter reply) and 16 long ones (a 40-letter reply), interleaved.
function table(path: string): string {
  const rng = new Rng(2);
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < 32; i++) {
    const n = i % 2 ? 40 : 2;
    const w = Array.from({ length: n }, () => 'abcdefgh'[rng.int(8)]).join('');
    prompts.push(`say ${w.slice(0, 2)}`);
    responses.push(w);
  }
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  return path;
}
const train = table(join(root, 'train.arrow'));

const options = (name: string, over: Partial<TrainCausalLmOptions> = {}): TrainCausalLmOptions => ({
  modelDir,
  train,
  template: { prompt: '{prompt}\n', addEos: true },
  method: 'lora',
  lora: { r: 2, alpha: 4, dropout: 0.1 },
  lr: 1e-2,
  epochs: 2,
  batchSize: 8,
  schedule: 'linear',
  weightDecay: 0,
  seed: 5,
  maxLength: 64,
  device: 'cpu',
  threads: 2,
  checkpointDir: join(root, name, 'ck'),
  checkpointEvery: 0,
  outDir: join(root, name, 'out'),
  ...over,
});

test('grouped by default: short and long rows train in separate batches, each cut to its own length', async () => {
  const grouped = await trainCausalLm(options('grouped'));
  const flat = await trainCausalLm(options('flat', { groupByLength: false }));
  assert.equal(grouped.device, 'cpu', 'where the steps ran');
  const widths = (h: { seqLen?: number }[]) => h.map((s) => s.seqLen!);
  const full = Math.max(...widths(flat.history));
  assert.ok(full >= 48, `the table is ${full} wide`);
  assert.deepEqual(widths(flat.history), new Array<number>(8).fill(full), 'ungrouped batches are fed at the table width');
  // Over 2 epochs: 4 batches of short rows (prompt + 2 letters + EOS: under 16 tokens) and 4 of long ones; a batch
  // mixing the two would be fed at the full width.
  const sorted = widths(grouped.history).sort((a, b) => a - b);
  assert.deepEqual(sorted.slice(0, 4), [16, 16, 16, 16], `step widths ${widths(grouped.history)}`);
  assert.deepEqual(sorted.slice(4), [full, full, full, full]);
  assert.equal(JSON.parse(readFileSync(join(root, 'grouped', 'out', 'tempered-model.json'), 'utf8')).hyperparameters.groupByLength, true);
});

test('cutting trailing padding leaves the losses as they were (same batches, fed at full width and cut)', async () => {
  const prog = compileTrainStep(buildCausalLmGraph(modelDir).model, {
    loss: { kind: 'cross_entropy', logits: 'logits', labels: 'labels', shift: true, ignoreIndex: -100 },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw' },
  });
  // Rows of 3..13 tokens, right-padded to 24.
  const rows = 16,
    width = 24;
  const rng = new Rng(9);
  const ids = new BigInt64Array(rows * width),
    mask = new BigInt64Array(rows * width),
    labels = new BigInt64Array(rows * width).fill(-100n);
  const lengths = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    lengths[r] = 3 + rng.int(11);
    for (let j = 0; j < lengths[r]!; j++) {
      ids[r * width + j] = BigInt(rng.int(200));
      mask[r * width + j] = 1n;
      labels[r * width + j] = ids[r * width + j]!;
    }
  }
  const data: Dataset = Object.fromEntries(
    Object.entries({ input_ids: ids, attention_mask: mask, labels }).map(([k, v]) => [
      k,
      { data: v, dims: [rows, width], dtype: 'int64' as const },
    ]),
  );
  const plan = (e: number) => epochBatches({ rows, lengths }, 4, 3, e, true);
  const run = async (trim: boolean) =>
    (
      await new Trainer(prog, {
        seed: 3,
        batchSize: 4,
        maxSteps: 6,
        schedule: { kind: 'constant', lr: 1e-3 },
        threads: 1,
        epochBatches: plan,
        ...(trim ? { trimPadding: { lengths, bucket: 8 } } : {}),
      }).fit(data)
    ).history;
  const [cut, padded] = [await run(true), await run(false)];
  assert.ok(
    cut.some((h) => h.seqLen! < width),
    `some batches are cut: ${cut.map((h) => h.seqLen)}`,
  );
  for (let i = 0; i < cut.length; i++)
    assert.ok(Math.abs(cut[i]!.loss - padded[i]!.loss) < 1e-5 * padded[i]!.loss, `step ${i + 1}: ${cut[i]!.loss} vs ${padded[i]!.loss}`);
});

test('an interrupted grouped run resumes bitwise', async () => {
  const sha = (name: string) =>
    createHash('sha256')
      .update(readFileSync(join(root, name, 'out', 'model.onnx')))
      .digest('hex');
  await trainCausalLm(options('whole', { checkpointEvery: 3 }));
  const ctl = new AbortController();
  await assert.rejects(
    trainCausalLm(
      options('parts', {
        checkpointEvery: 3,
        signal: ctl.signal,
        onCheckpoint: (dir) => {
          if (dir.endsWith('step-00000003')) ctl.abort();
        },
      }),
    ),
  );
  const resumed = await trainCausalLm(options('parts', { checkpointEvery: 3, resume: true }));
  assert.equal(resumed.resumedFromStep, 3);
  assert.equal(sha('parts'), sha('whole'));
});
