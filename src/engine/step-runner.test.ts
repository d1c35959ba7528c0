import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as ort from 'onnxruntime-node';
import { compileTrainStep } from './compile.ts';
import { defaultStepsPerRun, RunSizer, StepRunner, stepsThisRun } from './step-runner.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';
import { toOrt } from './runtime.ts';
import { allocate, type TypedArray } from '../onnx/dtype.ts';

const CFG = { vocab: 12, hidden: 16, heads: 2, intermediate: 32, layers: 1, seq: 8, classes: 2, seed: 4 };
const prog = compileTrainStep(buildTinyEncoder(CFG), {
  loss: { kind: 'cross_entropy' },
  trainable: { kind: 'full' },
  optimizer: { kind: 'adamw' },
  clipNorm: 1,
});
const data = tokenTask({ n: 8, seq: CFG.seq, vocab: CFG.vocab, seed: 1, task: 'contains' });
const batch = (): Record<string, ort.Tensor> =>
  Object.fromEntries(prog.dataInputs.map((d) => [d.name, toOrt(data[d.name]!.dtype, data[d.name]!.data, data[d.name]!.dims)]));

function fresh(): { params: Map<string, TypedArray>; state: Map<string, TypedArray> } {
  return {
    params: new Map(prog.params.map((p) => [p.name, p.init.slice()])),
    state: new Map(
      prog.state.map((s) => [
        s.input,
        allocate(
          s.dtype,
          s.dims.reduce((a, b) => a * b, 1),
        ),
      ]),
    ),
  };
}

test('accumulating two copies of a micro-batch gives the same step as the fused graph on it', async () => {
  const fused = fresh(),
    accumulated = fresh();
  const a = await StepRunner.open(prog, fused.params, fused.state, { accumulation: 1, stepsPerRun: 1, threads: 1 });
  const b = await StepRunner.open(prog, accumulated.params, accumulated.state, { accumulation: 2, stepsPerRun: 1, threads: 1 });
  for (let step = 1; step <= 3; step++) {
    const [ra] = await a.run(batch, [1e-2], step);
    const [rb] = await b.run(batch, [1e-2], step);
    assert.ok(ra && rb && Math.abs(ra.loss - rb.loss) < 1e-6, `step ${step} loss ${ra?.loss} vs ${rb?.loss}`);
    assert.ok(Math.abs(ra.gradNorm - rb.gradNorm) < 1e-5 && ra.gradNorm > 0, `grad norm ${ra.gradNorm} vs ${rb.gradNorm}`);
  }
  let moved = 0;
  for (const p of prog.params) {
    const x = fused.params.get(p.name) as Float32Array,
      y = accumulated.params.get(p.name) as Float32Array;
    for (let i = 0; i < x.length; i++) {
      assert.ok(Math.abs(x[i]! - y[i]!) < 1e-6, `${p.name}[${i}]: ${x[i]} vs ${y[i]}`);
      if (x[i] !== p.init[i]) moved++;
    }
  }
  assert.ok(moved > 1000, `only ${moved} weights changed`);
  await a.release();
  await b.release();
});

test('a run whose loss is not finite leaves weights and optimizer state as they were (one step per run, and a Loop run)', async () => {
  for (const perRun of [1, 2]) {
    const { params, state } = fresh();
    const runner = await StepRunner.open(prog, params, state, { accumulation: 1, stepsPerRun: perRun, threads: 1 });
    await runner.run(batch, [1e-2], 1);
    const bias = params.get('classifier.bias')!.slice() as Float32Array;
    bias.fill(Number.NaN);
    params.set('classifier.bias', bias);
    const before = new Map([...params, ...state]);
    const r = await runner.run(batch, Array(perRun).fill(1e-2), 2);
    assert.equal(r.length, perRun);
    assert.ok(r.every((x) => Number.isNaN(x.loss)));
    for (const [k, v] of [...params, ...state]) assert.equal(v, before.get(k), `${k} was replaced (${perRun} per run)`);
    await runner.release();
  }
});

test('several steps in one Loop run match one run per step bit for bit, also when batch shapes change mid-run', async () => {
  // Batches of 8 rows, then 4 (a bucketed loader's last batch), then 8 again: the 4-row batch needs a run of its own.
  const rowsOf = [8, 8, 4, 8, 8];
  const feedsOf = (k: number) => {
    const n = rowsOf[k]!;
    return Object.fromEntries(
      prog.dataInputs.map((d) => {
        const c = data[d.name]!;
        const per = c.data.length / c.dims[0]!;
        return [d.name, toOrt(c.dtype, c.data.subarray(0, n * per) as TypedArray, [n, ...c.dims.slice(1)])];
      }),
    );
  };
  const lrs = [1e-2, 2e-2, 3e-2, 2e-2, 1e-2];
  const one = fresh(),
    many = fresh();
  const a = await StepRunner.open(prog, one.params, one.state, { accumulation: 1, stepsPerRun: 1, threads: 1 });
  const b = await StepRunner.open(prog, many.params, many.state, { accumulation: 1, stepsPerRun: 5, threads: 1 });
  const single: number[] = [];
  for (let k = 0; k < lrs.length; k++) single.push((await a.run(() => feedsOf(k), [lrs[k]!], k + 1))[0]!.loss);
  let next = 0;
  const multi = (await b.run(() => feedsOf(next++), lrs, 1)).map((r) => r.loss);
  assert.equal(next, lrs.length);
  assert.deepEqual(multi, single);
  for (const [k, v] of [...one.params, ...one.state]) assert.deepEqual(many.params.get(k) ?? many.state.get(k), v, k);
  await a.release();
  await b.release();
});

