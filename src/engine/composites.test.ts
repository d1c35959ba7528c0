import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { appendGradients } from './autodiff.ts';
import { findComposites } from './composites.ts';
import { gradCheck } from './gradcheck.testing.ts';
import { rmsNormOf } from '../models/layers.ts';

type Spelling = (g: GraphBuilder, x: string) => string;
const SPELLINGS: Record<string, Spelling> = {
  'x·0.5 · (1 + erf(x/√2))': (g, x) =>
    g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.scalar(1), g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])])])]),
  '(erf(x·√½) + 1) · (0.5·x)': (g, x) =>
    g.op('Mul', [g.op('Add', [g.op('Erf', [g.op('Mul', [x, g.scalar(Math.SQRT1_2)])]), g.scalar(1)]), g.op('Mul', [g.scalar(0.5), x])]),
  'torch.onnx nn.GELU: (x · (1 + erf(x/√2))) · 0.5': (g, x) =>
    g.op('Mul', [g.op('Mul', [x, g.op('Add', [g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])]), g.scalar(1)])]), g.scalar(0.5)]),
};

const N = 64;
const X = Float32Array.from({ length: N }, (_, i) => -4 + (8 * i) / (N - 1));
const W = Float32Array.from({ length: N }, (_, i) => Math.cos(i));

/** d/dx of Σ w·gelu(x), in float64. */
function reference(x: number, w: number): number {
  const cdf = 0.5 * (1 + erf(x / Math.SQRT2));
  const pdf = Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
  return w * (cdf + x * pdf);
}

// Abramowitz–Stegun 7.1.26 is too coarse; a series/continued-fraction pair accurate to ~1e-15.
function erf(z: number): number {
  const t = Math.abs(z);
  if (t < 3) {
    let sum = t,
      term = t;
    for (let n = 1; n < 200; n++) {
      term *= (-t * t) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(z) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  let f = 0;
  for (let n = 60; n >= 1; n--) f = n / 2 / (t + f);
  return Math.sign(z) * (1 - Math.exp(-t * t) / Math.sqrt(Math.PI) / (t + f));
}

for (const [name, spell] of Object.entries(SPELLINGS)) {
  test(`GELU spelled ${name}: one composite, gradient matches the closed form`, async () => {
    const g = new GraphBuilder({ opset: 17 });
    const x = g.input('x', 'float32', [N]);
    const y = spell(g, x);
    g.op('ReduceSum', [g.op('Mul', [y, g.constant(W, [N])]), g.ints([0])], { keepdims: 0 }, { outputs: ['loss'] });
    const m = g.build();
    assert.equal(findComposites(m.graph).length, 1);
    const { grads } = appendGradients(m, 'loss', [x]);
    m.graph.outputs = [{ name: grads.get(x)!, dtype: 'float32', shape: [N] }];
    // The closed form replaces the op-by-op backward: no Neg/Div/Erf on the gradient side.
    const backward = m.graph.nodes.filter((n) => n.name.startsWith('grad_')).map((n) => n.opType);
    assert.ok(!backward.includes('Erf') && !backward.includes('Div') && !backward.includes('Neg'), backward.join(','));
    const s = await ort.InferenceSession.create(encodeModel(m));
    const dx = (await s.run({ x: new ort.Tensor('float32', X, [N]) }))[grads.get(x)!]!.data as Float32Array;
    for (let i = 0; i < N; i++)
      assert.ok(Math.abs(dx[i]! - reference(X[i]!, W[i]!)) < 2e-6, `x=${X[i]}: ${dx[i]} vs ${reference(X[i]!, W[i]!)}`);
  });
}

test('a GELU whose inner value is read elsewhere keeps the op-by-op gradient', () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [N]);
  const e = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)])]);
  const y = g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.scalar(1), e])]);
  g.op('ReduceSum', [g.op('Add', [y, e]), g.ints([0])], { keepdims: 0 }, { outputs: ['loss'] });
  assert.equal(findComposites(g.build().graph).length, 0);
  // A constant that is not 0.5 is not GELU either.
  const h = new GraphBuilder({ opset: 17 });
  const z = h.input('z', 'float32', [N]);
  h.output(
    h.op('Mul', [h.op('Mul', [z, h.scalar(0.6)]), h.op('Add', [h.scalar(1), h.op('Erf', [h.op('Div', [z, h.scalar(Math.SQRT2)])])])]),
    'y',
  );
  assert.equal(findComposites(h.build().graph).length, 0);
});

test('SiLU x·sigmoid(x): one composite, gradient dy·(s + y·(1 − s))', async () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [N]);
  const y = g.op('Mul', [x, g.op('Sigmoid', [x])]);
  g.op('ReduceSum', [g.op('Mul', [y, g.constant(W, [N])]), g.ints([0])], { keepdims: 0 }, { outputs: ['loss'] });
  const m = g.build();
  assert.equal(findComposites(m.graph).length, 1);
  const { grads } = appendGradients(m, 'loss', [x]);
  m.graph.outputs = [{ name: grads.get(x)!, dtype: 'float32', shape: [N] }];
  const s = await ort.InferenceSession.create(encodeModel(m));
  const dx = (await s.run({ x: new ort.Tensor('float32', X, [N]) }))[grads.get(x)!]!.data as Float32Array;
  for (let i = 0; i < N; i++) {
    const sg = 1 / (1 + Math.exp(-X[i]!));
    const want = W[i]! * sg * (1 + X[i]! * (1 - sg));
    assert.ok(Math.abs(dx[i]! - want) < 2e-6, `x=${X[i]}: ${dx[i]} vs ${want}`);
  }
  // A sigmoid read elsewhere keeps the rules one by one.
  const h = new GraphBuilder({ opset: 17 });
  const z = h.input('z', 'float32', [N]);
  const sig = h.op('Sigmoid', [z]);
  h.output(h.op('Add', [h.op('Mul', [z, sig]), sig]), 'y');
  assert.equal(findComposites(h.build().graph).length, 0);
});

for (const opset of [17, 21])
  test(`RMSNorm as layers.ts writes it is one composite, and its gradient matches central differences (opset ${opset})`, async () => {
    const r = await gradCheck({
      opset,
      inputs: [
        { name: 'x', shape: [2, 3, 8], dtype: 'float32' },
        { name: 'w', shape: [8], dtype: 'float32' },
      ],
      seed: 7,
      build: (g, [x, w]) => {
        const y = rmsNormOf(g, x!, w!, 1e-6);
        assert.equal(findComposites(g.graph).length, 1, 'one RMSNorm composite');
        return y;
      },
    });
    // float32 (rmsNormOf is), so the tolerance of src/models/layers-gradients.test.ts.
    assert.ok(r.relError < 5e-3, `${r.relError}`);
  });
