/**
 * LLaMA-style decoder-only causal LM as an ONNX forward graph: RMSNorm, rotary position embeddings
 * (rotate_half form, as transformers applies them), SwiGLU MLP and grouped-query attention.
 *
 * Training graph inputs: input_ids, attention_mask: int64 [batch, seq] (right padding). Output: `logits` [batch, seq, vocab].
 * Projections are nn.Linear weights, stored transposed ([in, out]) under their Hugging Face names
 * (`model.layers.0.self_attn.q_proj.weight`, …). Positions are 0..seq-1 there; the generation graph
 * (`buildLlamaDecoderGraph`) is the same decoder with a key/value cache and explicit positions.
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { InputError } from '../errors.ts';
import {
  MASK_NEG,
  causalBias,
  causalGroupedAttention,
  causalHalves,
  groupedAttention,
  groupedBias,
  linear,
  mergeHeads,
  paddingBias,
  positions,
  rmsNorm,
  rotary,
  seqLenOf,
  swiGlu,
} from './layers.ts';
import { ModelConfig, Weights } from './weights.ts';
import { readQ4Weights, type Q4LlamaWeights } from './q4-weights.ts';
import { Q4_OPSET, q4Initializers } from '../engine/quant4.ts';
import { CHECKPOINTS_METADATA } from '../engine/recompute.ts';

/**
 * The model_types built by this file: the LLaMA decoder and its close relatives. Mistral is LLaMA with an optional
 * sliding attention window; Qwen2 is LLaMA with biases on the q/k/v projections (not o_proj).
 */
export const LLAMA_FAMILY = ['llama', 'mistral', 'qwen2'] as const;
export type LlamaFamilyType = (typeof LLAMA_FAMILY)[number];

export interface LlamaConfig {
  /** config.json's model_type (a GGUF's sidecar says llama). Named in the graph's metadata only: the graph follows the fields below. */
  modelType: LlamaFamilyType;
  vocabSize: number;
  hidden: number;
  intermediate: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  eps: number;
  ropeTheta: number;
  tieEmbeddings: boolean;
  /** Biases on q_proj, k_proj and v_proj (LLaMA's attention_bias, always on in Qwen2). */
  attentionBias: boolean;
  /** A bias on o_proj (when the checkpoint has the tensor): LLaMA's attention_bias; never in Qwen2 or Mistral. */
  outputBias: boolean;
  mlpBias: boolean;
  /**
   * Mistral's sliding_window W: a query attends to itself and the W − 1 keys before it, no further back (transformers'
   * sliding_window_overlay: kv_idx > q_idx − W). Absent: full causal attention.
   */
  slidingWindow?: number;
}

/** Whether a model folder's config.json names a model_type this file builds (no other field is checked). */
export function isLlamaFamily(modelType: unknown): modelType is LlamaFamilyType {
  return (LLAMA_FAMILY as readonly unknown[]).includes(modelType);
}

/**
 * `inference`: for a graph that only runs in eval mode (the KV-cache decoder; the scoring of evaluate), as transformers
 * generates and evaluates: dropout rates are not read, so a model whose config asks for attention dropout generates,
 * serves and is scored as in transformers; only training refuses it.
 */
