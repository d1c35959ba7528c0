// QLoRA's 4-bit frozen weights: lossless GGUF Q4_1 conversion, the in-graph dequantization (bit for bit the host's),
// its gradients against finite differences, and QLoRA training equal to LoRA on the dequantized weights.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../onnx/builder.ts';
import { encodeModel, loadModel } from '../onnx/proto.ts';
import { dequantize, halfToFloat, readGguf, tensorBytes } from '../formats/gguf.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { LLAMA_FAMILY, type LlamaFamilyType } from '../models/llama.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { transpose2d } from '../models/weights.ts';
import { compileTrainStep, type CompileOptions } from './compile.ts';
import { exportInference } from './export.ts';
import { gradCheck, largestAndRandom, programGradCheck } from './gradcheck.testing.ts';
import { Rng } from './prng.ts';
import { Trainer, type Dataset } from './trainer.ts';
import { Q4_OPSET, dequantizeQ4, dequantizeQ4Model, q4FromGgufQ4_1, q4Initializers, quantizeQ4 } from './quant4.ts';

const QUANTS = new URL('../formats/fixtures/quants.gguf', import.meta.url).pathname;

function randomWeight(inF: number, outF: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: inF * outF }, () => rng.uniform(-0.5, 0.5));
}

test('a GGUF Q4_1 tensor converts to 4-bit blocks without loss (dequantized equals gguf.quants.dequantize, transposed)', () => {
  const g = readGguf(QUANTS);
  const t = g.tensors.find((x) => x.name === 'q4_1.weight')!;
  const [outF, inF] = t.shape as [number, number];
  const w = q4FromGgufQ4_1(tensorBytes(g, t), outF, inF, halfToFloat);
  const got = dequantizeQ4(w);
  const want = transpose2d(dequantize(g, t), outF, inF);
  let bad = 0;
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) bad++;
  assert.equal(bad, 0, `${bad} of ${want.length} values differ`);
  assert.equal(w.q.byteLength, (inF * outF) / 2, 'two weights a byte');
});

test('quantizeQ4 rounds each weight to its block grid (error ≤ half a step) and the graph dequantizes bit for bit as the host does', async () => {
  const [inF, outF] = [96, 24];
  const w = randomWeight(inF, outF, 3);
  const q = quantizeQ4(w, inF, outF);
  const deq = dequantizeQ4(q);
  for (let i = 0; i < w.length; i++) {
    const d = q.scale[Math.floor(Math.floor(i / outF) / 32) * outF + (i % outF)]!;
    assert.ok(Math.abs(deq[i]! - w[i]!) <= d / 2 + 1e-6, `element ${i}: ${w[i]} → ${deq[i]} with step ${d}`);
  }
  const g = new GraphBuilder({ opset: Q4_OPSET });
  g.output(q4Initializers(g, 'w', q), 'w_out');
  const s = await ort.InferenceSession.create(encodeModel(g.build()));
  const out = (await s.run({}))['w_out']!.data as Float32Array;
  await s.release();
  let bad = 0;
  for (let i = 0; i < deq.length; i++) if (!Object.is(out[i], deq[i])) bad++;
  assert.equal(bad, 0, `${bad} of ${deq.length} values differ between onnxruntime's DequantizeLinear chain and dequantizeQ4`);
});

test('gradient through the dequantized matmul matches finite differences (float32)', async () => {
  const [inF, outF] = [64, 12];
  const q = quantizeQ4(randomWeight(inF, outF, 4), inF, outF);
  const r = await gradCheck({
    opset: Q4_OPSET,
    inputs: [{ name: 'x', shape: [3, inF], dtype: 'float32' }],
    build: (g, [x]) => g.op('Tanh', [g.op('MatMul', [x!, q4Initializers(g, 'w', q)])]),
  });
  assert.ok(r.relError < 3e-3, `relative error ${r.relError}`);
});

