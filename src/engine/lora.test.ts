import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { cloneModel } from '../onnx/ir.ts';
import { applyLora } from './lora.ts';
import { compileTrainStep } from './compile.ts';
import { exportInference, exportPeftAdapter } from './export.ts';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Rng } from './prng.ts';
import { DropoutMasker, dropoutThreshold, fillMask } from './dropout-masks.ts';

function gemmModel() {
  const r = new Rng(1);
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 6]);
  // HF nn.Linear layout [out, in] consumed by Gemm transB=1.
  const w = g.initializer(
    'fc.weight',
    Float32Array.from({ length: 4 * 6 }, () => r.uniform(-1, 1)),
    [4, 6],
  );
  const h = g.op('Gemm', [x, w, g.initializer('fc.bias', new Float32Array(4), [4])], { transB: 1 });
  const w2 = g.initializer(
    'out.weight',
    Float32Array.from({ length: 4 * 3 }, () => r.uniform(-1, 1)),
    [4, 3],
  );
  g.output(g.op('MatMul', [g.op('Relu', [h]), w2]), 'y');
  return g.build();
}

const X = Float32Array.from({ length: 5 * 6 }, (_, i) => Math.sin(i));

async function run(model: ReturnType<typeof gemmModel>) {
  const s = await ort.InferenceSession.create(encodeModel(model));
  return (await s.run({ x: new ort.Tensor('float32', X, [5, 6]) }))['y']!.data as Float32Array;
}

test('LoRA rewrite leaves the output unchanged while B is zero, and names/inits adapters as PEFT does', async () => {
  const base = gemmModel();
  const adapted = cloneModel(base);
  const mods = applyLora(adapted, { r: 2, alpha: 4, targets: ['fc.weight', 'out.weight'], seed: 7 });
  assert.deepEqual(
    mods.map((m) => [m.module, m.inFeatures, m.outFeatures, m.weightTransposed]),
    [
      ['fc', 6, 4, true],
      ['out', 4, 3, false],
    ],
  );
  assert.deepEqual(adapted.graph.initializers.get('fc.lora_A.weight')!.dims, [6, 2]);
  assert.deepEqual(adapted.graph.initializers.get('fc.lora_B.weight')!.dims, [2, 4]);
  const a = adapted.graph.initializers.get('fc.lora_A.weight')!.data as Float32Array;
  assert.ok(a.every((v) => Math.abs(v) <= 1 / Math.sqrt(6)) && a.some((v) => v !== 0), 'A is kaiming-uniform(a=√5)');
  assert.deepEqual(await run(adapted), await run(base));
  const again = cloneModel(base);
  applyLora(again, { r: 2, alpha: 4, targets: ['fc.weight', 'out.weight'], seed: 7 });
  assert.deepEqual(again.graph.initializers.get('fc.lora_A.weight')!.data, a, 'same seed, same adapter');
});

test('merged export equals the unmerged LoRA forward for Gemm (transB=1) and MatMul weights', async () => {
  const prog = compileTrainStep(gemmModel(), {
    loss: { kind: 'mse' },
    trainable: { kind: 'lora', r: 2, alpha: 4, targets: ['*.weight'] },
    optimizer: { kind: 'sgd' },
  });
  const r = new Rng(3);
  const params = new Map(prog.params.map((p) => [p.name, Float32Array.from(p.init as Float32Array, (v) => v + r.uniform(-0.5, 0.5))]));
  const unmerged = cloneModel(prog.forward);
  for (const [k, v] of params) unmerged.graph.initializers.set(k, { ...unmerged.graph.initializers.get(k)!, data: v });
  const want = await run(unmerged);
  const got = await run(exportInference(prog, params));
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(want[i]! - got[i]!) < 1e-5, `${i}: ${want[i]} vs ${got[i]}`);
  // PEFT stores lora_A [r, in] / lora_B [out, r] whatever the base layout; fan_in_fan_out only flags the base.
  const dir = join(mkdtempSync(join(tmpdir(), 'tempered-peft-')), 'adapter');
  const { config, tensors } = exportPeftAdapter(prog, params, dir, { fanInFanOut: true });
  assert.equal(config['fan_in_fan_out'], true);
  assert.deepEqual(config['target_modules'], ['fc', 'out']);
  assert.deepEqual(tensors.get('base_model.model.fc.lora_A.weight')!.shape, [2, 6]);
  assert.deepEqual(tensors.get('base_model.model.fc.lora_B.weight')!.shape, [4, 2]);
  assert.deepEqual(tensors.get('base_model.model.out.lora_B.weight')!.shape, [3, 2]);
});

test('LoRA targets that match nothing are an error that shows weight names', () => {
  assert.throws(() => applyLora(gemmModel(), { r: 2, alpha: 4, targets: ['*query.weight'] }), /match no MatMul\/Gemm weight.*fc\.weight/);
});

