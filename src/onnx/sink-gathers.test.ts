import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from './builder.ts';
import { cloneModel, type Model } from './ir.ts';
import { encodeModel } from './proto.ts';
import { inferShapes } from './shapes.ts';
import { sinkRowGathers } from './sink-gathers.ts';
import { buildTinyEncoder } from '../engine/tiny-encoder.testing.ts';
import { appendGradients } from '../engine/autodiff.ts';
import { appendLoss } from '../engine/losses.ts';

const CFG = { vocab: 30, hidden: 8, heads: 2, intermediate: 12, layers: 2, seq: 6, classes: 3, seed: 4 };
const ids = new ort.Tensor(
  'int64',
  BigInt64Array.from({ length: 18 }, (_, i) => BigInt((i * 7 + 3) % 30)),
  [3, 6],
);
const mask = new ort.Tensor(
  'int64',
  BigInt64Array.from({ length: 18 }, (_, i) => (i % 6 < 6 - (i % 3) ? 1n : 0n)),
  [3, 6],
);

async function run(m: Model, feeds: Record<string, ort.Tensor>, out: string): Promise<Float64Array> {
  const s = await ort.InferenceSession.create(encodeModel(m));
  return Float64Array.from((await s.run(feeds))[out]!.data as Float32Array);
}

test('a CLS classifier computes its last layer for the CLS row only, with the same logits', async () => {
  const model = buildTinyEncoder(CFG);
  const pruned = cloneModel(model);
  const moved = sinkRowGathers(pruned.graph);
  assert.ok(moved > 15, `moved ${moved}`);
  // The last layer's MLP now runs on one position; the first layer's still on all six.
  const types = inferShapes(pruned.graph);
  const mlpIn = (l: number) =>
    pruned.graph.nodes.find((n) => n.opType === 'MatMul' && n.inputs[1] === `encoder.layer.${l}.intermediate.dense.weight`)!;
  assert.deepEqual(types.get(mlpIn(1).outputs[0]!)!.shape, ['batch', 1, 12]);
  assert.deepEqual(types.get(mlpIn(0).outputs[0]!)!.shape, ['batch', 6, 12]);
  // Keys and values of the last layer still see every position.
  const key1 = pruned.graph.nodes.find((n) => n.inputs[1] === 'encoder.layer.1.attention.self.key.weight')!;
  assert.deepEqual(types.get(key1.outputs[0]!)!.shape, ['batch', 6, 8]);
  const want = await run(model, { input_ids: ids, attention_mask: mask }, 'logits');
  const got = await run(pruned, { input_ids: ids, attention_mask: mask }, 'logits');
  for (let i = 0; i < want.length; i++) assert.ok(Math.abs(want[i]! - got[i]!) < 1e-6, `${i}: ${want[i]} vs ${got[i]}`);
  assert.equal(sinkRowGathers(pruned.graph), 0, 'a second pass finds nothing more to move');
});

test('gradients through the pruned graph equal those of the full graph (float64)', async () => {
  const model = buildTinyEncoder({ ...CFG, dtype: 'float64', gelu: 'tanh' });
  const weights = [...model.graph.initializers.values()].filter((t) => /\.(weight|bias)$/.test(t.name)).map((t) => t.name);
  const withGrads = (prune: boolean) => {
    const m = cloneModel(model);
    const b = GraphBuilder.extend(m);
    const labels = b.input('labels', 'int64', ['batch']);
    void labels;
    const { loss } = appendLoss(b, inferShapes(m.graph), { kind: 'cross_entropy' }, 'logits');
    b.op('Identity', [loss], {}, { outputs: ['loss'] });
    m.graph.outputs = [];
    if (prune) assert.ok(sinkRowGathers(m.graph, ['loss']) > 0);
    const { grads } = appendGradients(m, 'loss', weights);
    m.graph.outputs = [{ name: 'loss', dtype: 'float64', shape: [] }];
    for (const w of weights) m.graph.outputs.push({ name: grads.get(w)!, dtype: 'float64' });
    return { m, names: weights.map((w) => grads.get(w)!) };
  };
  const labels = new ort.Tensor('int64', BigInt64Array.from([0n, 2n, 1n]), [3]);
  const feeds = { input_ids: ids, attention_mask: mask, labels };
  const full = withGrads(false),
    pruned = withGrads(true);
  const sf = await ort.InferenceSession.create(encodeModel(full.m));
  const sp = await ort.InferenceSession.create(encodeModel(pruned.m));
  const [of, op] = [await sf.run(feeds), await sp.run(feeds)];
  assert.ok(Math.abs((of['loss']!.data[0] as number) - (op['loss']!.data[0] as number)) < 1e-12);
  weights.forEach((w, i) => {
    const a = of[full.names[i]!]!.data as Float64Array,
      b = op[pruned.names[i]!]!.data as Float64Array;
    for (let k = 0; k < a.length; k++)
      assert.ok(Math.abs(a[k]! - b[k]!) <= 1e-12 + 1e-9 * Math.abs(a[k]!), `${w}[${k}]: ${a[k]} vs ${b[k]}`);
  });
});

test('a selection stays put when another reader needs every row, or a reshape fixes the selected dim', () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', ['batch', 5, 4]);
  const h = g.op('Relu', [x]);
  g.output(h, 'all_rows');
  g.output(g.op('Gather', [h, g.constant([0], [], 'int64')], { axis: 1 }), 'first');
  const m = g.build();
  assert.equal(sinkRowGathers(m.graph), 0);

  const r = new GraphBuilder({ opset: 17 });
  const y = r.input('y', 'float32', ['batch', 5, 4]);
  const reshaped = r.op('Reshape', [r.op('Exp', [y]), r.ints([0, 5, 2, 2])]);
  r.output(r.op('Gather', [reshaped, r.constant([1], [], 'int64')], { axis: 1 }), 'second');
  const m2 = r.build();
  const before = m2.graph.nodes.map((n) => n.opType).join(',');
  assert.equal(sinkRowGathers(m2.graph), 0);
  assert.equal(m2.graph.nodes.map((n) => n.opType).join(','), before, 'nothing rewritten');

  // Softmax normalizes along the selected axis: every column is needed.
  const s = new GraphBuilder({ opset: 17 });
  const z = s.input('z', 'float32', ['batch', 5, 4]);
  s.output(s.op('Gather', [s.op('Softmax', [z], { axis: -1 }), s.constant([2], [], 'int64')], { axis: 2 }), 'col');
  assert.equal(sinkRowGathers(s.build().graph), 0);
});
