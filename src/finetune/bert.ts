/**
 * The classifier forward graph comes from the models package (BERT/MiniLM with a classification head,
 * parity-tested against reference embeddings); these are the value names the fine-tuning code relies on.
 */
import type { Model } from '../onnx/ir.ts';
import { buildClassifierGraph, type BertConfig, type DropoutRates, type Pooling } from '../models/bert.ts';

export type { BertConfig, Pooling };

/** Pooled features: graph output of the forward model, and the input of a head-only program. */
export const FEATURES = 'embeddings';
export const LOGITS = 'logits';
export const CLASSIFIER_WEIGHT = 'classifier.weight';
export const CLASSIFIER_BIAS = 'classifier.bias';

export function buildBertClassifier(
  modelDir: string,
  opts: { numLabels: number; pooling: Pooling; seed: number; dropout?: DropoutRates },
): { model: Model; config: BertConfig } {
  return buildClassifierGraph(modelDir, opts);
}