test('stepsThisRun stops runs at the last step and at every evaluation and checkpoint step', () => {
  assert.equal(stepsThisRun(0, 4, [100], []), 4);
  assert.equal(stepsThisRun(98, 4, [100], []), 2);
  assert.equal(stepsThisRun(0, 4, [100, 3], []), 3);
  assert.equal(stepsThisRun(8, 4, [100], [10, 25]), 2);
  assert.equal(stepsThisRun(10, 4, [100], [10, undefined]), 4);
  assert.equal(stepsThisRun(23, 4, [100], [10, 25]), 2);
  assert.equal(stepsThisRun(5, 0, [100], []), 1);
});

test('RunSizer measures with a one-step run first, then keeps runs within the time budget', () => {
  const sizer = new RunSizer(4, 5000);
  assert.equal(sizer.next(0, [100], []), 1);
  sizer.observe(900, 1);
  assert.equal(sizer.next(1, [100], []), 4);
  assert.equal(sizer.next(1, [100], [3]), 2);
  sizer.observe(8000, 4);
  assert.equal(sizer.next(5, [100], []), 2);
  sizer.observe(7000, 1);
  assert.equal(sizer.next(7, [100], []), 1);
});

test('a larger budget (a stage in its own process) keeps the steps per run a slow machine would cut', () => {
  const sizer = new RunSizer(4, 30_000);
  sizer.observe(2000, 1);
  assert.equal(sizer.next(1, [100], []), 4);
  sizer.observe(4 * 9000, 4);
  assert.equal(sizer.next(5, [100], []), 3);
});

test('no budget (a stage in its own process): runs take the steps per run from the first, whatever a step takes', () => {
  const sizer = new RunSizer(4, Infinity);
  assert.equal(sizer.next(0, [100], []), 4);
  sizer.observe(4 * 60_000, 4);
  assert.equal(sizer.next(4, [100], []), 4);
  assert.equal(sizer.next(8, [100], [10]), 2, 'still never past a checkpoint or evaluation step');
  assert.equal(sizer.next(98, [100], []), 2, 'nor past the last step');
});

test('a Loop session whose frozen weights go through external data (the >2 GB path) trains as the in-memory one', async () => {
  const lora = compileTrainStep(buildTinyEncoder(CFG), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'lora', r: 2, alpha: 4, targets: ['*query.weight', '*value.weight'], alsoTrain: ['classifier.*'] },
    optimizer: { kind: 'adamw' },
  });
  assert.ok(lora.step.graph.initializers.size > 5, 'frozen weights are initializers');
  const losses: number[][] = [];
  for (const externalDataBytes of [undefined, 1]) {
    const params = new Map(lora.params.map((p) => [p.name, p.init.slice()]));
    const state = new Map(
      lora.state.map((s) => [
        s.input,
        allocate(
          s.dtype,
          s.dims.reduce((a, b) => a * b, 1),
        ),
      ]),
    );
    const runner = await StepRunner.open(lora, params, state, { accumulation: 1, stepsPerRun: 3, threads: 1, externalDataBytes });
    losses.push((await runner.run(batch, [1e-2, 1e-2, 1e-2], 1)).map((r) => r.loss));
    await runner.release();
  }
  assert.deepEqual(losses[1], losses[0]);
  assert.ok(losses[0]![2]! !== losses[0]![0]!, 'the weights moved between steps');
});

test('default steps per run: 8 on CUDA (its per-run host copies dominate a step), 1 where WebGPU may run (no Loop kernel), by size on the CPU', () => {
  // Weights and AdamW moments: the tiny model's far under 32 MiB, this one's 3.1 M × 3 × 4 bytes over it.
  const big = compileTrainStep(buildTinyEncoder({ ...CFG, vocab: 12000, hidden: 256 }), {
    loss: { kind: 'cross_entropy' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw' },
  });
  assert.equal(defaultStepsPerRun(prog, 'cpu'), 1);
  assert.equal(defaultStepsPerRun(big, 'cpu'), 4);
  for (const p of [prog, big]) {
    assert.equal(defaultStepsPerRun(p, 'cuda'), 8);
    assert.equal(defaultStepsPerRun(p, 'webgpu'), 1);
    // `auto` in this process, which runs the npm build, tries WebGPU before the CPU.
    assert.equal(defaultStepsPerRun(p, 'auto'), 1);
  }
});