export function readLlamaConfig(dir: string, opts: { inference?: boolean } = {}): LlamaConfig {
  const c = ModelConfig.read(dir);
  const type = c.oneOf('model_type', LLAMA_FAMILY, 'llama');
  c.oneOf('hidden_act', ['silu'], 'silu');
  c.unsupportedUnless(
    'rope_scaling',
    () => false,
    'rope_scaling variants (linear, dynamic, llama3, yarn) are not implemented; use a model without rope_scaling',
  );
  // transformers 5 writes rope_theta inside rope_parameters (`{rope_type: "default", rope_theta}`) and reads
  // rope_scaling as the same field; its other rope types rescale the frequencies.
  const rope = c.raw.rope_parameters;
  if (rope !== undefined && rope !== null && (typeof rope !== 'object' || Array.isArray(rope)))
    throw new InputError(`must be an object, got ${JSON.stringify(rope)}`, { where: c.where(`rope_parameters`) });
  const ropeParams = (rope ?? {}) as Record<string, unknown>;
  const ropeType = ropeParams.rope_type ?? ropeParams.type ?? 'default';
  if (ropeType !== 'default')
    throw new InputError(`${JSON.stringify(ropeType)} is not supported (rope scaling variants are not implemented); supported: "default"`, {
      where: c.where(`rope_parameters.rope_type`),
    });
  // rope_parameters nested by layer type ({full_attention: {rope_theta, ...}}): the flat fields below would miss its
  // rope_theta and use another base without a word.
  for (const [k, v] of Object.entries(ropeParams))
    if (typeof v === 'object' && v !== null && !Array.isArray(v))
      throw new InputError('an object is not supported here (rope parameters per layer type); supported: one flat rope_parameters', {
        where: c.where(`rope_parameters.${k}`),
      });
  for (const [where, v] of [
    ['partial_rotary_factor', c.raw.partial_rotary_factor],
    ['rope_parameters.partial_rotary_factor', ropeParams.partial_rotary_factor],
  ] as const)
    if (v !== undefined && v !== null && v !== 1)
      throw new InputError(`${JSON.stringify(v)} is not supported (rotary embeddings on part of each head); supported: 1`, {
        where: c.where(`${where}`),
      });
  let ropeTheta = c.num('rope_theta', 10000);
  let thetaField = 'rope_theta';
  if (ropeParams.rope_theta !== undefined && ropeParams.rope_theta !== null) {
    const t = ropeParams.rope_theta;
    thetaField = 'rope_parameters.rope_theta';
    if (typeof t !== 'number' || !Number.isFinite(t))
      throw new InputError(`must be a number, got ${JSON.stringify(t)}`, { where: c.where(`${thetaField}`) });
    ropeTheta = t;
  }
  // The inverse frequencies are theta^(-2i/dh): a base below 1 makes them grow along the head, and a tiny one
  // (1e-300) overflows them to Infinity in float32, so every logit is NaN. Released models use 10^4 to 10^8.
  if (!(ropeTheta >= 1))
    throw new InputError(`must be at least 1, got ${ropeTheta}`, {
      where: c.where(`${thetaField}`),
      hint: 'the base of the rotary frequencies (10000 in LLaMA)',
    });
  if (type === 'llama') c.unsupportedUnless('pretraining_tp', (v) => v === 1, 'tensor-parallel slicing of the MLP');
  // Dropout on the attention probabilities in training: the graph has none, so a model that asks for it is refused
  // rather than trained differently (released LLaMA, Mistral and Qwen2 configs all say 0.0).
  if (!opts.inference)
    c.unsupportedUnless('attention_dropout', (v) => v === 0, 'attention dropout is not implemented for this architecture; supported: 0');
  let slidingWindow: number | undefined;
  if (type === 'qwen2') {
    // Qwen2's window (sliding_window on layers from max_window_layers up) is off in every released model;
    // transformers ignores sliding_window and max_window_layers while use_sliding_window is false.
    c.oneOf('use_sliding_window', [false], false);
    const kinds = c.raw.layer_types;
    if (kinds !== undefined && kinds !== null && (!Array.isArray(kinds) || kinds.some((k) => k !== 'full_attention')))
      throw new InputError(`${JSON.stringify(kinds)} is not supported; supported: every layer "full_attention"`, {
        where: c.where(`layer_types`),
        hint: 'sliding-window layers of Qwen2 are not implemented',
      });
  }
  // Mistral's window applies to every layer (MistralModel reads no layer_types); null in Mistral v0.2 and later.
  // A config without the key gets MistralConfig's default, 4096, as in transformers: not no window.
  if (type === 'mistral' && c.raw.sliding_window !== null) slidingWindow = c.int('sliding_window', 4096, 1 << 30);
  // Bounds far beyond real models (the largest have about 128 layers, head_dim 256, hidden 16k): sizes
  // from the file that allocate (rotary tables, a graph input per layer) before any weight is checked.
  const hidden = c.int('hidden_size', undefined, 1 << 17);
  const heads = c.int('num_attention_heads', undefined, 1 << 12);
  const kvHeads = c.int('num_key_value_heads', heads, 1 << 12);
  if (heads % kvHeads !== 0)
    throw new InputError(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, {
      where: c.where(`num_key_value_heads`),
    });
  const headDim = c.int('head_dim', Math.floor(hidden / heads), 1 << 12);
  if (headDim % 2 !== 0) throw new InputError(`head_dim ${headDim} must be even for rotary embeddings`, { where: c.where(`head_dim`) });
  // attention_bias and mlp_bias are LlamaConfig fields: Mistral has no biases and Qwen2 has them on q/k/v only,
  // whatever those fields say (transformers reads them for llama alone).
  const llamaBias = type === 'llama' && c.bool('attention_bias', false);
  return {
    modelType: type,
    vocabSize: c.int('vocab_size', undefined, 1 << 22),
    hidden,
    intermediate: c.int('intermediate_size', undefined, 1 << 20),
    layers: c.int('num_hidden_layers', undefined, 1 << 10),
    heads,
    kvHeads,
    headDim,
    eps: c.numBetween('rms_norm_eps', 1e-6, 0, 1),
    ropeTheta,
    tieEmbeddings: c.bool('tie_word_embeddings', false),
    attentionBias: type === 'qwen2' || llamaBias,
    outputBias: llamaBias,
    mlpBias: type === 'llama' && c.bool('mlp_bias', false),
    ...(slidingWindow !== undefined ? { slidingWindow } : {}),
  };
}

