import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../onnx/proto.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, type CompileOptions } from './compile.ts';
import { DropoutMasker } from './dropout-masks.ts';
import { DROPOUT_MASK_PREFIX } from './dropout.ts';
import { exportInference } from './export.ts';
import { programGradCheck } from './gradcheck.testing.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';
import type { Model } from '../onnx/ir.ts';

const CFG: TinyEncoderConfig = {
  vocab: 9,
  hidden: 8,
  heads: 2,
  intermediate: 16,
  layers: 2,
  seq: 5,
  classes: 3,
  seed: 4,
  dtype: 'float64',
  gelu: 'tanh',
  dropout: 0.25,
};
const OPTS: CompileOptions = { loss: { kind: 'cross_entropy' }, trainable: { kind: 'full' }, optimizer: { kind: 'sgd' } };

function batch(n = 3): Record<string, ort.Tensor> {
  const d = tokenTask({ n, seq: CFG.seq, vocab: CFG.vocab, seed: 6, task: 'contains' });
  (d.attention_mask!.data as BigInt64Array)[CFG.seq - 1] = 0n;
  return Object.fromEntries(
    ['input_ids', 'attention_mask', 'labels'].map((k) => [k, new ort.Tensor('int64', d[k]!.data as BigInt64Array, d[k]!.dims)]),
  );
}

const dropouts = (m: Model) => m.graph.nodes.filter((n) => n.opType === 'Dropout').length;
const maskInputs = (m: Model) => m.graph.inputs.filter((v) => v.name.startsWith(DROPOUT_MASK_PREFIX)).length;

test('every Dropout of the forward model becomes a mask input of the graphs that train, in graph order', () => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), OPTS);
  assert.deepEqual(
    prog.dropoutMasks.map((m) => m.input.slice(DROPOUT_MASK_PREFIX.length)),
    [
      'embeddings.dropout',
      'encoder.layer.0.attention.self.dropout',
      'encoder.layer.0.attention.output.dropout',
      'encoder.layer.0.output.dropout',
      'encoder.layer.1.attention.self.dropout',
      'encoder.layer.1.attention.output.dropout',
      'encoder.layer.1.output.dropout',
      'dropout',
    ],
  );
  assert.deepEqual(prog.dropoutMasks[1]!.shape, ['batch', 2, 5, 5]);
  for (const g of [prog.step, prog.grad]) {
    assert.equal(dropouts(g), 0);
    assert.equal(maskInputs(g), 8);
  }
  assert.equal(prog.dataInputs.filter((v) => v.name.startsWith(DROPOUT_MASK_PREFIX)).length, 8);
});

test('inference graphs have no dropout: eval, export and a frozen backbone neither drop out nor take masks, and match the forward model', async () => {
  const model = buildTinyEncoder({ ...CFG, dtype: 'float32', gelu: 'erf' });
  assert.equal(dropouts(model), 8);
  const prog = compileTrainStep(model, OPTS);
  const exported = exportInference(prog, new Map(prog.params.map((p) => [p.name, p.init])));
  for (const m of [prog.eval, prog.forward, prog.source, exported]) {
    assert.equal(dropouts(m), 0);
    assert.equal(maskInputs(m), 0);
  }
  // The dropout ratios go with their nodes (onnxruntime warns about every unread initializer).
  const read = new Set(exported.graph.nodes.flatMap((n) => n.inputs));
  assert.deepEqual(
    [...exported.graph.initializers.keys()].filter((k) => !read.has(k)),
    [],
  );
  const head = compileTrainStep(model, { ...OPTS, trainable: { kind: 'head', features: 'pooled' } });
  assert.equal(dropouts(head.backbone!.model), 0);
  assert.deepEqual(
    head.dropoutMasks.map((m) => [m.input, m.shape]),
    [[`${DROPOUT_MASK_PREFIX}dropout`, ['batch', 8]]],
    'the head keeps the classifier dropout',
  );
  // Same logits as the forward model itself, whose Dropout nodes run in inference mode.
  const b = batch();
  const f32 = (m: Model) => ort.InferenceSession.create(encodeModel(m));
  const want = (await (await f32(model)).run({ input_ids: b.input_ids!, attention_mask: b.attention_mask! })).logits!.data as Float32Array;
  const feeds: Record<string, ort.Tensor> = { ...b };
  for (const p of prog.params) feeds[p.name] = new ort.Tensor('float32', p.init as Float32Array, p.dims);
  const got = (await (await f32(prog.eval)).run(feeds)).logits!.data as Float32Array;
  assert.equal(got.length, want.length);
  for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - want[i]!) < 1e-5, `logits[${i}]: ${got[i]} vs ${want[i]}`);
});

