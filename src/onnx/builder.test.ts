import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from './builder.ts';
import { decodeModel, encodeModel, loadModel, saveModel } from './proto.ts';
import { inferShapes } from './shapes.ts';
import { removeDeadNodes, topoSort } from './graph.ts';

function tinyMlp() {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 3]);
  const w = g.initializer('dense.weight', Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]);
  const b = g.initializer('dense.bias', Float32Array.from([0.5, -0.5]), [2]);
  const h = g.op('Add', [g.op('MatMul', [x, w]), b]);
  g.op('Exp', [h]); // dead branch
  g.output(g.op('Relu', [h]), 'y');
  return g.build();
}

test('built model runs in onnxruntime and gives the hand-computed result', async () => {
  const model = tinyMlp();
  assert.deepEqual(model.graph.outputs[0], { name: 'y', dtype: 'float32', shape: ['batch', 2] });
  const s = await ort.InferenceSession.create(encodeModel(model));
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 0, -1, 0, 0, 0]), [2, 3]) });
  // row0: [1,0,-1]·W = [1-5, 2-6] = [-4,-4] + b → relu → [0,0]; row1: b → [0.5, 0]
  assert.deepEqual(Array.from(out['y']!.data as Float32Array), [0, 0, 0.5, 0]);
});

test('encode/decode round-trips nodes, attributes, initializers and symbolic shapes', () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 'seq', 4]);
  const ids = g.initializer('ids', BigInt64Array.from([1n, -2n]), [2]);
  const y = g.op('Softmax', [x], { axis: -1 });
  const z = g.op('Gemm', [g.op('Reshape', [y, g.ints([-1, 4])]), g.initializer('w', new Float32Array(8), [2, 4])], { alpha: 1, transB: 1 });
  g.output(z);
  g.output(g.op('Cast', [ids], { to: 1 }), 'c');
  const m = g.build();
  const back = decodeModel(encodeModel(m));
  assert.deepEqual(back.graph.inputs, m.graph.inputs);
  assert.deepEqual(back.graph.nodes, m.graph.nodes);
  assert.deepEqual(back.graph.initializers.get('ids'), m.graph.initializers.get('ids'));
  assert.deepEqual(back.graph.nodes.find((n) => n.opType === 'Gemm')!.attrs['alpha'], { kind: 'float', value: 1 });
  assert.deepEqual(back.opsets, { '': 17 });
});

test('saveModel with external data writes a side file and loads back identically', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-onnx-'));
  const model = tinyMlp();
  const big = Float32Array.from({ length: 600 }, (_, i) => i / 7);
  model.graph.initializers.set('big', { name: 'big', dtype: 'float32', dims: [600], data: big });
  const path = join(dir, 'm.onnx');
  saveModel(model, path, { externalData: true });
  assert.ok(existsSync(`${path}.data`));
  assert.ok(statSync(`${path}.data`).size >= 1024);
  const back = loadModel(path);
  assert.deepEqual(back.graph.initializers.get('dense.weight'), model.graph.initializers.get('dense.weight'));
  assert.deepEqual(back.graph.initializers.get('big')!.data, big, 'external tensor read back');
  // onnxruntime resolves the side file relative to the model path.
  const s = await ort.InferenceSession.create(path);
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([0, 0, 0]), [1, 3]) });
  assert.deepEqual(Array.from(out['y']!.data as Float32Array), [0.5, 0]);
  saveModel(model, path);
  assert.ok(!existsSync(`${path}.data`), 'stale side file is removed when saving inline');
});

test('topological order, dead-node removal and shape inference', () => {
  const model = tinyMlp();
  model.graph.nodes.reverse();
  const order = topoSort(model.graph).map((n) => n.opType);
  assert.ok(order.indexOf('MatMul') < order.indexOf('Add') && order.indexOf('Add') < order.indexOf('Relu'));
  removeDeadNodes(model.graph);
  assert.ok(!model.graph.nodes.some((n) => n.opType === 'Exp'));
  const g = new GraphBuilder();
  const x = g.input('x', 'float32', ['batch', 'seq', 8]);
  const r = g.op('Reshape', [x, g.ints([0, 0, 2, 4])]);
  const t = g.op('Transpose', [r], { perm: [0, 2, 1, 3] });
  const mm = g.op('MatMul', [t, g.op('Transpose', [t], { perm: [0, 1, 3, 2] })]);
  const red = g.op('ReduceSum', [mm, g.ints([-1])], { keepdims: 0 });
  const flat = g.op('Reshape', [x, g.ints([-1, 8])]);
  const types = inferShapes(g.graph);
  assert.deepEqual(types.get(mm)!.shape, ['batch', 2, 'seq', 'seq']);
  assert.deepEqual(types.get(red)!.shape, ['batch', 2, 'seq']);
  assert.equal(types.get(flat)!.shape![1], 8);
});

test('encoded nodes are topologically sorted even when the IR list is not (ONNX checker requirement)', () => {
  const model = tinyMlp();
  model.graph.nodes.reverse();
  const back = decodeModel(encodeModel(model));
  const seen = new Set([...back.graph.inputs.map((v) => v.name), ...back.graph.initializers.keys()]);
  for (const n of back.graph.nodes) {
    for (const i of n.inputs) assert.ok(seen.has(i), `${n.name} reads ${i} before it is produced`);
    n.outputs.forEach((o) => seen.add(o));
  }
});
