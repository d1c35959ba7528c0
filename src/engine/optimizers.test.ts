import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../onnx/builder.ts';
import { compileTrainStep, type CompileOptions } from './compile.ts';
import { Trainer, type Dataset } from './trainer.ts';
import { Rng } from './prng.ts';

// y = x·W + b, MSE loss, float64 throughout so the graph can be compared with a TS reference exactly.
const IN = 3,
  OUT = 2,
  N = 8;

function linearModel(w: Float64Array, b: Float64Array) {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float64', ['batch', IN]);
  const y = g.op('Add', [g.op('MatMul', [x, g.initializer('dense.weight', w, [IN, OUT])]), g.initializer('dense.bias', b, [OUT])]);
  g.output(y, 'y');
  return g.build();
}

function data(seed: number): { x: Float64Array; t: Float64Array; ds: Dataset } {
  const r = new Rng(seed);
  const x = Float64Array.from({ length: N * IN }, () => r.uniform(-1, 1));
  const t = Float64Array.from({ length: N * OUT }, () => r.uniform(-1, 1));
  return { x, t, ds: { x: { data: x, dims: [N, IN], dtype: 'float64' }, targets: { data: t, dims: [N, OUT], dtype: 'float64' } } };
}

/** Gradient of mean((xW+b−t)²) over rows `idx`, computed directly. */
function refGrad(w: Float64Array, b: Float64Array, x: Float64Array, t: Float64Array, idx: number[]) {
  const gw = new Float64Array(w.length),
    gb = new Float64Array(b.length);
  const scale = 2 / (idx.length * OUT);
  for (const r of idx) {
    for (let o = 0; o < OUT; o++) {
      let y = b[o]!;
      for (let i = 0; i < IN; i++) y += x[r * IN + i]! * w[i * OUT + o]!;
      const d = (y - t[r * OUT + o]!) * scale;
      gb[o]! += d;
      for (let i = 0; i < IN; i++) gw[i * OUT + o]! += d * x[r * IN + i]!;
    }
  }
  return [gw, gb];
}

function orderOf(trainerSeed: number, epoch: number): number[] {
  return Array.from(new Rng((trainerSeed ^ Math.imul(epoch + 1, 0x9e3779b1)) >>> 0).permutation(N));
}