// hidden 32 (blocks of 32 along every input axis: 32 and the MLP's 96). Qwen2 adds float32 q/k/v biases beside the
// 4-bit weights; Mistral's window of 5 is shorter than the test rows (8 and 12 positions), so it hides keys.
function tinyQ4(dir: string, modelType: LlamaFamilyType = 'llama') {
  const model = tinyLlamaDir(dir, 11, { hidden: 32, heads: 4, kvHeads: 2, layers: 2, modelType, slidingWindow: 5 });
  const q4 = buildCausalLmGraph(model, { quantize: 'q4' }).model;
  return { q4, dequantized: dequantizeQ4Model(q4) };
}

const OPTS: CompileOptions = {
  loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: true },
  trainable: { kind: 'lora', r: 4, alpha: 8, targets: ['*_proj.weight'], seed: 7 },
  optimizer: { kind: 'adamw', weightDecay: 0.01 },
  clipNorm: 1,
};

function tokens(rows: number, seq: number, seed: number): Dataset {
  const rng = new Rng(seed);
  const ids = BigInt64Array.from({ length: rows * seq }, () => BigInt(Math.floor(rng.next() * 200)));
  const labels = ids.map((v, i) => (i % seq < 3 ? -100n : v));
  return {
    input_ids: { data: ids, dims: [rows, seq], dtype: 'int64' },
    attention_mask: { data: new BigInt64Array(rows * seq).fill(1n), dims: [rows, seq], dtype: 'int64' },
    labels: { data: labels, dims: [rows, seq], dtype: 'int64' },
  };
}

