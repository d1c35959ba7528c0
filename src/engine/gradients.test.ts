import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradCheck, type CheckInput } from './gradcheck.testing.ts';
import type { GraphBuilder } from '../onnx/builder.ts';

const F64_TOL = 1e-6;
/** float32 central differences (h = 1e-2) are only good to about 1e-3 relative. */
const F32_TOL = 5e-3;

interface Case {
  name: string;
  inputs: CheckInput[];
  build: (g: GraphBuilder, x: string[]) => string;
  opset?: number;
  tol?: number;
  step?: number;
  data?: Record<string, number[]>;
}

const inp = (name: string, shape: number[], extra: Partial<CheckInput> = {}): CheckInput => ({ name, shape, ...extra });
const positive = (n: number, seed: number) => Array.from({ length: n }, (_, i) => 0.5 + ((i * 7919 + seed * 104729) % 97) / 97);

const cases: Case[] = [
  { name: 'Add broadcast [2,3,4]+[3,1]', inputs: [inp('a', [2, 3, 4]), inp('b', [3, 1])], build: (g, [a, b]) => g.op('Add', [a!, b!]) },
  { name: 'Sub broadcast [4]-[2,4]', inputs: [inp('a', [4]), inp('b', [2, 4])], build: (g, [a, b]) => g.op('Sub', [a!, b!]) },
  { name: 'Mul broadcast [2,1,4]*[3,1]', inputs: [inp('a', [2, 1, 4]), inp('b', [3, 1])], build: (g, [a, b]) => g.op('Mul', [a!, b!]) },
  {
    name: 'Div broadcast [2,3]/[3]',
    inputs: [inp('a', [2, 3]), inp('b', [3], { data: positive(3, 1) })],
    build: (g, [a, b]) => g.op('Div', [a!, b!]),
  },
  {
    name: 'Pow with base and exponent',
    inputs: [inp('a', [2, 3], { data: positive(6, 2) }), inp('b', [3])],
    build: (g, [a, b]) => g.op('Pow', [a!, b!]),
  },
  { name: 'Pow by constant 2', inputs: [inp('a', [5])], build: (g, [a]) => g.op('Pow', [a!, g.scalar(2, 'float64')]) },
  {
    name: 'Sum of three with broadcast',
    inputs: [inp('a', [2, 3]), inp('b', [3]), inp('c', [2, 1])],
    build: (g, [a, b, c]) => g.op('Sum', [a!, b!, c!]),
  },
  { name: 'Abs (points away from 0)', inputs: [inp('a', [4], { data: [-0.7, 0.3, -0.2, 0.9] })], build: (g, [a]) => g.op('Abs', [a!]) },
  { name: 'Sin and Cos', inputs: [inp('a', [5])], build: (g, [a]) => g.op('Mul', [g.op('Sin', [a!]), g.op('Cos', [a!])]) },
  { name: 'Neg', inputs: [inp('a', [3, 2])], build: (g, [a]) => g.op('Neg', [a!]) },
  { name: 'Sqrt', inputs: [inp('a', [6], { data: positive(6, 3) })], build: (g, [a]) => g.op('Sqrt', [a!]) },
  { name: 'Exp', inputs: [inp('a', [6])], build: (g, [a]) => g.op('Exp', [a!]) },
  { name: 'Log', inputs: [inp('a', [6], { data: positive(6, 4) })], build: (g, [a]) => g.op('Log', [a!]) },
  { name: 'Reciprocal', inputs: [inp('a', [6], { data: positive(6, 5) })], build: (g, [a]) => g.op('Reciprocal', [a!]) },
  { name: 'Tanh', inputs: [inp('a', [2, 3])], build: (g, [a]) => g.op('Tanh', [a!]) },
  { name: 'Sigmoid', inputs: [inp('a', [2, 3])], build: (g, [a]) => g.op('Sigmoid', [a!]) },
  {
    name: 'Relu (points away from the kink)',
    inputs: [inp('a', [6], { data: [-0.9, -0.3, 0.2, 0.5, -0.1, 0.8] })],
    build: (g, [a]) => g.op('Relu', [a!]),
  },
  { name: 'Identity', inputs: [inp('a', [3])], build: (g, [a]) => g.op('Identity', [a!]) },
  { name: 'MatMul 2-D', inputs: [inp('a', [3, 4]), inp('b', [4, 2])], build: (g, [a, b]) => g.op('MatMul', [a!, b!]) },
  {
    name: 'MatMul rank 3 x rank 2 (linear layer)',
    inputs: [inp('a', [2, 3, 4]), inp('b', [4, 5])],
    build: (g, [a, b]) => g.op('MatMul', [a!, b!]),
  },
  {
    name: 'MatMul rank 4 with broadcast batch',
    inputs: [inp('a', [2, 1, 3, 4]), inp('b', [1, 2, 4, 3])],
    build: (g, [a, b]) => g.op('MatMul', [a!, b!]),
  },
  ...[
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ].map(
    ([ta, tb]): Case => ({
      name: `Gemm transA=${ta} transB=${tb} alpha beta`,
      inputs: [inp('a', ta ? [4, 3] : [3, 4]), inp('b', tb ? [2, 4] : [4, 2]), inp('c', [2])],
      build: (g, [a, b, c]) => g.op('Gemm', [a!, b!, c!], { transA: ta!, transB: tb!, alpha: 0.7, beta: 1.3 }),
    }),
  ),
  { name: 'Softmax axis -1', inputs: [inp('a', [2, 3, 4])], build: (g, [a]) => g.op('Softmax', [a!], { axis: -1 }) },
  { name: 'Softmax axis 1', inputs: [inp('a', [2, 3, 4])], build: (g, [a]) => g.op('Softmax', [a!], { axis: 1 }) },
  { name: 'LogSoftmax', inputs: [inp('a', [3, 5])], build: (g, [a]) => g.op('LogSoftmax', [a!], { axis: -1 }) },
  {
    name: 'LayerNormalization (x, scale, bias)',
    inputs: [inp('x', [2, 3, 4]), inp('s', [4]), inp('b', [4])],
    build: (g, [x, s, b]) => g.op('LayerNormalization', [x!, s!, b!], { axis: -1, epsilon: 1e-5 }),
  },
  {
    name: 'LayerNorm decomposed (ReduceMean/Sub/Pow/Sqrt/Div, opset 18 axes input)',
    opset: 18,
    inputs: [inp('x', [2, 5]), inp('s', [5])],
    build: (g, [x, s]) => {
      const mean = g.op('ReduceMean', [x!, g.ints([-1])], { keepdims: 1 });
      const d = g.op('Sub', [x!, mean]);
      const v = g.op('ReduceMean', [g.op('Pow', [d, g.scalar(2, 'float64')]), g.ints([-1])], { keepdims: 1 });
      return g.op('Mul', [g.op('Div', [d, g.op('Sqrt', [g.op('Add', [v, g.scalar(1e-5, 'float64')])])]), s!]);
    },
  },
  {
    name: 'ReduceMean keepdims=0 (opset 17 axes attribute)',
    inputs: [inp('a', [2, 3, 4])],
    build: (g, [a]) => g.op('ReduceMean', [a!], { axes: [0, 2], keepdims: 0 }),
  },
  { name: 'ReduceSum keepdims=1', inputs: [inp('a', [2, 3, 4])], build: (g, [a]) => g.op('ReduceSum', [a!, g.ints([1])], { keepdims: 1 }) },
  { name: 'ReduceSum all axes', inputs: [inp('a', [2, 3])], build: (g, [a]) => g.op('ReduceSum', [a!], { keepdims: 0 }) },
  { name: 'Reshape', inputs: [inp('a', [2, 6])], build: (g, [a]) => g.op('Reshape', [a!, g.ints([3, -1, 2])]) },
  { name: 'Flatten', inputs: [inp('a', [2, 3, 2])], build: (g, [a]) => g.op('Flatten', [a!], { axis: 1 }) },
  { name: 'Transpose', inputs: [inp('a', [2, 3, 4])], build: (g, [a]) => g.op('Transpose', [a!], { perm: [1, 2, 0] }) },
  {
    name: 'Unsqueeze/Squeeze',
    inputs: [inp('a', [2, 3])],
    build: (g, [a]) => g.op('Squeeze', [g.op('Mul', [g.op('Unsqueeze', [a!, g.ints([0, 2])]), a!]), g.ints([0])]),
  },
  { name: 'Expand', inputs: [inp('a', [3, 1])], build: (g, [a]) => g.op('Expand', [a!, g.ints([2, 3, 4])]) },
  { name: 'Concat axis 1', inputs: [inp('a', [2, 2]), inp('b', [2, 3])], build: (g, [a, b]) => g.op('Concat', [a!, b!], { axis: 1 }) },
  {
    name: 'Split into 3 (one output unused)',
    inputs: [inp('a', [2, 6])],
    build: (g, [a]) => {
      const [p, , r] = g.opMulti('Split', [a!, g.ints([1, 2, 3])], { axis: 1 }, { outputs: 3 });
      return g.op('Concat', [p!, g.op('Exp', [r!])], { axis: 1 });
    },
  },
  {
    name: 'Slice with negative start, axes',
    inputs: [inp('a', [3, 5])],
    build: (g, [a]) => g.op('Slice', [a!, g.ints([1, -3]), g.ints([3, 100]), g.ints([0, 1])]),
  },
  {
    name: 'Gather embedding rows with repeated indices',
    inputs: [inp('w', [5, 3]), inp('ids', [2, 3], { dtype: 'int64', data: [1, 4, 1, 0, 4, -1] })],
    build: (g, [w, ids]) => g.op('Gather', [w!, ids!], { axis: 0 }),
  },
  {
    name: 'GatherElements axis 1 with repeated indices',
    inputs: [inp('x', [3, 4]), inp('i', [3, 2], { dtype: 'int64', data: [0, 0, 3, 1, 2, 2], wrt: false })],
    build: (g, [x, i]) => g.op('GatherElements', [x!, i!], { axis: 1 }),
  },
  {
    name: 'Gather axis 1 scalar index (CLS token)',
    inputs: [inp('h', [2, 3, 4])],
    build: (g, [h]) => g.op('Gather', [h!, g.constant([0], [], 'int64')], { axis: 1 }),
  },
  {
    name: 'Where with broadcast',
    inputs: [inp('c', [3], { dtype: 'bool', data: [1, 0, 1] }), inp('a', [2, 3]), inp('b', [1])],
    build: (g, [c, a, b]) => g.op('Where', [c!, a!, b!]),
  },
  {
    name: 'Cast float64→float32→float64',
    inputs: [inp('a', [4])],
    build: (g, [a]) => g.op('Cast', [g.op('Mul', [g.op('Cast', [a!], { to: 1 }), g.scalar(1, 'float32')])], { to: 11 }),
    step: 1e-3,
    tol: 1e-4,
  },
  {
    name: 'fan-out: x used by three consumers',
    inputs: [inp('a', [3])],
    build: (g, [a]) => g.op('Mul', [g.op('Exp', [a!]), g.op('Add', [a!, a!])]),
  },
  // onnxruntime's CPU build registers Erf and Gelu for float only: checked in float32 with a looser tolerance.
  {
    name: 'Erf (float32 only on CPU, tol 5e-3)',
    inputs: [inp('a', [6], { dtype: 'float32' })],
    build: (g, [a]) => g.op('Erf', [a!]),
    tol: F32_TOL,
  },
  {
    name: 'Gelu opset 20 exact (float32 only on CPU, tol 5e-3)',
    opset: 20,
    inputs: [inp('a', [6], { dtype: 'float32' })],
    build: (g, [a]) => g.op('Gelu', [a!]),
    tol: F32_TOL,
  },
  {
    name: 'Gelu opset 20 tanh (float32 only on CPU, tol 5e-3)',
    opset: 20,
    inputs: [inp('a', [6], { dtype: 'float32' })],
    build: (g, [a]) => g.op('Gelu', [a!], { approximate: 'tanh' }),
    tol: F32_TOL,
  },
  {
    name: 'Gelu decomposed export form x·0.5·(1+erf(x/√2)) (float32, tol 5e-3)',
    inputs: [inp('a', [6], { dtype: 'float32' })],
    build: (g, [a]) =>
      g.op('Mul', [g.op('Mul', [a!, g.scalar(0.5)]), g.op('Add', [g.scalar(1), g.op('Erf', [g.op('Div', [a!, g.scalar(Math.SQRT2)])])])]),
    tol: F32_TOL,
  },
  { name: 'Dropout in inference mode is identity', inputs: [inp('a', [4])], build: (g, [a]) => g.op('Dropout', [a!]) },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches central differences`, async () => {
    const r = await gradCheck({ inputs: c.inputs, build: c.build, opset: c.opset, step: c.step });
    assert.ok(
      r.relError < (c.tol ?? F64_TOL),
      `relative error ${r.relError}\nanalytic ${JSON.stringify(r.analytic)}\nnumeric ${JSON.stringify(r.numeric)}`,
    );
  });
}

test('an op without a rule names the op, the node and the supported ops', async () => {
  await assert.rejects(gradCheck({ inputs: [inp('a', [3])], build: (g, [a]) => g.op('Atan', [a!]) }), (e: Error) =>
    /no gradient rule for op Atan \(node 'Atan'\).*MatMul/.test(e.message),
  );
});

test('Dropout in training mode: gradient is dY·mask/(1−ratio)', async () => {
  // Finite differences cannot follow a random mask; check the rule against the mask it used instead.
  const { GraphBuilder } = await import('../onnx/builder.ts');
  const { appendGradients } = await import('./autodiff.ts');
  const { encodeModel } = await import('../onnx/proto.ts');
  const ort = await import('onnxruntime-node');
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [64]);
  // Written without the mask output, as exporters do: autodiff adds it.
  const y = g.op('Dropout', [x, g.scalar(0.25), g.constant([1], [], 'bool')], { seed: 3 });
  const loss = g.op('ReduceSum', [y], { keepdims: 0 });
  g.output(loss, 'loss');
  const m = g.build();
  const { grads } = appendGradients(m, 'loss', ['x']);
  const b = GraphBuilder.extend(m);
  b.output(grads.get('x')!, 'dx');
  b.output(m.graph.nodes.find((n) => n.opType === 'Dropout')!.outputs[1]!, 'mask');
  const s = await ort.InferenceSession.create(encodeModel(b.build()));
  const out = await s.run({ x: new ort.Tensor('float32', new Float32Array(64).fill(1), [64]) });
  const mk = out['mask']!.data as Uint8Array,
    dx = out['dx']!.data as Float32Array;
  assert.ok(mk.some((v) => v === 0) && mk.some((v) => v === 1));
  for (let i = 0; i < 64; i++) assert.equal(dx[i], mk[i] ? Math.fround(1 / 0.75) : 0);
});
