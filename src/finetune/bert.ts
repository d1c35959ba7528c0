/**
 * BERT encoder + sequence-classification head as an ONNX forward graph, loaded from a Hugging Face
 * folder (config.json + model.safetensors). Written here because src/models has no BERT builder yet;
 * it follows the GraphBuilder conventions (HF parameter names, linear weights stored [in, out]) so the
 * engine's LoRA targeting and PEFT export work by name.
 *
 * Outputs: `logits` [batch, classes] (first, the loss reads it) and `embeddings` [batch, hidden]
 * (the pooled features; head-only training splits the graph there).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { readSafetensors, toFloat32 } from '../formats/safetensors.ts';
import { InputError } from '../errors.ts';
import { Rng } from '../engine/prng.ts';

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
  initializerRange: number;
  hiddenAct: string;
}

export type Pooling = 'cls' | 'mean';

export const FEATURES = 'embeddings';
export const LOGITS = 'logits';
export const CLASSIFIER_WEIGHT = 'classifier.weight';
export const CLASSIFIER_BIAS = 'classifier.bias';

export function readBertConfig(modelDir: string): BertConfig {
  const path = join(modelDir, 'config.json');
  if (!existsSync(path)) throw new InputError('config.json not found', { where: modelDir, hint: 'modelDir must be a Hugging Face model folder (config.json, model.safetensors, tokenizer.json)' });
  let c: Record<string, unknown>;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new InputError(`not valid JSON (${(e as Error).message})`, { where: path, cause: e });
  }
  const modelType = c.model_type;
  if (modelType !== 'bert') throw new InputError(`model_type ${JSON.stringify(modelType)} is not supported for classification; supported: "bert" (BERT, MiniLM)`, { where: `${path}: model_type` });
  const num = (key: string, dflt?: number): number => {
    const v = c[key] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(`${key} must be a number, got ${JSON.stringify(v)}`, { where: `${path}: ${key}` });
    return v;
  };
  const act = String(c.hidden_act ?? 'gelu');
  if (act !== 'gelu') throw new InputError(`hidden_act ${JSON.stringify(act)} is not supported; supported: "gelu"`, { where: `${path}: hidden_act` });
  const cfg: BertConfig = {
    vocabSize: num('vocab_size'), hiddenSize: num('hidden_size'), numLayers: num('num_hidden_layers'), numHeads: num('num_attention_heads'),
    intermediateSize: num('intermediate_size'), maxPositions: num('max_position_embeddings', 512), typeVocabSize: num('type_vocab_size', 2),
    layerNormEps: num('layer_norm_eps', 1e-12), initializerRange: num('initializer_range', 0.02), hiddenAct: act,
  };
  if (cfg.hiddenSize % cfg.numHeads !== 0) throw new InputError(`hidden_size ${cfg.hiddenSize} is not a multiple of num_attention_heads ${cfg.numHeads}`, { where: `${path}: num_attention_heads` });
  return cfg;
}

/** Weights by HF name (without any `bert.` prefix), in HF layout ([out, in] for linear weights). */
export function readBertWeights(modelDir: string): Map<string, { shape: number[]; data: Float32Array }> {
  const path = join(modelDir, 'model.safetensors');
  if (!existsSync(path)) throw new InputError('model.safetensors not found', { where: modelDir, hint: 'save the model with safe_serialization=True (the default in transformers ≥ 4.35)' });
  const file = readSafetensors(path);
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of file.tensors) {
    if (t.dtype === 'I64' || t.dtype === 'I32') continue; // position_ids buffers
    out.set(name.startsWith('bert.') ? name.slice(5) : name, { shape: t.shape, data: toFloat32(t, name) });
  }
  return out;
}

function transpose2d(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c]!;
  return out;
}

export interface BertClassifierOptions {
  numLabels: number;
  pooling: Pooling;
  /** Seeds the classifier head's initialization when the checkpoint has none. */
  seed: number;
}

/**
 * Builds the forward graph. Inputs: input_ids, attention_mask, token_type_ids (int64 [batch, seq]).
 * A `classifier.*` head present in the weights with the right shape is reused; otherwise it is drawn
 * N(0, initializer_range²) from `seed` with a zero bias, as transformers initializes it.
 */
