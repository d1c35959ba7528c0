/**
 * Shared setup of the PyTorch reference check: the tiny BERT-like model, batch and train options whose
 * one AdamW step bench/fixtures/make_engine_reference.py computes with PyTorch
 * (fixture: src/engine/fixtures/torch-tiny-bert-step.safetensors).
 */
import { createHash } from 'node:crypto';
import type { Model } from '../onnx/ir.ts';
import type { CompileOptions } from './compile.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';
import type { Dataset } from './trainer.ts';

export const REFERENCE_CONFIG: TinyEncoderConfig = {
  vocab: 20,
  hidden: 16,
  heads: 4,
  intermediate: 32,
  layers: 2,
  seq: 6,
  classes: 3,
  seed: 21,
  gelu: 'erf',
};
/** 2^-10: exactly representable, so the float32 lr input equals PyTorch's Python float. */
export const REFERENCE_LR = 2 ** -10;
export const REFERENCE_OPTIONS: CompileOptions = {
  loss: { kind: 'cross_entropy', labelSmoothing: 0.1 },
  trainable: { kind: 'full' },
  optimizer: { kind: 'adamw', beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 },
  clipNorm: 1.0,
};

export function referenceSetup(): { model: Model; batch: Dataset; inputsSha256: string } {
  const model = buildTinyEncoder(REFERENCE_CONFIG);
  const batch = tokenTask({ n: 4, seq: REFERENCE_CONFIG.seq, vocab: REFERENCE_CONFIG.vocab, seed: 8, task: 'first' });
  const labels = batch.labels!.data as BigInt64Array;
  labels[1] = 2n;
  labels[3] = -100n; // one ignored row
  const mask = batch.attention_mask!.data as BigInt64Array;
  mask[REFERENCE_CONFIG.seq - 1] = 0n; // one padded position
  mask[REFERENCE_CONFIG.seq - 2] = 0n;
  const h = createHash('sha256');
  for (const name of [...model.graph.initializers.keys()].sort()) {
    const t = model.graph.initializers.get(name)!;
    h.update(name).update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  }
  for (const k of ['input_ids', 'attention_mask', 'labels']) h.update(k).update(new Uint8Array(batch[k]!.data.buffer));
  return { model, batch, inputsSha256: h.digest('hex') };
}
