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
import { compileTrainStep, gradName, LOSS_OUTPUT } from '../engine/compile.ts';
import { Rng } from '../engine/prng.ts';
import { encodeModel } from '../onnx/proto.ts';
import type { Model } from '../onnx/ir.ts';
import { buildClassifierGraph } from './bert.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { tinyBertDir, tinyGpt2Dir, tinyLlamaDir } from './tiny.ts';

async function check(model: Model, data: Record<string, { data: BigInt64Array; dims: number[] }>, causal: boolean, seed: number): Promise<{ rel: number; checked: number }> {
  const prog = compileTrainStep(model, { loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: causal }, trainable: { kind: 'full' }, optimizer: { kind: 'sgd' } });
  const values = new Map(prog.params.map((p) => [p.name, Float32Array.from(p.init as Float32Array)]));
  const feeds = () => {
    const f: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(data)) f[k] = new ort.Tensor('int64', v.data, v.dims);
    for (const p of prog.params) f[p.name] = new ort.Tensor('float32', values.get(p.name)!, p.dims);
    return f;
  };
  const gs = await ort.InferenceSession.create(encodeModel(prog.grad), { intraOpNumThreads: 1 });
  const es = await ort.InferenceSession.create(encodeModel(prog.eval), { intraOpNumThreads: 1 });
  const grads = await gs.run(feeds());
  const rng = new Rng(seed);
  const h = 1e-2;
  let diff2 = 0, na = 0, nn = 0, checked = 0;
  for (const p of prog.params) {
    const v = values.get(p.name)!;
    const a = grads[gradName(p.name)]!.data as Float32Array;
    // Two elements per tensor, plus the largest-gradient one so every check has signal.
    let big = 0;
    for (let i = 1; i < a.length; i++) if (Math.abs(a[i]!) > Math.abs(a[big]!)) big = i;
    for (const i of [big, Math.floor(rng.next() * v.length), Math.floor(rng.next() * v.length)]) {
      const o = v[i]!;
      v[i] = o + h;
      const lp = Number((await es.run(feeds()))[LOSS_OUTPUT]!.data[0]);
      v[i] = o - h;
      const lm = Number((await es.run(feeds()))[LOSS_OUTPUT]!.data[0]);
      v[i] = o;
      const fd = (lp - lm) / (2 * h);
      diff2 += (a[i]! - fd) ** 2;
      na += a[i]! ** 2;
      nn += fd ** 2;
      checked++;
    }
  }
  await gs.release();
  await es.release();
  return { rel: Math.sqrt(diff2) / (Math.sqrt(na) + Math.sqrt(nn)), checked };
}

const ids = (rows: number[][]) => ({ data: BigInt64Array.from(rows.flat(), BigInt), dims: [rows.length, rows[0]!.length] });

test('GPT-2, LLaMA and BERT graphs: engine gradients match finite differences', async () => {
  const base = mkdtempSync(join(tmpdir(), 'grad-'));
  const tokens = [[72, 101, 108, 108, 111, 44], [116, 104, 101, 32, 0, 0]];
  const mask = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]];
  const labels = tokens.map((r, i) => r.map((t, j) => (mask[i]![j] ? t : -100)));
  for (const [name, dir] of [['gpt2', tinyGpt2Dir(join(base, 'g'), 11, { hidden: 8, layers: 1 })], ['llama', tinyLlamaDir(join(base, 'l'), 12, { hidden: 8, layers: 1, heads: 2, kvHeads: 1 })]] as const) {
    const r = await check(buildCausalLmGraph(dir).model, { input_ids: ids(tokens), attention_mask: ids(mask), labels: ids(labels) }, true, 3);
    assert.ok(r.rel < 2e-2, `${name}: relative error ${r.rel} over ${r.checked} elements`);
    if (process.env.TEMPERED_VERBOSE) console.log(name, r);
  }
  const bert = tinyBertDir(join(base, 'b'), 13, { hidden: 8, layers: 1 });
  const r = await check(buildClassifierGraph(bert, { numLabels: 3, pooling: 'mean', seed: 1 }).model,
    { input_ids: ids([[2, 10, 20, 3], [2, 30, 3, 0]]), attention_mask: ids([[1, 1, 1, 1], [1, 1, 1, 0]]), token_type_ids: ids([[0, 0, 0, 0], [0, 0, 0, 0]]), labels: ids([[2], [0]]).data.length ? { data: BigInt64Array.from([2n, 0n]), dims: [2] } : ids([[0]]) }, false, 4);
  assert.ok(r.rel < 2e-2, `bert: relative error ${r.rel} over ${r.checked} elements`);
  if (process.env.TEMPERED_VERBOSE) console.log('bert', r);
  rmSync(base, { recursive: true });
});
