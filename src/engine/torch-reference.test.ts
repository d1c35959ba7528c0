import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { readSafetensors } from '../formats/safetensors.ts';
import { encodeModel } from '../onnx/proto.ts';
import { compileTrainStep, gradName, LOSS_OUTPUT, LR_INPUT, STEP_INPUT } from './compile.ts';
import { REFERENCE_LR, REFERENCE_OPTIONS, referenceSetup } from './torch-reference.testing.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/torch-tiny-bert-step.safetensors', import.meta.url));

test('one AdamW step of a tiny BERT-like encoder matches PyTorch (loss and gradients within 1e-4, weights within 1e-5 where the gradient is not ~0)', async (t) => {
  const ref = readSafetensors(FIXTURE);
  const { model, batch, inputsSha256 } = referenceSetup();
  assert.equal(
    ref.metadata['inputs_sha256'],
    inputsSha256,
    'fixture was made from other inputs: rerun bench/fixtures/engine-torch-reference.ts',
  );
  const prog = compileTrainStep(model, REFERENCE_OPTIONS);
  const feeds: Record<string, ort.Tensor> = {};
  for (const k of ['input_ids', 'attention_mask', 'labels'])
    feeds[k] = new ort.Tensor('int64', batch[k]!.data as BigInt64Array, batch[k]!.dims);
  for (const p of prog.params) feeds[p.name] = new ort.Tensor('float32', p.init as Float32Array, p.dims);
  const grads = await (await ort.InferenceSession.create(encodeModel(prog.grad))).run(feeds);
  const refLoss = (ref.tensors.get('loss')!.data as Float32Array)[0]!;
  assert.ok(Math.abs(Number(grads[LOSS_OUTPUT]!.data[0]) - refLoss) < 1e-4, `loss ${grads[LOSS_OUTPUT]!.data[0]} vs torch ${refLoss}`);
  let maxGrad = 0;
  for (const p of prog.params) {
    const want = ref.tensors.get(`grad.${p.name}`)!.data as Float32Array;
    const got = grads[gradName(p.name)]!.data as Float32Array;
    for (let i = 0; i < want.length; i++) maxGrad = Math.max(maxGrad, Math.abs(got[i]! - want[i]!));
  }
  assert.ok(maxGrad < 1e-4, `max gradient difference ${maxGrad}`);

  for (const s of prog.state) feeds[s.input] = new ort.Tensor('float32', new Float32Array(s.dims.reduce((a, b) => a * b, 1)), s.dims);
  feeds[LR_INPUT] = new ort.Tensor('float32', Float32Array.of(REFERENCE_LR), []);
  feeds[STEP_INPUT] = new ort.Tensor('float32', Float32Array.of(1), []);
  const stepped = await (await ort.InferenceSession.create(encodeModel(prog.step))).run(feeds);
  // Adam's first step moves each weight by about lr·g/(|g|+ε): where the true gradient is zero (the
  // attention key bias cancels in softmax) both sides hold rounding noise of ~1e-9 and the sign of the
  // step is arbitrary. Those elements are only checked to move by at most lr (+ decay).
  let maxW = 0;
  for (const p of prog.params) {
    const want = ref.tensors.get(`new.${p.name}`)!.data as Float32Array;
    const g = ref.tensors.get(`grad.${p.name}`)!.data as Float32Array;
    const got = stepped[`${p.name}::new`]!.data as Float32Array;
    const init = p.init as Float32Array;
    for (let i = 0; i < want.length; i++) {
      if (Math.abs(g[i]!) > 1e-6) maxW = Math.max(maxW, Math.abs(got[i]! - want[i]!));
      else {
        assert.ok(Math.abs(got[i]! - init[i]!) <= REFERENCE_LR * 1.01 + 1e-7, `${p.name}[${i}] moved too far`);
      }
    }
  }
  assert.ok(maxW < 1e-5, `max updated-weight difference ${maxW}`);
  t.diagnostic(`loss ${grads[LOSS_OUTPUT]!.data[0]} (torch ${refLoss}), max |Δgrad| ${maxGrad}, max |Δweight| ${maxW}`);
});
