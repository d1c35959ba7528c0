import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as ort from 'onnxruntime-node';
import { compileTrainStep } from './compile.ts';
import { StepRunner } from './step-runner.ts';
import { buildTinyEncoder } from './tiny-encoder.ts';
import { tokenTask } from './synthetic.ts';
import { toOrt } from './runtime.ts';
import { allocate, type TypedArray } from '../onnx/dtype.ts';

const CFG = { vocab: 12, hidden: 16, heads: 2, intermediate: 32, layers: 1, seq: 8, classes: 2, seed: 4 };
const prog = compileTrainStep(buildTinyEncoder(CFG), { loss: { kind: 'cross_entropy' }, trainable: { kind: 'full' }, optimizer: { kind: 'adamw' }, clipNorm: 1 });
const data = tokenTask({ n: 8, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
const batch = (): Record<string, ort.Tensor> => Object.fromEntries(prog.dataInputs.map((d) => [d.name, toOrt(data[d.name]!.dtype, data[d.name]!.data, data[d.name]!.dims)]));

function fresh(): { params: Map<string, TypedArray>; state: Map<string, TypedArray> } {
  return {
    params: new Map(prog.params.map((p) => [p.name, p.init.slice()])),
    state: new Map(prog.state.map((s) => [s.input, allocate(s.dtype, s.dims.reduce((a, b) => a * b, 1))])),
  };
}

test('accumulating two copies of a micro-batch gives the same step as the fused graph on it', async () => {
  const fused = fresh(), accumulated = fresh();
  const a = await StepRunner.open(prog, fused.params, fused.state, 1, { threads: 1 });
  const b = await StepRunner.open(prog, accumulated.params, accumulated.state, 2, { threads: 1 });
  for (let step = 1; step <= 3; step++) {
    const ra = await a.run(batch, 1e-2, step);
    const rb = await b.run(batch, 1e-2, step);
    assert.ok(Math.abs(ra.loss - rb.loss) < 1e-6, `step ${step} loss ${ra.loss} vs ${rb.loss}`);
    assert.ok(Math.abs(ra.gradNorm - rb.gradNorm) < 1e-5 && ra.gradNorm > 0, `grad norm ${ra.gradNorm} vs ${rb.gradNorm}`);
  }
  let moved = 0;
  for (const p of prog.params) {
    const x = fused.params.get(p.name) as Float32Array, y = accumulated.params.get(p.name) as Float32Array;
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(x[i]! - y[i]!) < 1e-6, `${p.name}[${i}]: ${x[i]} vs ${y[i]}`);
      if (x[i] !== p.init[i]) moved++;
    }
  }
  assert.ok(moved > 1000, `only ${moved} weights changed`);
  await a.release();
  await b.release();
});

test('a step whose loss is not finite leaves weights and optimizer state as they were', async () => {
  const { params, state } = fresh();
  const runner = await StepRunner.open(prog, params, state, 1, { threads: 1 });
  await runner.run(batch, 1e-2, 1);
  const bias = params.get('classifier.bias')!.slice() as Float32Array;
  bias.fill(Number.NaN);
  params.set('classifier.bias', bias);
  const before = new Map([...params, ...state]);
  const r = await runner.run(batch, 1e-2, 2);
  assert.ok(Number.isNaN(r.loss));
  for (const [k, v] of [...params, ...state]) assert.equal(v, before.get(k), `${k} was replaced`);
  await runner.release();
});