/** Where the graph builders get float32 weights: a checkpoint (`Weights`) or an exported ONNX model's initializers. */
export interface LlamaWeights {
  has(name: string): boolean;
  get(name: string, shape: number[]): Float32Array;
  /** An nn.Linear weight in tempered's [in, out] layout. */
  linear(name: string, inF: number, outF: number): Float32Array;
}

/**
 * `quantize: 'q4'`: the QLoRA graph. The seven projections of every layer are frozen 4-bit weights dequantized in the
 * graph per use (quant4.ts; opset 21); embeddings, norms and an untied lm_head stay float32.
 */
export function buildLlamaGraph(
  dir: string,
  opts: { packed?: boolean; quantize?: 'q4'; inference?: boolean } = {},
): { model: Model; config: LlamaConfig } {
  const cfg = readLlamaConfig(dir, { inference: opts.inference });
  const w = opts.quantize === 'q4' ? readQ4Weights(dir) : Weights.read(dir);
  return { model: llamaGraph(cfg, w, false, opts.packed ?? false), config: cfg };
}

/**
 * The generation graph: the same decoder with a key/value cache, so a prompt runs once and every new token
 * costs one position. Inputs: `input_ids` and `position_ids` int64 [batch, seq], `attention_mask` int64
 * [batch, past + seq] (1 = token; left padding allowed), `past_key_values.<l>.key|value` float32
 * [past, batch, kvHeads, headDim] (past may be 0). Outputs: `logits` [batch, vocab] of the last position and
 * `new_key_values.<l>.key|value` [seq, batch, kvHeads, headDim], this call's positions alone.
 *
 * The cache is position-major so that the caller can append a call's positions to the end of one buffer and
 * feed its first `past` positions back as a view, with no copy (src/generate/decoder.ts). Returning the whole
 * cache each step instead cost a copy of it into a new JavaScript buffer per step: at 2,048 positions of
 * SmolLM2-135M that was two thirds of a step.
 */
export function buildLlamaDecoderGraph(cfg: LlamaConfig, w: LlamaWeights): Model {
  return llamaGraph(cfg, w, true);
}