for (const family of LLAMA_FAMILY)
  test(`${family}: QLoRA trains only the adapters, its backward pass dequantizes afresh, and its losses equal LoRA on the dequantized weights`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-q4-'));
    try {
      const { q4, dequantized } = tinyQ4(join(dir, 'm'), family);
      const ql = compileTrainStep(q4, OPTS);
      const ref = compileTrainStep(dequantized, OPTS);
      assert.ok(
        ql.params.every((p) => /lora_[AB]/.test(p.name)),
        `trainable: ${ql.params.map((p) => p.name)}`,
      );
      assert.equal(ql.params.length, 2 * 7 * 2);
      // No float32 copy of a projection in the graph: only 4-bit bytes, block scales and offsets.
      const floats = [...ql.step.graph.initializers.values()].filter((t) => t.dtype === 'float32' && /_proj\.weight$/.test(t.name));
      assert.deepEqual(floats, []);
      const dqNodes = ql.step.graph.nodes.filter((n) => n.opType === 'DequantizeLinear').length;
      assert.ok(dqNodes > 14, `${dqNodes} DequantizeLinear nodes: the backward pass has its own`);
      // The forward chain's value feeds its forward MatMul only.
      for (const w of ['model.layers.1.mlp.down_proj.weight', 'model.layers.0.self_attn.o_proj.weight'])
        assert.equal(ql.step.graph.nodes.filter((n) => n.inputs.includes(w)).length, 1, w);

      const train = tokens(16, 12, 1);
      const run = async (prog: typeof ql) => {
        const tr = new Trainer(prog, { seed: 3, batchSize: 4, maxSteps: 6, schedule: { kind: 'constant', lr: 1e-2 }, threads: 1 });
        return tr.fit(train);
      };
      const a = await run(ql);
      const b = await run(ref);
      const la = a.history.map((h) => h.loss);
      const lb = b.history.map((h) => h.loss);
      assert.equal(la.length, 6);
      // Tolerance 1e-5 relative: the same float32 weights and ops, only the session's fusion choices may differ.
      for (let i = 0; i < la.length; i++) assert.ok(Math.abs(la[i]! - lb[i]!) <= 1e-5 * Math.abs(lb[i]!), `step ${i + 1}: ${la} vs ${lb}`);
      assert.ok(la.at(-1)! < la[0]!, `loss falls: ${la}`);

      // Export: the dequantized base with the adapters merged, the same weights either way.
      const ea = exportInference(ql, a.params);
      const eb = exportInference(ref, b.params);
      assert.ok(![...ea.graph.initializers.keys()].some((k) => k.includes('.q4')), 'no 4-bit tensors in the export');
      assert.ok(!ea.graph.nodes.some((n) => n.opType === 'DequantizeLinear'));
      const weights = [...eb.graph.initializers].filter(([name, t]) => t.dtype === 'float32' && !/^(const|scalar|ints)(_\d+)?$/.test(name));
      assert.equal(weights.filter(([name]) => name.endsWith('_proj.weight')).length, 14);
      for (const [name, t] of weights) {
        const other = ea.graph.initializers.get(name);
        assert.ok(other, `${name} in both exports`);
        const x = other.data as Float32Array,
          y = t.data as Float32Array;
        let max = 0;
        for (let i = 0; i < y.length; i++) max = Math.max(max, Math.abs(x[i]! - y[i]!));
        assert.ok(max <= 1e-5, `${name}: max diff ${max}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

test("onnxruntime's optimized step graph keeps the weights 4-bit: no float32 projection, one dequantization per forward and backward use", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-q4o-'));
  try {
    const { q4 } = tinyQ4(join(dir, 'm'));
    const prog = compileTrainStep(q4, OPTS);
    // The session's own graph after its optimizations (constant folding included), at the level createSession uses.
    const optimized = join(dir, 'optimized.onnx');
    const s = await ort.InferenceSession.create(encodeModel(prog.step), {
      graphOptimizationLevel: 'extended',
      optimizedModelFilePath: optimized,
    });
    await s.release();
    const m = loadModel(optimized);
    const big = [...m.graph.initializers.values()].filter(
      (t) => t.dtype === 'float32' && t.data.length >= 32 * 32 && !/embed_tokens|lm_head|Transpose/.test(t.name),
    );
    assert.deepEqual(
      big.map((t) => t.name),
      [],
      'no float32 projection-sized initializer',
    );
    assert.equal([...m.graph.initializers.values()].filter((t) => t.dtype === 'uint4').length, 14);
    // 14 forward uses; the backward needs the input gradient of every projection but layer 0's q, k and v
    // (their input comes from the frozen embedding): 11.
    assert.equal(m.graph.nodes.filter((n) => n.opType === 'DequantizeLinear').length, 14 + 11);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

for (const family of LLAMA_FAMILY)
  test(`${family}: QLoRA adapter gradients (through every dequantized projection) match finite differences`, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-q4g-'));
    try {
      const { q4 } = tinyQ4(join(dir, 'm'), family);
      const prog = compileTrainStep(q4, { ...OPTS, optimizer: { kind: 'sgd' } });
      // B starts at zero (A's gradient would be zero): give every adapter a nonzero B.
      const rng = new Rng(5);
      for (const p of prog.params)
        if (p.name.endsWith('lora_B.weight')) p.init = Float32Array.from({ length: p.init.length }, () => rng.uniform(-0.3, 0.3));
      const t = tokens(2, 8, 2);
      const feeds = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, new ort.Tensor('int64', v.data as BigInt64Array, v.dims)]));
      const r = await programGradCheck(prog, feeds, { dtype: 'float32', h: 1e-2, threads: 1, pick: largestAndRandom(new Rng(9), 1) });
      assert.ok(r.checked >= 50, `${r.checked} elements checked`);
      assert.ok(r.rel < 1e-2, `relative error ${r.rel}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

test('full fine-tuning of a 4-bit model is refused with a clear error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-q4f-'));
  try {
    const { q4 } = tinyQ4(join(dir, 'm'));
    assert.throws(() => compileTrainStep(q4, { ...OPTS, trainable: { kind: 'full' } }), /4-bit frozen weights trains with LoRA only/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