async function run(opts: CompileOptions, steps: number, batchSize: number, accumulation = 1, lr = 0.05) {
  const w0 = Float64Array.from({ length: IN * OUT }, (_, i) => 0.1 * (i - 2));
  const b0 = Float64Array.from([0.05, -0.02]);
  const prog = compileTrainStep(linearModel(w0, b0), opts);
  const { x, t, ds } = data(7);
  const tr = new Trainer(prog, { seed: 3, batchSize, accumulation, maxSteps: steps, schedule: { kind: 'constant', lr }, threads: 1 });
  const res = await tr.fit(ds);
  return { w: res.params.get('dense.weight') as Float64Array, b: res.params.get('dense.bias') as Float64Array, w0, b0, x, t, res };
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

test('AdamW in the graph matches a hand-written PyTorch-style reference over 4 steps (bias exempt from decay), with and without clipping', async () => {
  const opt = { kind: 'adamw' as const, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };
  for (const clip of [undefined, 0.05]) {
    const { w, b, w0, b0, x, t } = await run({ loss: { kind: 'mse' }, trainable: { kind: 'full' }, optimizer: opt, clipNorm: clip }, 4, 4);
    const lr = Math.fround(0.05);
    const P = [w0.slice(), b0.slice()];
    const M = P.map((p) => new Float64Array(p.length)),
      V = P.map((p) => new Float64Array(p.length));
    let clipped = 0;
    for (let s = 1; s <= 4; s++) {
      const epoch = Math.floor((s - 1) / 2),
        pos = (s - 1) % 2;
      const idx = orderOf(3, epoch).slice(pos * 4, pos * 4 + 4);
      const G = refGrad(P[0]!, P[1]!, x, t, idx);
      const norm = Math.sqrt(G.reduce((acc, g) => acc + g.reduce((q, v) => q + v * v, 0), 0));
      const coef = clip === undefined ? 1 : Math.min(1, clip / (norm + 1e-6));
      if (coef < 1) clipped++;
      P.forEach((p, k) => {
        const decay = k === 0 ? opt.weightDecay : 0;
        for (let i = 0; i < p.length; i++) {
          const g = G[k]![i]! * coef;
          p[i] = p[i]! * (1 - lr * decay);
          M[k]![i] = opt.beta1 * M[k]![i]! + (1 - opt.beta1) * g;
          V[k]![i] = opt.beta2 * V[k]![i]! + (1 - opt.beta2) * g ** 2;
          const mh = M[k]![i]! / (1 - opt.beta1 ** s),
            vh = V[k]![i]! / (1 - opt.beta2 ** s);
          p[i] = p[i]! - (lr * mh) / (Math.sqrt(vh) + opt.eps);
        }
      });
    }
    if (clip !== undefined) assert.ok(clipped > 0, 'clipping was active');
    close(w, P[0]!, 1e-12, `weight (clip ${clip})`);
    close(b, P[1]!, 1e-12, `bias (clip ${clip})`);
    assert.ok(Math.abs(w[0]! - w0[0]!) > 1e-3, 'weights moved');
  }
});

test('SGD with momentum and global-norm clipping matches the reference', async () => {
  const clip = 0.05;
  const { w, b, w0, b0, x, t } = await run(
    { loss: { kind: 'mse' }, trainable: { kind: 'full' }, optimizer: { kind: 'sgd', momentum: 0.9 }, clipNorm: clip },
    3,
    4,
  );
  const lr = Math.fround(0.05);
  const P = [w0.slice(), b0.slice()];
  const B = P.map((p) => new Float64Array(p.length));
  let clipped = 0;
  for (let s = 1; s <= 3; s++) {
    const idx = orderOf(3, Math.floor((s - 1) / 2)).slice(((s - 1) % 2) * 4, ((s - 1) % 2) * 4 + 4);
    const G = refGrad(P[0]!, P[1]!, x, t, idx);
    const norm = Math.sqrt(G.reduce((acc, g) => acc + g.reduce((q, v) => q + v * v, 0), 0));
    const coef = Math.min(1, clip / (norm + 1e-6));
    if (coef < 1) clipped++;
    P.forEach((p, k) => {
      for (let i = 0; i < p.length; i++) {
        B[k]![i] = 0.9 * B[k]![i]! + G[k]![i]! * coef;
        p[i] = p[i]! - B[k]![i]! * lr;
      }
    });
  }
  assert.ok(clipped > 0, 'clipping was active');
  close(w, P[0]!, 1e-12, 'weight');
  close(b, P[1]!, 1e-12, 'bias');
});

test('accumulating 2 micro-batches of 4 equals one batch of 8', async () => {
  const opts: CompileOptions = { loss: { kind: 'mse' }, trainable: { kind: 'full' }, optimizer: { kind: 'adamw' } };
  const big = await run(opts, 3, 8, 1);
  const acc = await run(opts, 3, 4, 2);
  // Same rows per step (the epoch order is shared), so only summation order differs.
  close(acc.w, big.w, 1e-12, 'weight');
  close(acc.b, big.b, 1e-12, 'bias');
  assert.ok(Math.abs(acc.res.history[0]!.gradNorm - big.res.history[0]!.gradNorm) < 1e-12);
});

test('a float64 program runs several steps per onnxruntime run with the weights of one step per run', async () => {
  const prog = compileTrainStep(
    linearModel(
      Float64Array.from({ length: IN * OUT }, (_, i) => 0.1 * (i - 2)),
      Float64Array.from([0.05, -0.02]),
    ),
    { loss: { kind: 'mse' }, trainable: { kind: 'full' }, optimizer: { kind: 'adamw' }, clipNorm: 0.5 },
  );
  const { ds } = data(7);
  const fit = (stepsPerRun: number) =>
    new Trainer(prog, { seed: 3, batchSize: 4, maxSteps: 6, stepsPerRun, schedule: { kind: 'constant', lr: 0.05 }, threads: 1 }).fit(ds);
  const one = await fit(1),
    three = await fit(3);
  assert.deepEqual(
    three.history.map((h) => [h.loss, h.gradNorm]),
    one.history.map((h) => [h.loss, h.gradNorm]),
  );
  assert.deepEqual(three.params, one.params);
  assert.notDeepEqual(one.params.get('dense.weight'), prog.params[0]!.init);
});
