import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { appendLoss, type LossSpec } from './losses.ts';
import { gradCheck } from './gradcheck.testing.ts';
import { findComposites } from './composites.ts';

const LOGITS = [0.2, -1, 0.5, 0.1, 1.5, 0.3, -0.2, 0.0, 0.7, -0.4, 0.9, 0.05]; // [2, 2, 3]

/** Reference cross-entropy over rows of 3 classes. */
function refCE(logits: number[], labels: number[], eps: number, ignore = -100): number {
  let total = 0,
    count = 0;
  labels.forEach((lab, r) => {
    if (lab === ignore) return;
    const row = logits.slice(r * 3, r * 3 + 3);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    row.forEach((v, c) => {
      const target = (c === lab ? 1 - eps : 0) + eps / 3;
      total -= target * (v - lse);
    });
    count++;
  });
  return total / Math.max(count, 1);
}

async function lossOf(spec: LossSpec, shape: number[], labels: number[], labelShape: number[]): Promise<number> {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('logits', 'float64', shape);
  const { loss } = appendLoss(g, inferShapes(g.graph), spec, x);
  g.output(loss, 'loss');
  const s = await ort.InferenceSession.create(encodeModel(g.build()));
  const out = await s.run({
    logits: new ort.Tensor('float64', Float64Array.from(LOGITS), shape),
    labels: new ort.Tensor('int64', BigInt64Array.from(labels.map(BigInt)), labelShape),
  });
  return Number(out['loss']!.data[0]);
}

test('cross-entropy [B,C] with ignore_index and label smoothing matches the reference', async () => {
  const labels = [2, -100, 0, 1];
  const got = await lossOf({ kind: 'cross_entropy', labelSmoothing: 0.1 }, [4, 3], labels, [4]);
  assert.ok(Math.abs(got - refCE(LOGITS, labels, 0.1)) < 1e-12, `${got} vs ${refCE(LOGITS, labels, 0.1)}`);
});

test('next-token cross-entropy [B,T,V] with shift: position t predicts label t+1', async () => {
  const labels = [1, 2, 0, 1]; // [2, 2]: row 0 predicts 2 from position 0; row 1 predicts 1 from position 0
  const got = await lossOf({ kind: 'cross_entropy', shift: true }, [2, 2, 3], labels, [2, 2]);
  const want = refCE([...LOGITS.slice(0, 3), ...LOGITS.slice(6, 9)], [2, 1], 0);
  assert.ok(Math.abs(got - want) < 1e-12, `${got} vs ${want}`);
});

test('all labels ignored gives loss 0, not NaN', async () => {
  assert.equal(await lossOf({ kind: 'cross_entropy' }, [4, 3], [-100, -100, -100, -100], [4]), 0);
});

test('cross-entropy gradient w.r.t. logits matches central differences (smoothing, ignored row, shift)', async () => {
  const r = await gradCheck({
    inputs: [
      { name: 'logits', shape: [2, 3, 4] },
      { name: 'labels', shape: [2, 3], dtype: 'int64', data: [1, 3, -100, 0, 2, 2], wrt: false },
    ],
    build: (g, [x]) => appendLoss(g, inferShapes(g.graph), { kind: 'cross_entropy', labelSmoothing: 0.2, shift: true }, x!).loss,
  });
  assert.ok(r.relError < 1e-6, `${r.relError}`);
});

test('cross-entropy without smoothing (−log-softmax at the label) matches the reference, ignored rows included', async () => {
  const labels = [2, -100, 0, 1];
  const got = await lossOf({ kind: 'cross_entropy' }, [4, 3], labels, [4]);
  assert.ok(Math.abs(got - refCE(LOGITS, labels, 0)) < 1e-12, `${got} vs ${refCE(LOGITS, labels, 0)}`);
});

for (const opset of [17, 21])
  test(`cross-entropy without smoothing: its closed-form gradient (one composite) matches central differences (opset ${opset})`, async () => {
    const r = await gradCheck({
      opset,
      inputs: [
        { name: 'logits', shape: [2, 3, 5] },
        { name: 'labels', shape: [2, 3], dtype: 'int64', data: [1, 4, -100, 0, 2, 2], wrt: false },
      ],
      build: (g, [x]) => {
        const loss = appendLoss(g, inferShapes(g.graph), { kind: 'cross_entropy', shift: true }, x!).loss;
        assert.equal(findComposites(g.graph).length, 1, 'the loss rows are one cross-entropy composite');
        assert.ok(!g.graph.nodes.some((n) => n.opType === 'ReduceLogSumExp'), 'no ReduceLogSumExp (a scalar exp per element)');
        return loss;
      },
    });
    assert.ok(r.relError < 1e-6, `${r.relError}`);
  });

for (const keepdims of [0, 1])
  test(`ReduceLogSumExp gradient matches central differences (keepdims ${keepdims})`, async () => {
    const r = await gradCheck({
      inputs: [{ name: 'x', shape: [3, 4, 2] }],
      build: (g, [x]) => g.op('ReduceLogSumExp', [x!], { axes: [1], keepdims }),
    });
    assert.ok(r.relError < 1e-6, `${r.relError}`);
  });

test('MSE value and gradient', async () => {
  const r = await gradCheck({
    inputs: [
      { name: 'pred', shape: [3, 2] },
      { name: 'targets', shape: [3, 2], wrt: false },
    ],
    build: (g, [x]) => appendLoss(g, inferShapes(g.graph), { kind: 'mse' }, x!).loss,
  });
  assert.ok(r.relError < 1e-6, `${r.relError}`);
});
