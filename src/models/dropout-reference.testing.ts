/**
 * Shared setup of the train-mode dropout check against transformers: a tiny BERT whose config sets
 * three different dropout rates, a BertForSequenceClassification-shaped graph (pooler head), a batch
 * and one seeded set of tempered's dropout masks. bench/fixtures/make_bert_dropout_reference.py runs
 * transformers' own BertForSequenceClassification in train mode with these masks in place of torch's
 * (fixture: src/models/fixtures/bert-dropout-step.safetensors); a mask fed to the wrong place, at the
 * wrong rate, or missing makes the two disagree.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { compileTrainStep, type TrainProgram } from '../engine/compile.ts';
import { DropoutMasker } from '../engine/dropout-masks.ts';
import { buildClassifierGraph } from './bert.ts';
import { tinyBertDir } from './tiny.testing.ts';

export const REFERENCE_RATES = { hidden_dropout_prob: 0.1, attention_probs_dropout_prob: 0.2, classifier_dropout: 0.3 };
export const MASK_SEED = 20261203;
const SEQ = 8;

export interface DropoutReference {
  dir: string;
  prog: TrainProgram;
  /** input_ids, attention_mask, token_type_ids, labels. */
  batch: Record<string, ort.Tensor>;
  /** The masks in graph order (the order transformers applies its dropouts in). */
  masks: [string, ort.Tensor][];
  inputsSha256: string;
}

export function dropoutReferenceSetup(dir: string): DropoutReference {
  tinyBertDir(dir, 5, { hidden: 16, layers: 2, heads: 4 });
  const cfgPath = join(dir, 'config.json');
  writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, 'utf8')), ...REFERENCE_RATES }, null, 2));
  const { model } = buildClassifierGraph(dir, { numLabels: 3, pooling: 'pooler', seed: 2 });
  const prog = compileTrainStep(model, {
    loss: { kind: 'cross_entropy', logits: 'logits' },
    trainable: { kind: 'full' },
    optimizer: { kind: 'adamw', weightDecay: 0.01 },
  });
  const rows = [
    [2, 40, 41, 42, 43, 44, 45, 3],
    [2, 50, 51, 3, 0, 0, 0, 0],
    [2, 60, 61, 62, 3, 63, 64, 3],
  ];
  const i64 = (v: number[][]) => new ort.Tensor('int64', BigInt64Array.from(v.flat(), BigInt), [v.length, SEQ]);
  const batch = {
    input_ids: i64(rows),
    attention_mask: i64(rows.map((r) => r.map((t) => (t === 0 ? 0 : 1)))),
    token_type_ids: i64([
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 1, 1, 1],
    ]),
    labels: new ort.Tensor('int64', BigInt64Array.of(0n, 2n, 1n), [3]),
  };
  const fed = new DropoutMasker(prog.dropoutMasks, prog.dataInputs).feeds(batch, MASK_SEED);
  // The masker reuses its buffers: keep copies.
  const masks = prog.dropoutMasks.map((m): [string, ort.Tensor] => [
    m.input,
    new ort.Tensor('float32', (fed[m.input]!.data as Float32Array).slice(), fed[m.input]!.dims),
  ]);
  const h = createHash('sha256')
    .update(readFileSync(join(dir, 'model.safetensors')))
    .update(readFileSync(cfgPath));
  for (const p of prog.params) h.update(p.name).update(new Uint8Array(p.init.buffer, p.init.byteOffset, p.init.byteLength));
  for (const [k, t] of [...Object.entries(batch), ...masks])
    h.update(k).update(new Uint8Array((t.data as BigInt64Array | Float32Array).buffer));
  return { dir, prog, batch, masks, inputsSha256: h.digest('hex') };
}
