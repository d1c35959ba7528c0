// Activation recomputation (recompute.ts): the same loss and gradients bit for bit as keeping the activations,
// the backward pass reads no activation from inside a segment, and onnxruntime's optimizer keeps the copies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel, loadModel } from '../onnx/proto.ts';
import type { Model } from '../onnx/ir.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { buildGpt2Graph } from '../models/gpt2.ts';
import { tinyGpt2Dir, tinyLlamaDir } from '../models/tiny.testing.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, type CompileOptions, type TrainableSpec } from './compile.ts';
import { Rng } from './prng.ts';
import { checkpointsOf } from './recompute.ts';

const LORA: TrainableSpec = { kind: 'lora', r: 4, alpha: 8, targets: ['*_proj.weight'], seed: 7 };
const opts = (trainable: TrainableSpec, recompute: boolean): CompileOptions => ({
  loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: true },
  trainable,
  optimizer: { kind: 'adamw', weightDecay: 0.01 },
  clipNorm: 1,
  recompute,
});

function feeds(rows: number, seq: number): Record<string, ort.Tensor> {
  const rng = new Rng(4);
  const ids = BigInt64Array.from({ length: rows * seq }, () => BigInt(rng.int(200)));
  const labels = ids.map((v, i) => (i % seq < 2 ? -100n : v));
  return {
    input_ids: new ort.Tensor('int64', ids, [rows, seq]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(rows * seq).fill(1n), [rows, seq]),
    labels: new ort.Tensor('int64', labels, [rows, seq]),
  };
}

/** Loss and every parameter gradient of the grad graph, with B of each adapter nonzero (else A's gradient is 0). */
async function gradients(model: Model, trainable: TrainableSpec, recompute: boolean) {
  const prog = compileTrainStep(model, opts(trainable, recompute));
  const rng = new Rng(5);
  const f = feeds(2, 10);
  for (const p of prog.params) {
    const v = p.name.endsWith('lora_B.weight') ? Float32Array.from({ length: p.init.length }, () => rng.uniform(-0.3, 0.3)) : p.init;
    f[p.name] = new ort.Tensor('float32', v as Float32Array, p.dims);
  }
  const s = await ort.InferenceSession.create(encodeModel(prog.grad), { intraOpNumThreads: 1, graphOptimizationLevel: 'extended' });
  const out = await s.run(f);
  await s.release();
  return {
    prog,
    loss: out[LOSS_OUTPUT]!.data[0] as number,
    grads: prog.params.map((p) => [p.name, out[gradName(p.name)]!.data as Float32Array] as const),
  };
}

function assertSame(a: Awaited<ReturnType<typeof gradients>>, b: Awaited<ReturnType<typeof gradients>>) {
  assert.ok(Object.is(a.loss, b.loss), `loss ${a.loss} vs ${b.loss}`);
  assert.equal(a.grads.length, b.grads.length);
  for (let k = 0; k < a.grads.length; k++) {
    const [name, x] = a.grads[k]!;
    const y = b.grads[k]![1];
    let bad = 0;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i])) bad++;
    assert.equal(bad, 0, `${name}: ${bad} of ${x.length} gradient values differ`);
  }
}

/**
 * Activations inside the recomputed segments (computed from the first checkpoint, before the last one; not
 * checkpoints) that a node outside the forward model (loss, backward) reads in the grad graph.
 */
function interiorReadByBackward(prog: ReturnType<typeof compileTrainStep>): string[] {
  const fwd = prog.forward.graph;
  const ck = checkpointsOf(prog.forward);
  const downstream = (from: string) => {
    const seen = new Set([from]);
    for (const n of fwd.nodes) if (n.inputs.some((i) => seen.has(i))) for (const o of n.outputs) seen.add(o);
    return seen;
  };
  const afterLast = downstream(ck.at(-1)!);
  const interior = new Set([...downstream(ck[0]!)].filter((v) => !afterLast.has(v) && !ck.includes(v)));
  const forwardNodes = new Set(fwd.nodes.map((n) => n.name));
  return [
    ...new Set(prog.grad.graph.nodes.filter((n) => !forwardNodes.has(n.name)).flatMap((n) => n.inputs.filter((i) => interior.has(i)))),
  ];
}

test('recomputed activations give the loss and gradients bit for bit (LoRA, QLoRA, full fine-tuning of a tiny LLaMA)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-recompute-'));
  try {
    const m = tinyLlamaDir(join(dir, 'm'), 11, { hidden: 32, heads: 4, kvHeads: 2, layers: 2 });
    const fp32 = buildCausalLmGraph(m).model;
    const q4 = buildCausalLmGraph(m, { quantize: 'q4' }).model;
    // 2 layers: the embedding output and two checkpoints a layer.
    assert.equal(checkpointsOf(fp32).length, 5);
    for (const [model, trainable] of [
      [fp32, LORA],
      [q4, LORA],
      [fp32, { kind: 'full' } as TrainableSpec],
    ] as const) {
      const kept = await gradients(model, trainable, false);
      const recomputed = await gradients(model, trainable, true);
      assertSame(recomputed, kept);
      assert.ok(
        recomputed.prog.grad.graph.nodes.length > kept.prog.grad.graph.nodes.length,
        'the recomputing graph holds copies of forward nodes',
      );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("with recomputation no backward node reads an activation from inside a segment, and onnxruntime's optimizer keeps the copies", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-recompute-ort-'));
  try {
    const m = tinyLlamaDir(join(dir, 'm'), 11, { hidden: 32, heads: 4, kvHeads: 2, layers: 3 });
    const model = buildCausalLmGraph(m).model;
    const kept = compileTrainStep(model, opts(LORA, false));
    const prog = compileTrainStep(model, opts(LORA, true));
    assert.ok(interiorReadByBackward(kept).length > 20, 'without recomputation the backward pass reads many activations');
    assert.deepEqual(interiorReadByBackward(prog), []);
    // Common-subexpression elimination would merge an unguarded copy into its original: count the Softmax nodes
    // (two a layer forward: causal attention runs its query halves apart) in the session's own optimized graph.
    const optimized = join(dir, 'optimized.onnx');
    const s = await ort.InferenceSession.create(encodeModel(prog.step), {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: optimized,
    });
    await s.release();
    const softmax = (g: Model) => g.graph.nodes.filter((n) => n.opType === 'Softmax').length;
    assert.equal(softmax(prog.step), 2 * (3 + 3), 'three layers forward, three recomputed');
    assert.equal(softmax(loadModel(optimized)), 2 * (3 + 3), 'onnxruntime kept the recomputed copies');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('recomputation of a model that names no checkpoints is refused with a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-recompute-gpt2-'));
  try {
    const { model } = buildGpt2Graph(tinyGpt2Dir(join(dir, 'g'), 3));
    assert.throws(() => compileTrainStep(model, opts(LORA, true)), /names its checkpoints/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
