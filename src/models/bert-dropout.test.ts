/**
 * BERT's dropout in training against transformers itself: the fixture holds the loss and gradients of
 * BertForSequenceClassification in train mode, run with tempered's masks in place of torch's random ones
 * (bench/fixtures/make_bert_dropout_reference.py checked there that every dropout call transformers makes
 * gets the mask of the same shape and rate, in order). Here the compiled gradient graph, fed the same
 * masks, must give the same loss and gradients; fed them at the wrong places, it must not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import { readSafetensors } from '../formats/safetensors.ts';
import { gradName, LOSS_OUTPUT } from '../engine/compile.ts';
import { createSession, toOrt } from '../engine/runtime.ts';
import { dropoutReferenceSetup } from './dropout-reference.testing.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/bert-dropout-step.safetensors', import.meta.url));

test('train-mode dropout matches transformers BertForSequenceClassification with the same masks (loss and every gradient within 1e-4)', async (t) => {
  const ref = readSafetensors(FIXTURE);
  const root = mkdtempSync(join(tmpdir(), 'bert-dropout-'));
  try {
    const { prog, batch, masks, inputsSha256 } = dropoutReferenceSetup(join(root, 'model'));
    assert.equal(
      ref.metadata['inputs_sha256'],
      inputsSha256,
      'fixture was made from other inputs: rerun bench/fixtures/bert-dropout-reference.ts',
    );
    assert.equal(JSON.parse(ref.metadata['dropout_calls']!).length, masks.length);
    const session = await createSession(prog.grad, { device: 'cpu', threads: 1 });
    const params = Object.fromEntries(prog.params.map((p) => [p.name, toOrt(p.dtype, p.init, p.dims)]));
    const run = async (m: [string, ort.Tensor][]) => {
      const out = await session.run({ ...batch, ...params, ...Object.fromEntries(m) });
      let maxGrad = 0;
      for (const p of prog.params) {
        const want = ref.tensors.get(`grad.${p.name}`)?.data as Float32Array | undefined;
        assert.ok(want, `no torch gradient for ${p.name}`);
        const got = out[gradName(p.name)]!.data as Float32Array;
        assert.equal(got.length, want.length, p.name);
        for (let i = 0; i < want.length; i++) maxGrad = Math.max(maxGrad, Math.abs(got[i]! - want[i]!));
      }
      return { loss: Number(out[LOSS_OUTPUT]!.data[0]), maxGrad };
    };
    const refLoss = (ref.tensors.get('loss')!.data as Float32Array)[0]!;
    const same = await run(masks);
    assert.ok(Math.abs(same.loss - refLoss) < 1e-5, `loss ${same.loss} vs transformers ${refLoss}`);
    assert.ok(same.maxGrad < 1e-4, `max gradient difference ${same.maxGrad}`);

    // The comparison can fail: the masks of layer 0's attention output and MLP output swapped (same shape), or no dropout at all.
    const swapped = masks.map(([n, m]): [string, ort.Tensor] => [n, m]);
    const a = swapped.findIndex(([n]) => n.endsWith('encoder.layer.0.attention.output.dropout'));
    const b = swapped.findIndex(([n]) => n.endsWith('encoder.layer.0.output.dropout'));
    [swapped[a]![1], swapped[b]![1]] = [swapped[b]![1], swapped[a]![1]];
    const wrong = await run(swapped);
    assert.ok(wrong.maxGrad > 1e-3, `swapped masks: max gradient difference only ${wrong.maxGrad}`);
    const ones = await run(masks.map(([n, m]) => [n, new ort.Tensor('float32', new Float32Array(m.data.length).fill(1), m.dims)]));
    assert.ok(Math.abs(ones.loss - refLoss) > 1e-3 || ones.maxGrad > 1e-3, 'without dropout the result should differ');
    await session.release();
    t.diagnostic(
      `loss ${same.loss} (transformers ${refLoss}), max |Δgrad| ${same.maxGrad}; swapped masks ${wrong.maxGrad}, no dropout loss ${ones.loss}`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
