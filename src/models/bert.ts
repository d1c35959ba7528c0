/**
 * BERT-family encoders (BERT, MiniLM) as ONNX forward graphs, from config.json + safetensors.
 *
 * Inputs: input_ids, attention_mask, token_type_ids: int64 [batch, seq].
 * Outputs: `logits` [batch, numLabels] (classifier) and `embeddings` [batch, hidden] (the pooled features),
 * or for `buildEncoderGraph` just `embeddings` (optionally L2-normalised, as sentence-transformers does).
 * Linear weights are stored [in, out] under their Hugging Face names (a `bert.` prefix is dropped).
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { Rng } from '../engine/prng.ts';
import { InputError } from '../errors.ts';
import {
  attention,
  dropout,
  geluErf,
  layerNorm,
  linear,
  mergeHeads,
  normalL2,
  paddingBias,
  seqLenOf,
  splitHeads,
  firstRows,
} from './layers.ts';
import { ModelConfig, Weights } from './weights.ts';

export type { Pooling } from './pooling.ts';
import type { Pooling } from './pooling.ts';

export interface BertConfig {
  vocabSize: number;
  hidden: number;
  layers: number;
  heads: number;
  intermediate: number;
  maxPositions: number;
  typeVocabSize: number;
  eps: number;
  initializerRange: number;
  /** hidden_dropout_prob: after the embeddings, each attention output and each MLP output (transformers' default 0.1). */
  hiddenDropout: number;
  /** attention_probs_dropout_prob: on the attention probabilities (default 0.1). */
  attentionDropout: number;
  /** classifier_dropout, or hidden_dropout_prob when null: on the pooled features before the classifier. */
  classifierDropout: number;
}

/** Dropout rates that replace the checkpoint's (undefined: keep the config's). */
export interface DropoutRates {
  hidden?: number;
  attention?: number;
  classifier?: number;
}

export function readBertConfig(dir: string): BertConfig {
  const c = ModelConfig.read(dir);
  c.oneOf('model_type', ['bert'], 'bert');
  c.oneOf('hidden_act', ['gelu'], 'gelu');
  c.oneOf('position_embedding_type', ['absolute'], 'absolute');
  c.unsupportedUnless('is_decoder', (v) => v === false, 'encoder-only models are supported');
  const cfg: BertConfig = {
    vocabSize: c.int('vocab_size'),
    hidden: c.int('hidden_size'),
    layers: c.int('num_hidden_layers'),
    heads: c.int('num_attention_heads'),
    intermediate: c.int('intermediate_size'),
    maxPositions: c.int('max_position_embeddings', 512),
    typeVocabSize: c.int('type_vocab_size', 2),
    eps: c.num('layer_norm_eps', 1e-12),
    initializerRange: c.num('initializer_range', 0.02),
    hiddenDropout: c.rate('hidden_dropout_prob', 0.1),
    attentionDropout: c.rate('attention_probs_dropout_prob', 0.1),
    classifierDropout: 0,
  };
  cfg.classifierDropout =
    c.raw['classifier_dropout'] === null || c.raw['classifier_dropout'] === undefined
      ? cfg.hiddenDropout
      : c.rate('classifier_dropout', cfg.hiddenDropout);
  if (cfg.hidden % cfg.heads !== 0)
    throw new InputError(`hidden_size ${cfg.hidden} is not a multiple of num_attention_heads ${cfg.heads}`, {
      where: `${c.path}: num_attention_heads`,
    });
  return cfg;
}

/**
 * Encoder body: embeddings + layers. Returns the last hidden state [batch, seq, hidden] and the float mask.
 * Dropout sits where transformers' BertModel applies it (Dropout nodes; identities outside training).
 */