test('gradient check with a fixed mask: weight gradients of a 2-layer encoder with dropout match central differences (float64, rel < 1e-6)', async (t) => {
  const prog = compileTrainStep(buildTinyEncoder(CFG), OPTS);
  // Six elements of every weight, the largest gradient among them.
  const pick = (_p: unknown, a: ArrayLike<number>) => {
    let big = 0;
    for (let i = 1; i < a.length; i++) if (Math.abs(a[i]!) > Math.abs(a[big]!)) big = i;
    return new Set([big, ...Array.from({ length: 5 }, (_, k) => Math.floor((k * a.length) / 5))]);
  };
  const r = await programGradCheck(prog, batch(), { dtype: 'float64', h: 1e-6, maskSeed: 77, pick });
  assert.ok(r.checked > 150);
  assert.ok(r.rel < 1e-6, `relative error ${r.rel}`);
  t.diagnostic(`${r.checked} elements, relative error ${r.rel}`);
});

test('masks are a function of the seed: 0 or 1/(1-p), about p dropped, the same for the same seed and different for another', () => {
  const prog = compileTrainStep(buildTinyEncoder({ ...CFG, dtype: 'float32', gelu: 'erf' }), OPTS);
  const data = batch(64);
  const draw = (seed: number) =>
    Object.fromEntries(
      Object.entries(new DropoutMasker(prog.dropoutMasks, prog.dataInputs).feeds(data, seed)).map(([k, v]) => [
        k,
        Array.from(v.data as Float32Array),
      ]),
    );
  const a = draw(5),
    b = draw(5),
    c = draw(6);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const keep = Math.fround(1 / (1 - 0.25));
  const all = Object.values(a).flat();
  assert.ok(all.every((v) => v === 0 || v === keep));
  const dropped = all.filter((v) => v === 0).length / all.length;
  assert.ok(Math.abs(dropped - 0.25) < 0.01, `dropped ${dropped}`);
  // Different sites get different masks from the same step seed.
  assert.notDeepEqual(
    a[`${DROPOUT_MASK_PREFIX}encoder.layer.0.attention.output.dropout`],
    a[`${DROPOUT_MASK_PREFIX}encoder.layer.0.output.dropout`],
  );
});

test('modelDropout: false trains without dropout; row pruning keeps gradients with masks (CLS pooling)', async () => {
  const model = buildTinyEncoder({ ...CFG, dtype: 'float32', gelu: 'erf' });
  const off = compileTrainStep(model, { ...OPTS, modelDropout: false });
  assert.equal(off.dropoutMasks.length, 0);
  assert.equal(maskInputs(off.step) + dropouts(off.step), 0);
  const pruned = compileTrainStep(model, OPTS),
    full = compileTrainStep(model, { ...OPTS, pruneRows: false });
  const b = batch();
  const grads = async (prog: typeof pruned) => {
    const feeds: Record<string, ort.Tensor> = { ...b, ...new DropoutMasker(prog.dropoutMasks, prog.dataInputs).feeds(b, 3) };
    for (const p of prog.params) feeds[p.name] = new ort.Tensor('float32', p.init as Float32Array, p.dims);
    return (await ort.InferenceSession.create(encodeModel(prog.grad))).run(feeds);
  };
  const [gp, gf] = [await grads(pruned), await grads(full)];
  assert.ok(pruned.grad.graph.nodes.length !== full.grad.graph.nodes.length, 'pruning changed nothing');
  assert.ok(Math.abs(Number(gp[LOSS_OUTPUT]!.data[0]) - Number(gf[LOSS_OUTPUT]!.data[0])) < 1e-6);
  for (const p of pruned.params) {
    const x = gp[gradName(p.name)]!.data as Float32Array,
      y = gf[gradName(p.name)]!.data as Float32Array;
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) < 1e-5, `${p.name}[${i}]`);
  }
});