/**
 * `packed`: the training graph for rows holding several examples (see packing.ts). `attention_mask` holds each
 * token's example number in its row (1, 2, …; 0 = padding) and `position_ids` int64 [batch, seq] restart at 0 for
 * every example: a query sees only earlier keys of its own example, and RoPE sees the example's own positions.
 */
function llamaGraph(cfg: LlamaConfig, w: LlamaWeights | Q4LlamaWeights, kvCache: boolean, packed = false): Model {
  const { hidden: H, heads: nh, kvHeads: nkv, headDim: dh } = cfg;
  const q4 = 'linearQ4' in w ? w : undefined;
  const g = new GraphBuilder({ opset: q4 ? Q4_OPSET : 17, name: kvCache ? 'llama_decoder' : 'llama_causal_lm' });
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', kvCache ? 'total' : 'seq']);
  const positionIds = kvCache || packed ? g.input('position_ids', 'int64', ['batch', 'seq']) : '';
  const past = kvCache
    ? Array.from({ length: cfg.layers }, (_, l) => ({
        key: g.input(`past_key_values.${l}.key`, 'float32', ['past', 'batch', nkv, dh]),
        value: g.input(`past_key_values.${l}.value`, 'float32', ['past', 'batch', nkv, dh]),
      }))
    : [];
  const embed = g.initializer('model.embed_tokens.weight', w.get('model.embed_tokens.weight', [cfg.vocabSize, H]), [cfg.vocabSize, H]);
  let x = g.op('Gather', [embed, ids], { axis: 0 });
  // The residual stream between sublayers: what activation recomputation keeps (src/engine/recompute.ts).
  const checkpoints = [x];
  const seqLen = seqLenOf(g, ids);
  let bias = kvCache ? cachedCausalBias(g, mask, seqLen) : packed ? packedCausalBias(g, mask, seqLen) : causalBias(g, mask, seqLen);
  if (cfg.slidingWindow !== undefined) bias = g.op('Add', [bias, windowBias(g, mask, seqLen, cfg.slidingWindow, kvCache)]);

  // cos/sin from positions × inverse frequencies, duplicated over both halves (transformers' layout):
  // [seq, dh] for the training graph, [batch, 1, seq, dh] from explicit position_ids for generation.
  const half = dh / 2;
  const invFreq = new Float32Array(dh);
  for (let i = 0; i < half; i++) invFreq[i] = invFreq[i + half] = 1 / cfg.ropeTheta ** ((2 * i) / dh);
  // A builder constant (not a named initializer), so full fine-tuning does not train the frequencies as a weight.
  const inv = g.constant(invFreq, [dh], 'float32');
  const angles =
    kvCache || packed
      ? g.op('Unsqueeze', [g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: 1 }), g.ints([-1])]), inv]), g.ints([1])])
      : g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positions(g, seqLen)], { to: 1 }), g.ints([1])]), inv]);
  const cos = g.op('Cos', [angles]);
  const sin = g.op('Sin', [angles]);
  // The attention scale 1/√dh rides on the queries' cos/sin tables ([seq, dh], computed once), so no pass over the
  // [batch, heads, seq, seq] scores scales them, forward or backward. At dh = 64 the scale is 1/8, a power of two:
  // the scores are the same bit for bit.
  const scale = g.scalar(1 / Math.sqrt(dh));
  const ropeQ = (t: string) => rotary(g, t, g.op('Mul', [cos, scale]), g.op('Mul', [sin, scale]), dh);
  const rope = (t: string) => rotary(g, t, cos, sin, dh);
  const proj = (t: string, name: string, inF: number, outF: number, withBias: boolean) => {
    const bias = withBias ? w.get(`${name}.bias`, [outF]) : undefined;
    if (!q4) return linear(g, t, name, w.linear(`${name}.weight`, inF, outF), inF, outF, bias);
    const y = g.op('MatMul', [t, q4Initializers(g, `${name}.weight`, q4.linearQ4(`${name}.weight`, inF, outF))]);
    return bias ? g.op('Add', [y, g.initializer(`${name}.bias`, bias, [outF])]) : y;
  };
  const heads = (t: string, n: number) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, n, dh])])], { perm: [0, 2, 1, 3] });
  // Grouped-query attention: each kv head serves nh/nkv consecutive query heads (groupedAttention). The training graphs
  // are causal over the whole row: their queries go in two halves (causalGroupedAttention).
  const gqa = { heads: nh, kvHeads: nkv, dh, scale: 1 };
  const gBias = kvCache ? groupedBias(g, bias, nh / nkv) : undefined;
  const halves = kvCache ? undefined : causalHalves(g, bias, seqLen, nh / nkv);
  const attend = (q: string, k: string, v: string) =>
    halves ? causalGroupedAttention(g, q, k, v, halves, gqa) : groupedAttention(g, q, k, v, gBias!, gqa);

  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const a = rmsNorm(g, x, `${p}.input_layernorm`, w.get(`${p}.input_layernorm.weight`, [H]), cfg.eps);
    const q = ropeQ(heads(proj(a, `${p}.self_attn.q_proj`, H, nh * dh, cfg.attentionBias), nh));
    let k = rope(heads(proj(a, `${p}.self_attn.k_proj`, H, nkv * dh, cfg.attentionBias), nkv));
    let v = heads(proj(a, `${p}.self_attn.v_proj`, H, nkv * dh, cfg.attentionBias), nkv);
    if (kvCache) {
      // The cache holds kv heads before repetition: nh/nkv times smaller than what attention reads.
      g.output(g.op('Transpose', [k], { perm: [2, 0, 1, 3] }), `new_key_values.${l}.key`);
      g.output(g.op('Transpose', [v], { perm: [2, 0, 1, 3] }), `new_key_values.${l}.value`);
      k = g.op('Concat', [g.op('Transpose', [past[l]!.key], { perm: [1, 2, 0, 3] }), k], { axis: 2 });
      v = g.op('Concat', [g.op('Transpose', [past[l]!.value], { perm: [1, 2, 0, 3] }), v], { axis: 2 });
    }
    const ctx = mergeHeads(g, attend(q, k, v), nh * dh);
    x = g.op('Add', [x, proj(ctx, `${p}.self_attn.o_proj`, nh * dh, H, cfg.outputBias && w.has(`${p}.self_attn.o_proj.bias`))]);
    checkpoints.push(x);
    const m = rmsNorm(g, x, `${p}.post_attention_layernorm`, w.get(`${p}.post_attention_layernorm.weight`, [H]), cfg.eps);
    const gated = swiGlu(
      g,
      proj(m, `${p}.mlp.gate_proj`, H, cfg.intermediate, cfg.mlpBias),
      proj(m, `${p}.mlp.up_proj`, H, cfg.intermediate, cfg.mlpBias),
    );
    x = g.op('Add', [x, proj(gated, `${p}.mlp.down_proj`, cfg.intermediate, H, cfg.mlpBias)]);
    checkpoints.push(x);
  }
  if (!kvCache) g.setMetadata(CHECKPOINTS_METADATA, checkpoints.join(','));
  // Generation needs only the last position's logits: the head is the largest matmul, so the prompt's
  // other positions never reach it. Left padding keeps the last position a real token in every row.
  if (kvCache) x = g.op('Squeeze', [g.op('Slice', [x, g.ints([-1]), g.ints([2 ** 62]), g.ints([1])]), g.ints([1])]);
  x = rmsNorm(g, x, 'model.norm', w.get('model.norm.weight', [H]), cfg.eps);
  const head = cfg.tieEmbeddings
    ? g.op('Transpose', [embed], { perm: [1, 0] })
    : g.initializer('lm_head.weight', w.linear('lm_head.weight', H, cfg.vocabSize), [H, cfg.vocabSize]);
  g.output(g.op('MatMul', [x, head]), 'logits');
  g.setMetadata('tempered.architecture', `${cfg.modelType}-${kvCache ? 'decoder-kv-cache' : packed ? 'causal-lm-packed' : 'causal-lm'}`);
  if (q4) g.setMetadata('tempered.quantization', 'q4 (4-bit blocks of 32 along the input axis, fp32 scale and offset)');
  return g.build();
}