test('LoRA dropout: the fed keep-mask zeroes inputs of the adapter only, rescaled by 1/(1-p) at its output', async () => {
  const p = 0.25;
  const adapted = gemmModel();
  const mods = applyLora(adapted, { r: 2, alpha: 4, dropout: p, targets: ['fc.weight'], seed: 7 });
  const mask = mods[0]!.dropoutMask!;
  assert.deepEqual(mask.shape, ['batch', 6]);
  assert.equal(mask.input, 'lora_dropout_mask:fc');
  // Give B values so the adapter contributes, then compare with the same graph computed by hand.
  const bw = adapted.graph.initializers.get('fc.lora_B.weight')!;
  bw.data = Float32Array.from({ length: bw.data.length }, (_, i) => 0.1 * (i + 1));
  const keep = fillMask(new Float32Array(5 * 6), mask.threshold, 1234, 0);
  assert.ok(keep.includes(0) && keep.includes(1));
  const session = await ort.InferenceSession.create(encodeModel(adapted));
  const y = (await session.run({ x: new ort.Tensor('float32', X, [5, 6]), [mask.input]: new ort.Tensor('float32', keep, [5, 6]) }))['y']!
    .data as Float32Array;
  // Reference: the base model with fc.weight replaced per row by W + (scale/(1-p))·(A·B) applied to masked x.
  const W = adapted.graph.initializers.get('fc.weight')!.data as Float32Array; // [out 4, in 6]
  const A = adapted.graph.initializers.get('fc.lora_A.weight')!.data as Float32Array; // [6, 2]
  const B = bw.data as Float32Array; // [2, 4]
  const W2 = adapted.graph.initializers.get('out.weight')!.data as Float32Array; // [4, 3]
  const s = 4 / 2 / (1 - dropoutThreshold(p).rate);
  for (let n = 0; n < 5; n++) {
    const h = new Float64Array(4);
    for (let o = 0; o < 4; o++) {
      let v = 0;
      for (let i = 0; i < 6; i++) v += X[n * 6 + i]! * W[o * 6 + i]!;
      for (let k = 0; k < 2; k++) {
        let xa = 0;
        for (let i = 0; i < 6; i++) xa += (keep[n * 6 + i] ? X[n * 6 + i]! : 0) * A[i * 2 + k]!;
        v += s * xa * B[k * 4 + o]!;
      }
      h[o] = Math.max(0, v);
    }
    for (let c = 0; c < 3; c++) {
      let want = 0;
      for (let o = 0; o < 4; o++) want += h[o]! * W2[o * 3 + c]!;
      assert.ok(Math.abs(want - y[n * 3 + c]!) < 1e-5, `row ${n} col ${c}: ${want} vs ${y[n * 3 + c]}`);
    }
  }
});

test('LoRA dropout masks: rate within sampling error, a pure function of (step seed, module), modules independent', () => {
  const { threshold, rate } = dropoutThreshold(0.1);
  assert.equal(threshold, 6554);
  assert.ok(Math.abs(rate - 0.1) < 1 / 65536);
  const n = 1 << 20;
  const a = fillMask(new Uint8Array(n), threshold, 42, 0);
  const dropped = n - a.reduce((s, v) => s + v, 0);
  // Binomial(n, 0.1): sd ≈ 307; 5 sd.
  assert.ok(Math.abs(dropped - rate * n) < 5 * Math.sqrt(n * rate * (1 - rate)), `dropped ${dropped} of ${n}`);
  assert.deepEqual(fillMask(new Uint8Array(n), threshold, 42, 0), a);
  const b = fillMask(new Uint8Array(n), threshold, 42, 1);
  const c = fillMask(new Uint8Array(n), threshold, 43, 0);
  // Both dropped at the same place as often as independent masks would be: p² n ± 5 sd.
  for (const other of [b, c]) {
    let both = 0;
    for (let i = 0; i < n; i++) if (!a[i] && !other[i]) both++;
    const e = rate * rate * n;
    assert.ok(Math.abs(both - e) < 5 * Math.sqrt(e), `both dropped ${both}, independent ${e.toFixed(0)}`);
  }
  // Neighbouring elements are not correlated either.
  let pairs = 0;
  for (let i = 0; i + 1 < n; i += 2) if (!a[i] && !a[i + 1]) pairs++;
  const e = rate * rate * (n / 2);
  assert.ok(Math.abs(pairs - e) < 5 * Math.sqrt(e), `adjacent both dropped ${pairs}, independent ${e.toFixed(0)}`);
  assert.equal(dropoutThreshold(0).threshold, 0);
});

test('LoRA dropout mask feeds take their symbolic dims from the fed data', () => {
  const masks = [{ input: 'lora_dropout_mask:m', shape: ['batch', 'seq', 3], threshold: 100, dtype: 'float32' as const }];
  const inputs = [{ name: 'input_ids', dtype: 'int64' as const, shape: ['batch', 'seq'] }];
  const masker = new DropoutMasker(masks, inputs);
  const feeds = masker.feeds({ input_ids: new ort.Tensor('int64', new BigInt64Array(10), [2, 5]) }, 9);
  assert.deepEqual(feeds['lora_dropout_mask:m']!.dims, [2, 5, 3]);
  assert.equal(feeds['lora_dropout_mask:m']!.type, 'float32');
  assert.deepEqual(feeds['lora_dropout_mask:m']!.data, fillMask(new Float32Array(30), 100, 9, 0));
  // A shorter batch gets a mask of its own size.
  assert.deepEqual(
    masker.feeds({ input_ids: new ort.Tensor('int64', new BigInt64Array(3), [1, 3]) }, 9)['lora_dropout_mask:m']!.dims,
    [1, 3, 3],
  );
  assert.throws(() => masker.feeds({}, 9), /dim 'batch' is not a dim of any fed input/);
});

test('LoRA dropout masks are the same keep decisions in every buffer type', () => {
  const n = 10_001;
  const f32 = fillMask(new Float32Array(n), 20000, 77, 3);
  const u8 = fillMask(new Uint8Array(n), 20000, 77, 3);
  const f64 = fillMask(new Float64Array(n), 20000, 77, 3);
  assert.ok(f32.every((v) => v === 0 || v === 1) && f32.includes(0) && f32.includes(1));
  assert.deepEqual(Array.from(u8), Array.from(f32));
  assert.deepEqual(Array.from(f64), Array.from(f32));
  // Threshold 0 keeps everything; 65536 drops everything.
  assert.ok(fillMask(new Float32Array(99), 0, 1, 0).every((v) => v === 1));
  assert.ok(fillMask(new Float32Array(99), 65536, 1, 0).every((v) => v === 0));
});
