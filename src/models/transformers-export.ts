/**
 * A tempered export's model.onnx as the weights file transformers reads, for the families beside the LLaMA one
 * (src/generate/hf-weights.ts): a GPT-2 causal LM (`GPT2LMHeadModel`) and a BERT/MiniLM sequence classifier
 * (`BertForSequenceClassification`). float32, transformers' parameter names and layouts, so that
 * `from_pretrained(dir)` finds every weight it expects and no other, full fine-tuning included (which has no adapter).
 *
 * The names are those of transformers' state_dict, checked once against it (cli/commands/models-pull.test.ts
 * holds the list). tempered keeps weights for its MatMuls as [in, out]: nn.Linear wants [out, in], GPT-2's Conv1D
 * wants [in, out] as it is.
 */
import { join } from 'node:path';
import { writeSafetensors, type SafeTensor } from '../formats/safetensors.ts';
import { OnnxInitializerWeights } from '../generate/decoder.ts';
import { loadModel } from '../onnx/proto.ts';
import { readBertConfig, type Pooling } from './bert.ts';
import { readGpt2Config } from './gpt2.ts';
import { transpose2d } from './weights.ts';

function exportWeights(exportDir: string, expected: string): OnnxInitializerWeights {
  const onnxPath = join(exportDir, 'model.onnx');
  return new OnnxInitializerWeights(loadModel(onnxPath), onnxPath, expected);
}

/**
 * GPT2LMHeadModel's weights: the blocks under `transformer.` (the export has that prefix only when its base had), Conv1D
 * weights [in, out] as tempered trains them. A tied head (the base had no `lm_head.weight`) is left out, as
 * save_pretrained leaves it out: transformers ties it to `transformer.wte.weight`. Returns whether the head is tied.
 */
export function writeGpt2Safetensors(exportDir: string, outPath: string): { tied: boolean } {
  const cfg = readGpt2Config(exportDir);
  const src = exportWeights(exportDir, 'a GPT-2 model.onnx');
  const pre = src.has('transformer.wte.weight') ? 'transformer.' : '';
  const tensors = new Map<string, SafeTensor>();
  const take = (name: string, shape: number[]) =>
    tensors.set(`transformer.${name}`, { dtype: 'F32', shape, data: src.get(`${pre}${name}`, shape) });
  const H = cfg.hidden;
  take('wte.weight', [cfg.vocabSize, H]);
  take('wpe.weight', [cfg.positions, H]);
  const conv = (name: string, inF: number, outF: number) => {
    take(`${name}.weight`, [inF, outF]);
    take(`${name}.bias`, [outF]);
  };
  for (let l = 0; l < cfg.layers; l++) {
    const p = `h.${l}`;
    for (const ln of ['ln_1', 'ln_2']) {
      take(`${p}.${ln}.weight`, [H]);
      take(`${p}.${ln}.bias`, [H]);
    }
    conv(`${p}.attn.c_attn`, H, 3 * H);
    conv(`${p}.attn.c_proj`, H, H);
    conv(`${p}.mlp.c_fc`, H, cfg.inner);
    conv(`${p}.mlp.c_proj`, cfg.inner, H);
  }
  take('ln_f.weight', [H]);
  take('ln_f.bias', [H]);
  // An untied head is a graph initializer of its own, transposed to [hidden, vocab] for the MatMul (gpt2.ts).
  const tied = !src.has('lm_head.weight');
  if (!tied)
    tensors.set('lm_head.weight', {
      dtype: 'F32',
      shape: [cfg.vocabSize, H],
      data: transpose2d(src.get('lm_head.weight', [H, cfg.vocabSize]), H, cfg.vocabSize),
    });
  writeSafetensors(outPath, tensors, { format: 'pt' });
  return { tied };
}

/**
 * Why a classifier with this pooling has no transformers form, or undefined when it has one. BertForSequenceClassification
 * always puts the [CLS] vector through its pooler (dense + tanh) before the classifier; tempered's `cls` pooling feeds
 * [CLS] to the classifier as it is and `mean` the masked mean of all tokens, which no transformers class computes.
 * Weights written under its names would load without a warning and give other logits.
 */
export function classifierPoolingRefusal(pooling: Pooling | undefined): string | undefined {
  if (pooling === 'pooler') return undefined;
  return (
    `no model.safetensors for transformers: this classifier pools with ${JSON.stringify(pooling)}, and ` +
    'BertForSequenceClassification (the [CLS] vector through its pooler, dense + tanh) computes other logits from the same weights; ' +
    "a classifier trained with pooling 'pooler' gets one. model.onnx is the fine-tune (onnxruntime, tempered serve)"
  );
}

/**
 * BertForSequenceClassification's weights: the encoder and pooler under `bert.`, the head as `classifier.`, every
 * nn.Linear [out, in]. The export's weights carry no `bert.` prefix (Weights.read drops it from the base).
 */
export function writeBertClassifierSafetensors(exportDir: string, outPath: string, numLabels: number): void {
  const cfg = readBertConfig(exportDir);
  const src = exportWeights(exportDir, 'a classifier model.onnx');
  const tensors = new Map<string, SafeTensor>();
  const H = cfg.hidden;
  const take = (name: string, shape: number[], prefix = 'bert.') =>
    tensors.set(`${prefix}${name}`, { dtype: 'F32', shape, data: src.get(name, shape) });
  const linear = (name: string, inF: number, outF: number, prefix = 'bert.') => {
    const data = transpose2d(src.linear(`${name}.weight`, inF, outF), inF, outF);
    tensors.set(`${prefix}${name}.weight`, { dtype: 'F32', shape: [outF, inF], data });
    take(`${name}.bias`, [outF], prefix);
  };
  const norm = (name: string) => {
    take(`${name}.weight`, [H]);
    take(`${name}.bias`, [H]);
  };
  take('embeddings.word_embeddings.weight', [cfg.vocabSize, H]);
  take('embeddings.position_embeddings.weight', [cfg.maxPositions, H]);
  take('embeddings.token_type_embeddings.weight', [cfg.typeVocabSize, H]);
  norm('embeddings.LayerNorm');
  for (let l = 0; l < cfg.layers; l++) {
    const p = `encoder.layer.${l}`;
    for (const n of ['query', 'key', 'value']) linear(`${p}.attention.self.${n}`, H, H);
    linear(`${p}.attention.output.dense`, H, H);
    norm(`${p}.attention.output.LayerNorm`);
    linear(`${p}.intermediate.dense`, H, cfg.intermediate);
    linear(`${p}.output.dense`, cfg.intermediate, H);
    norm(`${p}.output.LayerNorm`);
  }
  linear('pooler.dense', H, H);
  linear('classifier', H, numLabels, '');
  writeSafetensors(outPath, tensors, { format: 'pt' });
}