function encoder(g: GraphBuilder, cfg: BertConfig, w: Weights): { hidden: string; maskF: string } {
  const H = cfg.hidden;
  const dh = H / cfg.heads;
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const types = g.input('token_type_ids', 'int64', ['batch', 'seq']);
  const emb = (name: string, rows: number) => g.initializer(name, w.get(name, [rows, H]), [rows, H]);
  const word = emb('embeddings.word_embeddings.weight', cfg.vocabSize);
  const pos = emb('embeddings.position_embeddings.weight', cfg.maxPositions);
  const typ = emb('embeddings.token_type_embeddings.weight', cfg.typeVocabSize);
  const seqLen = seqLenOf(g, ids);
  let x = g.op('Add', [
    g.op('Add', [g.op('Gather', [word, ids], { axis: 0 }), g.op('Gather', [typ, types], { axis: 0 })]),
    firstRows(g, pos, seqLen),
  ]);
  const ln = (t: string, name: string) => layerNorm(g, t, name, w.get(`${name}.weight`, [H]), w.get(`${name}.bias`, [H]), cfg.eps);
  const lin = (t: string, name: string, inF: number, outF: number) =>
    linear(g, t, name, w.linear(`${name}.weight`, inF, outF), inF, outF, w.get(`${name}.bias`, [outF]));
  x = dropout(g, ln(x, 'embeddings.LayerNorm'), cfg.hiddenDropout, 'embeddings.dropout');
  const { bias, maskF } = paddingBias(g, mask);
  for (let l = 0; l < cfg.layers; l++) {
    const p = `encoder.layer.${l}`;
    const q = splitHeads(g, lin(x, `${p}.attention.self.query`, H, H), cfg.heads, dh);
    const k = splitHeads(g, lin(x, `${p}.attention.self.key`, H, H), cfg.heads, dh);
    const v = splitHeads(g, lin(x, `${p}.attention.self.value`, H, H), cfg.heads, dh);
    const ctx = mergeHeads(g, attention(g, q, k, v, dh, bias, { rate: cfg.attentionDropout, name: `${p}.attention.self.dropout` }), H);
    const attnOut = dropout(g, lin(ctx, `${p}.attention.output.dense`, H, H), cfg.hiddenDropout, `${p}.attention.output.dropout`);
    x = ln(g.op('Add', [attnOut, x]), `${p}.attention.output.LayerNorm`);
    const inter = geluErf(g, lin(x, `${p}.intermediate.dense`, H, cfg.intermediate));
    const mlpOut = dropout(g, lin(inter, `${p}.output.dense`, cfg.intermediate, H), cfg.hiddenDropout, `${p}.output.dropout`);
    x = ln(g.op('Add', [mlpOut, x]), `${p}.output.LayerNorm`);
  }
  return { hidden: x, maskF };
}

function pool(g: GraphBuilder, cfg: BertConfig, w: Weights, hidden: string, maskF: string, pooling: Pooling): string {
  if (pooling === 'mean') {
    // Masked mean (sentence-transformers): padding contributes nothing; the count is clamped like theirs.
    // The sum over tokens as mask [B, 1, S] × hidden [B, S, H]: one dot product per output, added up in the same order
    // at any thread count. ReduceSum over the middle axis split the tokens between threads from 12 threads on ([8, 32,
    // 384] in a MiniLM step), so the features, and the trained weights, changed with `threads`.
    const m = g.op('Unsqueeze', [maskF, g.ints([1])]);
    const summed = g.op('Squeeze', [g.op('MatMul', [m, hidden]), g.ints([1])]);
    const count = g.op('Max', [g.op('ReduceSum', [maskF, g.ints([1])], { keepdims: 1 }), g.scalar(1e-9)]);
    return g.op('Div', [summed, count]);
  }
  const cls = g.op('Gather', [hidden, g.constant([0], [], 'int64')], { axis: 1 });
  if (pooling === 'cls') return cls;
  // BertForSequenceClassification's pooler: tanh(dense(CLS)).
  const H = cfg.hidden;
  if (!w.has('pooler.dense.weight'))
    throw new InputError('pooling "pooler" needs pooler.dense.* weights, which this checkpoint lacks', {
      where: w.where,
      hint: 'use pooling "cls" or "mean"',
    });
  return g.op('Tanh', [linear(g, cls, 'pooler.dense', w.linear('pooler.dense.weight', H, H), H, H, w.get('pooler.dense.bias', [H]))]);
}

