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

function gemmModel() {
  const r = new Rng(1);
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 6]);
  // HF nn.Linear layout [out, in] consumed by Gemm transB=1.
  const w = g.initializer('fc.weight', Float32Array.from({ length: 4 * 6 }, () => r.uniform(-1, 1)), [4, 6]);
  const h = g.op('Gemm', [x, w, g.initializer('fc.bias', new Float32Array(4), [4])], { transB: 1 });
  const w2 = g.initializer('out.weight', Float32Array.from({ length: 4 * 3 }, () => r.uniform(-1, 1)), [4, 3]);
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
  assert.deepEqual(mods.map((m) => [m.module, m.inFeatures, m.outFeatures, m.weightTransposed]), [['fc', 6, 4, true], ['out', 4, 3, false]]);
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
  const prog = compileTrainStep(gemmModel(), { loss: { kind: 'mse' }, trainable: { kind: 'lora', r: 2, alpha: 4, targets: ['*.weight'] }, optimizer: { kind: 'sgd' } });
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