/**
 * Causal + padding bias [batch, 1, seq, total] for queries at cache positions past..total-1: key j is
 * hidden from the query at position i when j > i or when j is padding (left padding of a batch).
 */
function cachedCausalBias(g: GraphBuilder, mask: string, seqLen: string): string {
  const total = g.op('Shape', [mask], { start: 1, end: 2 });
  const pastLen = g.op('Sub', [total, seqLen]);
  const scalar = (t: string) => g.op('Squeeze', [t, g.ints([0])]);
  const one = g.constant([1], [], 'int64');
  const qpos = g.op('Range', [scalar(pastLen), scalar(total), one]);
  const kpos = g.op('Range', [g.constant([0], [], 'int64'), scalar(total), one]);
  const future = g.op('Greater', [g.op('Unsqueeze', [kpos, g.ints([0])]), g.op('Unsqueeze', [qpos, g.ints([1])])]);
  const causal = g.op('Where', [future, g.scalar(MASK_NEG), g.scalar(0)]);
  return g.op('Add', [causal, paddingBias(g, mask).bias]);
}

/**
 * Block-diagonal causal bias [batch, 1, seq, seq] for packed rows: key j is hidden from query i when j > i or
 * when they belong to different examples (segment numbers differ; padding, 0, differs from every example).
 */