export function buildBertClassifier(modelDir: string, opts: BertClassifierOptions): { model: Model; config: BertConfig } {
  const cfg = readBertConfig(modelDir);
  const weights = readBertWeights(modelDir);
  const H = cfg.hiddenSize;
  const heads = cfg.numHeads;
  const dh = H / heads;
  const g = new GraphBuilder({ opset: 17, name: 'bert_classifier' });
  const need = (name: string, shape: number[]) => {
    const w = weights.get(name);
    if (!w) throw new InputError(`weight ${JSON.stringify(name)} is missing`, { where: join(modelDir, 'model.safetensors'), hint: 'expected a BERT checkpoint with Hugging Face parameter names' });
    if (w.shape.length !== shape.length || w.shape.some((d, i) => d !== shape[i])) throw new InputError(`weight ${JSON.stringify(name)} has shape [${w.shape}], config.json implies [${shape}]`, { where: join(modelDir, 'model.safetensors') });
    return w.data;
  };
  const vec = (name: string, n: number) => g.initializer(name, need(name, [n]), [n]);
  const linear = (x: string, prefix: string, inF: number, outF: number) => {
    const w = g.initializer(`${prefix}.weight`, transpose2d(need(`${prefix}.weight`, [outF, inF]), outF, inF), [inF, outF]);
    return g.op('Add', [g.op('MatMul', [x, w]), vec(`${prefix}.bias`, outF)]);
  };
  const layerNorm = (x: string, prefix: string) =>
    g.op('LayerNormalization', [x, vec(`${prefix}.weight`, H), vec(`${prefix}.bias`, H)], { axis: -1, epsilon: cfg.layerNormEps });

  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const types = g.input('token_type_ids', 'int64', ['batch', 'seq']);

  const word = g.initializer('embeddings.word_embeddings.weight', need('embeddings.word_embeddings.weight', [cfg.vocabSize, H]), [cfg.vocabSize, H]);
  const pos = g.initializer('embeddings.position_embeddings.weight', need('embeddings.position_embeddings.weight', [cfg.maxPositions, H]), [cfg.maxPositions, H]);
  const typ = g.initializer('embeddings.token_type_embeddings.weight', need('embeddings.token_type_embeddings.weight', [cfg.typeVocabSize, H]), [cfg.typeVocabSize, H]);
  const seqLen = g.op('Squeeze', [g.op('Shape', [ids], { start: 1, end: 2 }), g.ints([0])]);
  const positions = g.op('Range', [g.constant([0], [], 'int64'), seqLen, g.constant([1], [], 'int64')]);
  let x = g.op('Add', [g.op('Add', [g.op('Gather', [word, ids], { axis: 0 }), g.op('Gather', [typ, types], { axis: 0 })]), g.op('Gather', [pos, positions], { axis: 0 })]);
  x = layerNorm(x, 'embeddings.LayerNorm');

  const maskF = g.op('Cast', [mask], { to: 1 });
  // Padded keys get a large negative score: exp underflows to exactly 0, so padding never changes results.
  const maskBias = g.op('Unsqueeze', [g.op('Mul', [g.op('Sub', [g.scalar(1), maskF]), g.scalar(-1e9)]), g.ints([1, 2])]);
  const invSqrt = g.scalar(1 / Math.sqrt(dh));
  const splitHeads = (t: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, heads, dh])])], { perm });
  const gelu = (t: string) => g.op('Mul', [g.op('Mul', [t, g.scalar(0.5)]), g.op('Add', [g.op('Erf', [g.op('Mul', [t, g.scalar(Math.SQRT1_2)])]), g.scalar(1)])]);

  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `encoder.layer.${l}`;
    const q = splitHeads(linear(x, `${p}.attention.self.query`, H, H), [0, 2, 1, 3]);
    const k = splitHeads(linear(x, `${p}.attention.self.key`, H, H), [0, 2, 3, 1]);
    const v = splitHeads(linear(x, `${p}.attention.self.value`, H, H), [0, 2, 1, 3]);
    const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, k]), invSqrt]), maskBias]);
    const probs = g.op('Softmax', [scores], { axis: -1 });
    const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, v])], { perm: [0, 2, 1, 3] }), g.ints([0, 0, H])]);
    x = layerNorm(g.op('Add', [linear(ctx, `${p}.attention.output.dense`, H, H), x]), `${p}.attention.output.LayerNorm`);
    const inter = gelu(linear(x, `${p}.intermediate.dense`, H, cfg.intermediateSize));
    x = layerNorm(g.op('Add', [linear(inter, `${p}.output.dense`, cfg.intermediateSize, H), x]), `${p}.output.LayerNorm`);
  }

  let pooled: string;
  if (opts.pooling === 'cls') {
    pooled = g.op('Gather', [x, g.constant([0], [], 'int64')], { axis: 1 });
  } else {
    const m = g.op('Unsqueeze', [maskF, g.ints([2])]);
    const summed = g.op('ReduceSum', [g.op('Mul', [x, m]), g.ints([1])], { keepdims: 0 });
    const count = g.op('Max', [g.op('ReduceSum', [maskF, g.ints([1])], { keepdims: 1 }), g.scalar(1e-9)]);
    pooled = g.op('Div', [summed, count]);
  }
  pooled = g.op('Identity', [pooled], {}, { outputs: [FEATURES] });

  const C = opts.numLabels;
  const existing = weights.get(CLASSIFIER_WEIGHT);
  let headW: Float32Array;
  let headB: Float32Array;
  if (existing && existing.shape[0] === C && existing.shape[1] === H && weights.get(CLASSIFIER_BIAS)?.shape[0] === C) {
    headW = transpose2d(existing.data, C, H);
    headB = Float32Array.from(weights.get(CLASSIFIER_BIAS)!.data);
  } else {
    const rng = new Rng(opts.seed);
    headW = new Float32Array(H * C);
    for (let i = 0; i < headW.length; i++) headW[i] = rng.normal() * cfg.initializerRange;
    headB = new Float32Array(C);
  }
  const w = g.initializer(CLASSIFIER_WEIGHT, headW, [H, C]);
  const b = g.initializer(CLASSIFIER_BIAS, headB, [C]);
  const logits = g.op('Add', [g.op('MatMul', [pooled, w]), b], {}, { outputs: [LOGITS] });
  g.output(logits);
  g.output(pooled);
  g.setMetadata('tempered.architecture', 'bert-sequence-classification');
  return { model: g.build(), config: cfg };
}
