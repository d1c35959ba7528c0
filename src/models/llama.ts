/**
 * LLaMA-style decoder-only causal LM as an ONNX forward graph: RMSNorm, rotary position embeddings
 * (rotate_half form, as transformers applies them), SwiGLU MLP and grouped-query attention.
 *
 * Inputs: input_ids, attention_mask: int64 [batch, seq] (right padding). Output: `logits` [batch, seq, vocab].
 * Projections are nn.Linear weights, stored transposed ([in, out]) under their Hugging Face names
 * (`model.layers.0.self_attn.q_proj.weight`, …). Positions are 0..seq-1 (no KV cache: training graphs).
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { InputError } from '../errors.ts';
import { attention, causalBias, linear, mergeHeads, positions, rmsNorm, seqLenOf, silu } from './layers.ts';
import { ModelConfig, Weights, transpose2d } from './weights.ts';

export interface LlamaConfig {
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
  attentionBias: boolean;
  mlpBias: boolean;
}

export function readLlamaConfig(dir: string): LlamaConfig {
  const c = ModelConfig.read(dir);
  c.oneOf('model_type', ['llama'], 'llama');
  c.oneOf('hidden_act', ['silu'], 'silu');
  c.unsupportedUnless('rope_scaling', () => false, 'rope_scaling variants (linear, dynamic, llama3, yarn) are not implemented; use a model without rope_scaling');
  c.unsupportedUnless('pretraining_tp', (v) => v === 1, 'tensor-parallel slicing of the MLP');
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  const kvHeads = c.int('num_key_value_heads', heads);
  if (heads % kvHeads !== 0) throw new InputError(`num_attention_heads ${heads} is not a multiple of num_key_value_heads ${kvHeads}`, { where: `${c.path}: num_key_value_heads` });
  const headDim = c.int('head_dim', Math.floor(hidden / heads));
  if (headDim % 2 !== 0) throw new InputError(`head_dim ${headDim} must be even for rotary embeddings`, { where: `${c.path}: head_dim` });
  return {
    vocabSize: c.int('vocab_size'), hidden, intermediate: c.int('intermediate_size'), layers: c.int('num_hidden_layers'), heads, kvHeads, headDim,
    eps: c.num('rms_norm_eps', 1e-6), ropeTheta: c.num('rope_theta', 10000), tieEmbeddings: c.bool('tie_word_embeddings', false),
    attentionBias: c.bool('attention_bias', false), mlpBias: c.bool('mlp_bias', false),
  };
}

export function buildLlamaGraph(dir: string): { model: Model; config: LlamaConfig } {
  const cfg = readLlamaConfig(dir);
  const w = Weights.read(dir);
  const { hidden: H, heads: nh, kvHeads: nkv, headDim: dh } = cfg;
  const g = new GraphBuilder({ opset: 17, name: 'llama_causal_lm' });
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const embed = g.initializer('model.embed_tokens.weight', w.get('model.embed_tokens.weight', [cfg.vocabSize, H]), [cfg.vocabSize, H]);
  let x = g.op('Gather', [embed, ids], { axis: 0 });
  const seqLen = seqLenOf(g, ids);
  const bias = causalBias(g, mask, seqLen);

  // cos/sin [seq, dh] from positions × inverse frequencies, duplicated over both halves (transformers' layout).
  const half = dh / 2;
  const invFreq = new Float32Array(dh);
  for (let i = 0; i < half; i++) invFreq[i] = invFreq[i + half] = 1 / cfg.ropeTheta ** ((2 * i) / dh);
  const angles = g.op('Mul', [g.op('Unsqueeze', [g.op('Cast', [positions(g, seqLen)], { to: 1 }), g.ints([1])]), g.constant(invFreq, [dh], 'float32', 'rope_inv_freq')]);
  const cos = g.op('Cos', [angles]);
  const sin = g.op('Sin', [angles]);
  const rope = (t: string) => {
    const x1 = g.op('Slice', [t, g.ints([0]), g.ints([half]), g.ints([-1])]);
    const x2 = g.op('Slice', [t, g.ints([half]), g.ints([dh]), g.ints([-1])]);
    const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 });
    return g.op('Add', [g.op('Mul', [t, cos]), g.op('Mul', [rotated, sin])]);
  };
  const proj = (t: string, name: string, inF: number, outF: number, withBias: boolean) =>
    linear(g, t, name, w.linear(`${name}.weight`, inF, outF), inF, outF, withBias ? w.get(`${name}.bias`, [outF]) : undefined);
  const heads = (t: string, n: number) => g.op('Transpose', [g.op('Reshape', [t, g.ints([0, 0, n, dh])])], { perm: [0, 2, 1, 3] });
  // Grouped-query attention: each kv head serves nh/nkv consecutive query heads (transformers' repeat_kv).
  const repeatKv = (t: string) => nkv === nh ? t
    : g.op('Reshape', [g.op('Expand', [g.op('Unsqueeze', [t, g.ints([2])]), g.ints([1, 1, nh / nkv, 1, 1])]), g.ints([0, nh, -1, dh])]);

  for (let l = 0; l < cfg.layers; l++) {
    const p = `model.layers.${l}`;
    const a = rmsNorm(g, x, `${p}.input_layernorm`, w.get(`${p}.input_layernorm.weight`, [H]), cfg.eps);
    const q = rope(heads(proj(a, `${p}.self_attn.q_proj`, H, nh * dh, cfg.attentionBias), nh));
    const k = repeatKv(rope(heads(proj(a, `${p}.self_attn.k_proj`, H, nkv * dh, cfg.attentionBias), nkv)));
    const v = repeatKv(heads(proj(a, `${p}.self_attn.v_proj`, H, nkv * dh, cfg.attentionBias), nkv));
    const ctx = mergeHeads(g, attention(g, q, k, v, dh, bias), nh * dh);
    x = g.op('Add', [x, proj(ctx, `${p}.self_attn.o_proj`, nh * dh, H, cfg.attentionBias && w.has(`${p}.self_attn.o_proj.bias`))]);
    const m = rmsNorm(g, x, `${p}.post_attention_layernorm`, w.get(`${p}.post_attention_layernorm.weight`, [H]), cfg.eps);
    const gated = g.op('Mul', [silu(g, proj(m, `${p}.mlp.gate_proj`, H, cfg.intermediate, cfg.mlpBias)), proj(m, `${p}.mlp.up_proj`, H, cfg.intermediate, cfg.mlpBias)]);
    x = g.op('Add', [x, proj(gated, `${p}.mlp.down_proj`, cfg.intermediate, H, cfg.mlpBias)]);
  }
  x = rmsNorm(g, x, 'model.norm', w.get('model.norm.weight', [H]), cfg.eps);
  const head = cfg.tieEmbeddings
    ? g.op('Transpose', [embed], { perm: [1, 0] })
    : g.initializer('lm_head.weight', transpose2d(w.get('lm_head.weight', [cfg.vocabSize, H]), cfg.vocabSize, H), [H, cfg.vocabSize]);
  g.output(g.op('MatMul', [x, head]), 'logits');
  g.setMetadata('tempered.architecture', 'llama-causal-lm');
  return { model: g.build(), config: cfg };
}