function packedCausalBias(g: GraphBuilder, segments: string, seqLen: string): string {
  const pos = positions(g, seqLen);
  const future = g.op('Greater', [g.op('Unsqueeze', [pos, g.ints([0])]), g.op('Unsqueeze', [pos, g.ints([1])])]);
  const causal = g.op('Where', [future, g.scalar(MASK_NEG), g.scalar(0)]);
  const same = g.op('Equal', [g.op('Unsqueeze', [segments, g.ints([2])]), g.op('Unsqueeze', [segments, g.ints([1])])]);
  const cross = g.op('Where', [same, g.scalar(0), g.scalar(MASK_NEG)]);
  return g.op('Unsqueeze', [g.op('Add', [cross, causal]), g.ints([1])]);
}

/**
 * Mistral's sliding window as an additive bias [seq, total]: the key at position j is hidden from the query at
 * position i when i − j ≥ window (transformers keeps kv_idx > q_idx − window). Positions are indices in the row (the
 * cache's for generation: left padding shifts a row's queries and keys alike, so their distances are the tokens'),
 * which in a packed row are also the distances within one example. Never on a key the causal bias already hides
 * (those have j > i), so the two add to at most one MASK_NEG per key, plus padding's.
 */
function windowBias(g: GraphBuilder, mask: string, seqLen: string, window: number, kvCache: boolean): string {
  const one = g.constant([1], [], 'int64');
  const scalar = (t: string) => g.op('Squeeze', [t, g.ints([0])]);
  let qpos: string, kpos: string;
  if (kvCache) {
    const total = g.op('Shape', [mask], { start: 1, end: 2 });
    qpos = g.op('Range', [scalar(g.op('Sub', [total, seqLen])), scalar(total), one]);
    kpos = g.op('Range', [g.constant([0], [], 'int64'), scalar(total), one]);
  } else qpos = kpos = positions(g, seqLen);
  const back = g.op('Sub', [g.op('Unsqueeze', [qpos, g.ints([1])]), g.op('Unsqueeze', [kpos, g.ints([0])])]);
  const far = g.op('Greater', [back, g.constant([window - 1], [], 'int64')]);
  return g.op('Where', [far, g.scalar(MASK_NEG), g.scalar(0)]);
}
