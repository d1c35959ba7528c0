/**
 * The architectures' graphs are trainable by the engine: autodiff gradients of the whole model
 * (cross-entropy on logits) agree with central finite differences on sampled weight elements of every
 * parameter tensor. float32 throughout (onnxruntime's CPU build has no double Erf/LayerNormalization), so
 * the step and tolerance are sized for float32 rounding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { compileTrainStep } from '../engine/compile.ts';
import { largestAndRandom, programGradCheck } from '../engine/gradcheck.testing.ts';
import { Rng } from '../engine/prng.ts';
import type { Model } from '../onnx/ir.ts';
import { buildClassifierGraph } from './bert.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { tinyBertDir, tinyGpt2Dir, tinyLlamaDir } from './tiny.testing.ts';

async function check(
  model: Model,
  data: Record<string, { data: BigInt64Array; dims: number[] }>,
  causal: boolean,
  seed: number,
): Promise<{ rel: number; checked: number }> {
  const prog = compileTrainStep(model, {
    loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: causal },
    trainable: { kind: 'full' },
    optimizer: { kind: 'sgd' },
  });
  const rng = new Rng(seed);
  const feeds = Object.fromEntries(Object.entries(data).map(([k, v]) => [k, new ort.Tensor('int64', v.data, v.dims)]));
  return programGradCheck(prog, feeds, {
    dtype: 'float32',
    h: 1e-2,
    threads: 1,
    // Two elements per tensor, plus the largest-gradient one so every check has signal.
    pick: largestAndRandom(rng, 2),
  });
}

const ids = (rows: number[][]) => ({ data: BigInt64Array.from(rows.flat(), BigInt), dims: [rows.length, rows[0]!.length] });

test('GPT-2, LLaMA (llama, qwen2, mistral) and BERT graphs: engine gradients match finite differences', async () => {
  const base = mkdtempSync(join(tmpdir(), 'grad-'));
  const tokens = [
    [72, 101, 108, 108, 111, 44],
    [116, 104, 101, 32, 0, 0],
  ];
  const mask = [
    [1, 1, 1, 1, 1, 1],
    [1, 1, 1, 1, 0, 0],
  ];
  const labels = tokens.map((r, i) => r.map((t, j) => (mask[i]![j] ? t : -100)));
  for (const [name, dir] of [
    ['gpt2', tinyGpt2Dir(join(base, 'g'), 11, { hidden: 8, layers: 1 })],
    ['llama', tinyLlamaDir(join(base, 'l'), 12, { hidden: 8, layers: 1, heads: 2, kvHeads: 1 })],
    // q/k/v biases; a sliding window of 3 on rows of 6 (its bias is a constant of the graph: no gradient of its own).
    ['qwen2', tinyLlamaDir(join(base, 'q'), 14, { hidden: 8, layers: 1, heads: 2, kvHeads: 1, modelType: 'qwen2' })],
    ['mistral', tinyLlamaDir(join(base, 'm'), 15, { hidden: 8, layers: 1, heads: 2, kvHeads: 1, modelType: 'mistral', slidingWindow: 3 })],
  ] as const) {
    const r = await check(
      buildCausalLmGraph(dir).model,
      { input_ids: ids(tokens), attention_mask: ids(mask), labels: ids(labels) },
      true,
      3,
    );
    assert.ok(r.rel < 2e-2, `${name}: relative error ${r.rel} over ${r.checked} elements`);
    if (process.env.TEMPERED_VERBOSE) console.log(name, r);
  }
  const bert = tinyBertDir(join(base, 'b'), 13, { hidden: 8, layers: 1 });
  const r = await check(
    buildClassifierGraph(bert, { numLabels: 3, pooling: 'mean', seed: 1 }).model,
    {
      input_ids: ids([
        [2, 10, 20, 3],
        [2, 30, 3, 0],
      ]),
      attention_mask: ids([
        [1, 1, 1, 1],
        [1, 1, 1, 0],
      ]),
      token_type_ids: ids([
        [0, 0, 0, 0],
        [0, 0, 0, 0],
      ]),
      labels: { data: BigInt64Array.from([2n, 0n]), dims: [2] },
    },
    false,
    4,
  );
  assert.ok(r.rel < 2e-2, `bert: relative error ${r.rel} over ${r.checked} elements`);
  if (process.env.TEMPERED_VERBOSE) console.log('bert', r);
  rmSync(base, { recursive: true });
});
