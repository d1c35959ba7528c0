import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { allocate, type TypedArray } from '../onnx/dtype.ts';
import { compileTrainStep, type TrainProgram } from './compile.ts';
import { StepRunner } from './step-runner.ts';
import { Rng } from './prng.ts';

// An embedding table much larger than a batch's tokens: most rows get no gradient in a step.
const VOCAB = 40,
  DIM = 6,
  SEQ = 5,
  BATCH = 4,
  CLASSES = 3;

function bagOfEmbeddings(tied: boolean) {
  const r = new Rng(11);
  const g = new GraphBuilder({ opset: 17 });
  const ids = g.input('ids', 'int64', ['batch', SEQ]);
  const table = g.initializer(
    'embeddings.word_embeddings.weight',
    Float32Array.from({ length: VOCAB * DIM }, () => r.uniform(-1, 1)),
    [VOCAB, DIM],
  );
  const head = g.initializer(
    'classifier.weight',
    Float32Array.from({ length: DIM * CLASSES }, () => r.uniform(-1, 1)),
    [DIM, CLASSES],
  );
  const pooled = g.op('ReduceMean', [g.op('Gather', [table, ids], { axis: 0 })], { axes: [1], keepdims: 0 });
  let logits = g.op('MatMul', [pooled, head]);
  // A second use of the table (as a tied output layer would be): its gradient is no longer rows alone.
  if (tied) logits = g.op('Add', [logits, g.op('ReduceMean', [table], { keepdims: 0 })]);
  g.output(logits, 'logits');
  return g.build();
}

function batches(seed: number): Record<string, ort.Tensor>[] {
  const r = new Rng(seed);
  return [0, 1, 2].map((step) => ({
    // Tokens from overlapping windows (rows 0–11): repeats inside a row, across rows and across steps.
    ids: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: BATCH * SEQ }, () => BigInt(step * 3 + Math.floor(r.uniform(0, 6)))),
      [BATCH, SEQ],
    ),
    labels: new ort.Tensor(
      'int64',
      BigInt64Array.from({ length: BATCH }, () => BigInt(Math.floor(r.uniform(0, CLASSES)))),
      [BATCH],
    ),
  }));
}

async function train(prog: TrainProgram, accumulation: number) {
  const params = new Map<string, TypedArray>(prog.params.map((p) => [p.name, p.init.slice()]));
  const state = new Map<string, TypedArray>(
    prog.state.map((s) => [
      s.input,
      allocate(
        s.dtype,
        s.dims.reduce((a, b) => a * b, 1),
      ),
    ]),
  );
  const runner = await StepRunner.open(prog, params, state, { accumulation, stepsPerRun: 1, threads: 2 });
  const data = batches(5);
  const norms: number[] = [];
  for (let step = 1; step <= data.length; step++) {
    // Accumulating two copies of the batch averages g and g: the dense gradient, through the apply graph.
    const [res] = await runner.run(() => data[step - 1]!, [0.05], step);
    norms.push(res!.gradNorm);
  }
  await runner.release();
  return { params, state, norms };
}

for (const tied of [false, true]) {
  test(`AdamW on an embedding table ${tied ? 'with a second use falls back to the dense gradient' : 'updates row-wise'} and gives the dense update's values`, async () => {
    const prog = compileTrainStep(bagOfEmbeddings(tied), {
      loss: { kind: 'cross_entropy' },
      trainable: { kind: 'full' },
      optimizer: { kind: 'adamw', weightDecay: 0.1 },
      clipNorm: 0.05,
    });
    const ops = prog.step.graph.nodes.map((n) => n.opType);
    assert.equal(ops.includes('Unique'), !tied, `row-wise path ${tied ? 'used for a tied table' : 'not used'}`);
    // The fused step (row-wise when untied) against gradient graph + apply graph (always dense).
    const rowwise = await train(prog, 1);
    const dense = await train(prog, 2);
    assert.ok(
      rowwise.norms.every((n) => n > 0.05),
      `clipping should be active: grad norms ${rowwise.norms}`,
    );
    rowwise.norms.forEach((n, i) =>
      assert.ok(Math.abs(n - dense.norms[i]!) <= 1e-5 * n, `step ${i + 1} grad norm ${n} vs ${dense.norms[i]}`),
    );
    const table = 'embeddings.word_embeddings.weight';
    const w0 = prog.params.find((p) => p.name === table)!.init;
    let touched = 0,
      untouched = 0;
    // Tied, both paths are dense, and rows where the two uses' gradients nearly cancel carry float noise
    // that Adam's normalization lifts to ~1e-5; a wrong fallback would be off by a whole step (lr = 0.05).
    const tol = tied ? 1e-4 : 1e-6;
    for (const [name, a] of [...rowwise.params, ...rowwise.state]) {
      const b = (dense.params.get(name) ?? dense.state.get(name))!;
      for (let i = 0; i < a.length; i++)
        assert.ok(Math.abs((a[i] as number) - (b[i] as number)) <= tol, `${name}[${i}]: ${a[i]} vs ${b[i]}`);
    }
    const m = rowwise.state.get(`${table}::m`)!;
    for (let row = 0; row < VOCAB; row++) {
      const hit = m[row * DIM] !== 0;
      if (hit) touched++;
      else {
        untouched++;
        // Never touched: decoupled weight decay alone, three times.
        const decay = (1 - 0.05 * 0.1) ** 3;
        for (let j = 0; j < DIM; j++)
          assert.ok(Math.abs((rowwise.params.get(table)![row * DIM + j] as number) - (w0[row * DIM + j] as number) * decay) < 1e-6);
      }
    }
    // Tied: the second use reaches every row.
    if (tied) assert.equal(untouched, 0);
    else assert.ok(touched >= 10 && untouched >= 10, `rows touched ${touched}, untouched ${untouched}`);
  });
}
