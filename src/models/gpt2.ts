/**
 * GPT-2-style decoder-only causal LM as an ONNX forward graph, from config.json + safetensors.
 *
 * Inputs: input_ids, attention_mask: int64 [batch, seq] (right padding). Output: `logits` [batch, seq, vocab].
 * GPT-2 stores its projections as Conv1D weights, already [in, out]: they are used as they are, under
 * their Hugging Face names (with the checkpoint's `transformer.` prefix when it has one). The LM head is
 * tied to `wte.weight` unless the checkpoint carries its own `lm_head.weight`.
 */
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { InputError } from '../errors.ts';
import { attention, causalBias, firstRows, geluErf, geluTanh, layerNorm, mergeHeads, seqLenOf, splitHeads } from './layers.ts';
import { ModelConfig, Weights, transpose2d } from './weights.ts';

export interface Gpt2Config {
  vocabSize: number;
  positions: number;
  hidden: number;
  layers: number;
  heads: number;
  inner: number;
  eps: number;
  activation: 'gelu_new' | 'gelu_pytorch_tanh' | 'gelu';
}

export function readGpt2Config(dir: string): Gpt2Config {
  const c = ModelConfig.read(dir);
  c.oneOf('model_type', ['gpt2'], 'gpt2');
  const activation = c.oneOf('activation_function', ['gelu_new', 'gelu_pytorch_tanh', 'gelu'] as const, 'gelu_new');
  c.unsupportedUnless('scale_attn_by_inverse_layer_idx', (v) => v === false, 'attention scaled by layer index');
  c.unsupportedUnless('add_cross_attention', (v) => v === false, 'cross-attention (encoder-decoder use)');
  c.unsupportedUnless('scale_attn_weights', (v) => v === true, 'unscaled attention');
  const hidden = c.int(['n_embd', 'hidden_size']);
  const heads = c.int(['n_head', 'num_attention_heads']);
  if (hidden % heads !== 0) throw new InputError(`n_embd ${hidden} is not a multiple of n_head ${heads}`, { where: `${c.path}: n_head` });
  return {
    vocabSize: c.int('vocab_size'),
    positions: c.int(['n_positions', 'max_position_embeddings']),
    hidden,
    heads,
    layers: c.int(['n_layer', 'num_hidden_layers']),
    inner: c.int('n_inner', 4 * hidden),
    eps: c.num('layer_norm_epsilon', 1e-5),
    activation,
  };
}

export function buildGpt2Graph(dir: string): { model: Model; config: Gpt2Config } {
  const cfg = readGpt2Config(dir);
  const w = Weights.read(dir);
  const pre = w.has('transformer.wte.weight') ? 'transformer.' : '';
  const H = cfg.hidden;
  const dh = H / cfg.heads;
  const g = new GraphBuilder({ opset: 17, name: 'gpt2_causal_lm' });
  const ids = g.input('input_ids', 'int64', ['batch', 'seq']);
  const mask = g.input('attention_mask', 'int64', ['batch', 'seq']);
  const wte = g.initializer(`${pre}wte.weight`, w.get(`${pre}wte.weight`, [cfg.vocabSize, H]), [cfg.vocabSize, H]);
  const wpe = g.initializer(`${pre}wpe.weight`, w.get(`${pre}wpe.weight`, [cfg.positions, H]), [cfg.positions, H]);
  const seqLen = seqLenOf(g, ids);
  let x = g.op('Add', [g.op('Gather', [wte, ids], { axis: 0 }), firstRows(g, wpe, seqLen)]);
  const bias = causalBias(g, mask, seqLen);
  const ln = (t: string, name: string) => layerNorm(g, t, name, w.get(`${name}.weight`, [H]), w.get(`${name}.bias`, [H]), cfg.eps);
  const conv = (t: string, name: string, inF: number, outF: number) =>
    g.op('Add', [
      g.op('MatMul', [t, g.initializer(`${name}.weight`, w.get(`${name}.weight`, [inF, outF]), [inF, outF])]),
      g.initializer(`${name}.bias`, w.get(`${name}.bias`, [outF]), [outF]),
    ]);
  const act = cfg.activation === 'gelu' ? geluErf : geluTanh;
  for (let l = 0; l < cfg.layers; l++) {
    const p = `${pre}h.${l}`;
    const qkv = conv(ln(x, `${p}.ln_1`), `${p}.attn.c_attn`, H, 3 * H);
    const [q, k, v] = g
      .opMulti('Split', [qkv, g.ints([H, H, H])], { axis: -1 }, { outputs: 3 })
      .map((t) => splitHeads(g, t, cfg.heads, dh));
    const ctx = mergeHeads(g, attention(g, q!, k!, v!, dh, bias), H);
    x = g.op('Add', [x, conv(ctx, `${p}.attn.c_proj`, H, H)]);
    const m = act(g, conv(ln(x, `${p}.ln_2`), `${p}.mlp.c_fc`, H, cfg.inner));
    x = g.op('Add', [x, conv(m, `${p}.mlp.c_proj`, cfg.inner, H)]);
  }
  x = ln(x, `${pre}ln_f`);
  const head = w.has('lm_head.weight')
    ? g.initializer('lm_head.weight', transpose2d(w.get('lm_head.weight', [cfg.vocabSize, H]), cfg.vocabSize, H), [H, cfg.vocabSize])
    : g.op('Transpose', [wte], { perm: [1, 0] });
  g.output(g.op('MatMul', [x, head]), 'logits');
  g.setMetadata('tempered.architecture', 'gpt2-causal-lm');
  return { model: g.build(), config: cfg };
}
