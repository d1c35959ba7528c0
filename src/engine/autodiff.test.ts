import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { appendGradients } from './autodiff.ts';
import { Rng } from './prng.ts';

test('embedding gradient with many repeated indices is bitwise reproducible across runs (2 threads) and sums correctly', async () => {
  const V = 8,
    D = 16,
    N = 4096;
  const r = new Rng(5);
  const g = new GraphBuilder({ opset: 17 });
  const ids = g.input('ids', 'int64', [N]);
  const up = g.input('up', 'float32', [N, D]);
  const w = g.initializer(
    'emb.weight',
    Float32Array.from({ length: V * D }, () => r.uniform(-1, 1)),
    [V, D],
  );
  const loss = g.op('ReduceSum', [g.op('Mul', [g.op('Gather', [w, ids]), up])], { keepdims: 0 });
  g.output(loss, 'loss');
  const m = g.build();
  const { grads } = appendGradients(m, 'loss', ['emb.weight']);
  GraphBuilder.extend(m).output(grads.get('emb.weight')!, 'dw');
  const s = await ort.InferenceSession.create(encodeModel(m), { intraOpNumThreads: 2 });
  const idv = BigInt64Array.from({ length: N }, () => BigInt(r.int(V)));
  const upv = Float32Array.from({ length: N * D }, () => r.uniform(-1, 1));
  const feeds = { ids: new ort.Tensor('int64', idv, [N]), up: new ort.Tensor('float32', upv, [N, D]) };
  const first = Buffer.from(((await s.run(feeds))['dw']!.data as Float32Array).buffer);
  for (let k = 0; k < 5; k++) assert.deepEqual(Buffer.from(((await s.run(feeds))['dw']!.data as Float32Array).buffer), first);
  const ref = new Float64Array(V * D);
  for (let i = 0; i < N; i++) for (let d = 0; d < D; d++) ref[Number(idv[i]) * D + d]! += upv[i * D + d]!;
  const got = new Float32Array(first.buffer, first.byteOffset, V * D);
  for (let i = 0; i < V * D; i++) assert.ok(Math.abs(got[i]! - ref[i]!) < 1e-3, `${i}`);
});

test('weights that do not reach the loss get zero gradients; integer paths are skipped', async () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [2, 3]);
  const used = g.initializer('used', Float32Array.from([1, 2, 3]), [3]);
  const unused = g.initializer('unused', Float32Array.from([4, 5]), [2]);
  const shape = g.op('Shape', [g.op('Mul', [x, used])]); // integer path from a weight-dependent value
  const y = g.op('Reshape', [g.op('Mul', [x, used]), shape]);
  g.op('Add', [unused, unused]); // dead
  const loss = g.op('ReduceSum', [y], { keepdims: 0 });
  g.output(loss, 'loss');
  const m = g.build();
  const { grads } = appendGradients(m, 'loss', ['used', 'unused']);
  const b = GraphBuilder.extend(m);
  b.output(grads.get('used')!, 'd_used');
  b.output(grads.get('unused')!, 'd_unused');
  const s = await ort.InferenceSession.create(encodeModel(b.build()));
  const out = await s.run({ x: new ort.Tensor('float32', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]) });
  assert.deepEqual(Array.from(out['d_used']!.data as Float32Array), [5, 7, 9]);
  assert.deepEqual(Array.from(out['d_unused']!.data as Float32Array), [0, 0]);
});

test('a non-scalar loss is refused', () => {
  const g = new GraphBuilder({ opset: 17 });
  const x = g.input('x', 'float32', [2]);
  g.output(g.op('Exp', [x]), 'y');
  assert.throws(() => appendGradients(g.build(), 'y', ['x']), /must be a scalar/);
});
