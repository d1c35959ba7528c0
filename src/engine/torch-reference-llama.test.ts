// One full fine-tuning step of the tiny LLaMA (GQA, RMSNorm, RoPE, SwiGLU) against transformers' LlamaForCausalLM and
// torch.optim.AdamW: loss, every gradient and every updated weight (fixture from bench/fixtures/make_llama_step_reference.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { readSafetensors } from '../formats/safetensors.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { encodeModel } from '../onnx/proto.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, LR_INPUT, STEP_INPUT } from './compile.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/torch-tiny-llama-step.safetensors', import.meta.url));
const MODEL = fileURLToPath(new URL('../models/fixtures/tiny-llama', import.meta.url));

test('one AdamW step of a tiny LLaMA matches transformers + PyTorch (loss and gradients within 1e-4, weights within 1e-5)', async (t) => {
  const ref = readSafetensors(FIXTURE);
  const settings = JSON.parse(ref.metadata['settings']!) as {
    lr: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    clip_norm: number;
  };
  const prog = compileTrainStep(buildCausalLmGraph(MODEL).model, {
    loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: true },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw', beta1: settings.betas[0], beta2: settings.betas[1], eps: settings.eps, weightDecay: settings.weight_decay },
    clipNorm: settings.clip_norm,
  });
  const feeds: Record<string, ort.Tensor> = {};
  for (const k of ['input_ids', 'attention_mask', 'labels']) {
    const b = ref.tensors.get(`batch.${k}`)!;
    feeds[k] = new ort.Tensor(
      'int64',
      BigInt64Array.from(b.data as Float32Array, (v) => BigInt(v)),
      b.shape,
    );
  }
  for (const p of prog.params) feeds[p.name] = new ort.Tensor('float32', p.init as Float32Array, p.dims);
  // Ours are [in, out] for MatMul; transformers' nn.Linear weights are [out, in].
  const hfLayout = (name: string, ours: Float32Array, dims: number[]): Float32Array => {
    if (!/(_proj|lm_head)\.weight$/.test(name)) return ours;
    assert.deepEqual([...ref.tensors.get(`grad.${name}`)!.shape].reverse(), dims, name);
    const [r, c] = dims as [number, number];
    const out = new Float32Array(ours.length);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = ours[i * c + j]!;
    return out;
  };
  assert.deepEqual(
    prog.params.map((p) => p.name).sort(),
    [...ref.tensors.keys()]
      .filter((k) => k.startsWith('grad.'))
      .map((k) => k.slice(5))
      .sort(),
    'the same parameters are trained',
  );

  const gradSession = await ort.InferenceSession.create(encodeModel(prog.grad), { intraOpNumThreads: 1 });
  const grads = await gradSession.run(feeds);
  await gradSession.release();
  const refLoss = (ref.tensors.get('loss')!.data as Float32Array)[0]!;
  const loss = Number(grads[LOSS_OUTPUT]!.data[0]);
  assert.ok(Math.abs(loss - refLoss) < 1e-4, `loss ${loss} vs torch ${refLoss}`);
  let maxGrad = 0,
    maxRef = 0;
  for (const p of prog.params) {
    const want = ref.tensors.get(`grad.${p.name}`)!.data as Float32Array;
    const got = hfLayout(p.name, grads[gradName(p.name)]!.data as Float32Array, p.dims);
    for (let i = 0; i < want.length; i++) {
      maxGrad = Math.max(maxGrad, Math.abs(got[i]! - want[i]!));
      maxRef = Math.max(maxRef, Math.abs(want[i]!));
    }
  }
  assert.ok(maxGrad < 1e-4, `max gradient difference ${maxGrad} (largest gradient ${maxRef})`);

  for (const s of prog.state) feeds[s.input] = new ort.Tensor('float32', new Float32Array(s.dims.reduce((a, b) => a * b, 1)), s.dims);
  feeds[LR_INPUT] = new ort.Tensor('float32', Float32Array.of(settings.lr), []);
  feeds[STEP_INPUT] = new ort.Tensor('float32', Float32Array.of(1), []);
  const stepSession = await ort.InferenceSession.create(encodeModel(prog.step), { intraOpNumThreads: 1 });
  const stepped = await stepSession.run(feeds);
  await stepSession.release();
  // Adam's first step moves a weight by about lr·sign(g): where the gradient is ~0 (embedding rows of tokens not in
  // the batch, rounding noise elsewhere) the sign is arbitrary, so those elements are only held to move at most lr.
  let maxW = 0,
    moved = 0;
  for (const p of prog.params) {
    const want = ref.tensors.get(`new.${p.name}`)!.data as Float32Array;
    const g = ref.tensors.get(`grad.${p.name}`)!.data as Float32Array;
    const got = hfLayout(p.name, stepped[`${p.name}::new`]!.data as Float32Array, p.dims);
    const init = hfLayout(p.name, p.init as Float32Array, p.dims);
    for (let i = 0; i < want.length; i++) {
      if (Math.abs(g[i]!) > 1e-6) {
        maxW = Math.max(maxW, Math.abs(got[i]! - want[i]!));
        moved++;
      } else assert.ok(Math.abs(got[i]! - init[i]!) <= settings.lr * 1.01 + 1e-7, `${p.name}[${i}] moved too far`);
    }
  }
  assert.ok(maxW < 1e-5, `max updated-weight difference ${maxW}`);
  t.diagnostic(`loss ${loss} (torch ${refLoss}), max |Δgrad| ${maxGrad}, max |Δweight| ${maxW} over ${moved} weights with a gradient`);
});