export interface ClassifierOptions {
  numLabels: number;
  pooling: Pooling;
  /** Seeds the classifier head when the checkpoint has none of the right shape. */
  seed: number;
  /** Dropout rates instead of the checkpoint config's (hidden_dropout_prob, attention_probs_dropout_prob, classifier_dropout). */
  dropout?: DropoutRates;
}

function withRates(cfg: BertConfig, r: DropoutRates | undefined): BertConfig {
  const check = (v: number | undefined, field: string) => {
    if (v !== undefined && !(v >= 0 && v < 1))
      throw new InputError(`dropout rate must be in [0, 1), got ${v}`, { where: `train.dropout.${field}` });
    return v;
  };
  return {
    ...cfg,
    hiddenDropout: check(r?.hidden, 'hidden') ?? cfg.hiddenDropout,
    attentionDropout: check(r?.attention, 'attention') ?? cfg.attentionDropout,
    classifierDropout: check(r?.classifier, 'classifier') ?? (r?.hidden !== undefined ? r.hidden : cfg.classifierDropout),
  };
}

/**
 * Encoder + sequence-classification head. A `classifier.*` head in the checkpoint with numLabels
 * outputs is reused; otherwise it is drawn N(0, initializer_range²) from `seed` with a zero bias, as
 * transformers initialises it.
 */
export function buildClassifierGraph(dir: string, opts: ClassifierOptions): { model: Model; config: BertConfig } {
  if (!Number.isInteger(opts.numLabels) || opts.numLabels < 1)
    throw new InputError(`numLabels must be a positive integer, got ${opts.numLabels}`, { where: 'numLabels' });
  const cfg = withRates(readBertConfig(dir), opts.dropout);
  const w = Weights.read(dir, ['bert.']);
  const g = new GraphBuilder({ opset: 17, name: 'bert_classifier' });
  const { hidden, maskF } = encoder(g, cfg, w);
  const pooled = pool(g, cfg, w, hidden, maskF, opts.pooling);
  const headIn = dropout(g, pooled, cfg.classifierDropout, 'dropout'); // BertForSequenceClassification's `dropout`
  const H = cfg.hidden;
  const C = opts.numLabels;
  let headW: Float32Array;
  let headB: Float32Array;
  const existing = w.map.get('classifier.weight');
  if (existing && existing.shape[0] === C && existing.shape[1] === H && w.map.get('classifier.bias')?.shape[0] === C) {
    headW = w.linear('classifier.weight', H, C);
    headB = w.get('classifier.bias', [C]);
  } else {
    const rng = new Rng(opts.seed);
    headW = new Float32Array(H * C);
    for (let i = 0; i < headW.length; i++) headW[i] = rng.normal() * cfg.initializerRange;
    headB = new Float32Array(C);
  }
  const logits = linear(g, headIn, 'classifier', headW, H, C, headB);
  g.output(logits, 'logits');
  g.output(pooled, 'embeddings');
  g.setMetadata('tempered.architecture', `bert-classifier/${opts.pooling}`);
  return { model: g.build(), config: cfg };
}

/** Encoder → pooled sentence embeddings [batch, hidden] (`normalize`: L2, as sentence-transformers' Normalize module). */
export function buildEncoderGraph(dir: string, opts: { pooling: Pooling; normalize?: boolean }): { model: Model; config: BertConfig } {
  // Embeddings are inference only: no dropout.
  const cfg = withRates(readBertConfig(dir), { hidden: 0, attention: 0 });
  const w = Weights.read(dir, ['bert.']);
  const g = new GraphBuilder({ opset: 17, name: 'bert_encoder' });
  const { hidden, maskF } = encoder(g, cfg, w);
  let pooled = pool(g, cfg, w, hidden, maskF, opts.pooling);
  if (opts.normalize) pooled = normalL2(g, pooled);
  g.output(pooled, 'embeddings');
  g.setMetadata('tempered.architecture', `bert-encoder/${opts.pooling}${opts.normalize ? '/l2' : ''}`);
  return { model: g.build(), config: cfg };
}
