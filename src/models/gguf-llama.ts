/**
 * A LLaMA-family GGUF file as a Hugging Face-layout model: config.json fields from the `llama.*`
 * metadata, float32 weights under Hugging Face names in Hugging Face layout, and tokenizer files.
 *
 * llama.cpp's converter permutes the rows of the Q and K projections (per head: the two rotary halves
 * interleaved, for its RoPE kernel); `llama.ts` applies RoPE in the rotate-half form transformers uses,
 * so the permutation is undone here (as transformers' GGUF loader does).
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../data/atomic.ts';
import { InputError } from '../errors.ts';
import { dequantize, metaInt, metaNumber, metaString, type GgufFile, type GgufTensorInfo } from '../formats/gguf.ts';
import { tokenizerFromGguf } from './gguf-tokenizer.ts';
import type { Weight } from './weights.ts';

/** config.json key naming the GGUF file that holds the weights (tempered's own key). */
export const GGUF_FILE_KEY = 'gguf_file';
export const SUPPORTED_GGUF_ARCHITECTURES = ['llama'] as const;

/** Hugging Face config.json fields for a LLaMA GGUF. */
export function llamaConfigFromGguf(g: GgufFile, ggufFile: string): Record<string, unknown> {
  const arch = metaString(g, 'general.architecture');
  if (!(SUPPORTED_GGUF_ARCHITECTURES as readonly string[]).includes(arch)) {
    throw new InputError(
      `GGUF architecture ${JSON.stringify(arch)} is not supported (supported: ${SUPPORTED_GGUF_ARCHITECTURES.join(', ')})`,
      {
        where: `${g.path}: general.architecture`,
        // Qwen2 GGUFs store their q/k/v biases and rope layout under their own keys, which this reader does not map.
        hint: 'Mistral GGUFs use architecture "llama"; for Qwen2 use its Hugging Face folder (config.json + model.safetensors), which loads as model_type qwen2',
      },
    );
  }
  const k = (name: string) => `${arch}.${name}`;
  for (const key of ['rope.scaling.type', 'rope.scaling.factor', 'expert_count']) {
    const v = g.metadata.get(k(key));
    if (v !== undefined && v !== 'none' && v !== 0 && v !== 1) {
      throw new InputError(`${k(key)} = ${String(v)} is not supported (rope scaling and mixtures of experts are not implemented)`, {
        where: g.path,
      });
    }
  }
  if (g.tensors.some((t) => t.name === 'rope_freqs.weight'))
    throw new InputError('rope_freqs.weight (LLaMA-3.1 style rope scaling) is not supported', { where: g.path });
  const hidden = metaInt(g, k('embedding_length'));
  const heads = metaInt(g, k('attention.head_count'));
  const kvHeads = metaInt(g, k('attention.head_count_kv'), heads);
  const headDim = metaInt(g, k('attention.key_length'), metaInt(g, k('rope.dimension_count'), Math.floor(hidden / heads)));
  if (metaInt(g, k('rope.dimension_count'), headDim) !== headDim)
    throw new InputError(
      `${k('rope.dimension_count')} differs from the head size ${headDim} (partial rotary embeddings are not supported)`,
      { where: g.path },
    );
  const embed = requireTensor(g, 'token_embd.weight');
  const vocab = metaInt(g, k('vocab_size'), embed.shape[0]);
  const bos = g.metadata.get('tokenizer.ggml.bos_token_id');
  const eos = g.metadata.get('tokenizer.ggml.eos_token_id');
  const pad = g.metadata.get('tokenizer.ggml.padding_token_id');
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_act: 'silu',
    hidden_size: hidden,
    intermediate_size: metaInt(g, k('feed_forward_length')),
    num_hidden_layers: metaInt(g, k('block_count')),
    num_attention_heads: heads,
    num_key_value_heads: kvHeads,
    head_dim: headDim,
    rms_norm_eps: metaNumber(g, k('attention.layer_norm_rms_epsilon'), 1e-5),
    rope_theta: metaNumber(g, k('rope.freq_base'), 10000),
    max_position_embeddings: metaInt(g, k('context_length'), 2048),
    vocab_size: vocab,
    tie_word_embeddings: !g.tensors.some((t) => t.name === 'output.weight'),
    attention_bias: g.tensors.some((t) => t.name === 'blk.0.attn_q.bias'),
    mlp_bias: false,
    ...(typeof bos === 'number' ? { bos_token_id: bos } : {}),
    ...(typeof eos === 'number' ? { eos_token_id: eos } : {}),
    ...(typeof pad === 'number' ? { pad_token_id: pad } : {}),
    torch_dtype: 'float32',
    [GGUF_FILE_KEY]: ggufFile,
  };
}

/** The `<arch>.` metadata key each config.json field is derived from (llamaConfigFromGguf), for errors. */
const METADATA_OF_CONFIG: Record<string, string> = {
  hidden_size: 'embedding_length',
  intermediate_size: 'feed_forward_length',
  num_hidden_layers: 'block_count',
  num_attention_heads: 'attention.head_count',
  num_key_value_heads: 'attention.head_count_kv',
  // llamaConfigFromGguf falls back to the others when a key is absent: the error names every place the value came from.
  head_dim: 'attention.key_length (or rope.dimension_count, or embedding_length / attention.head_count)',
  rms_norm_eps: 'attention.layer_norm_rms_epsilon',
  rope_theta: 'rope.freq_base',
  max_position_embeddings: 'context_length',
  vocab_size: 'vocab_size (or the rows of token_embd.weight)',
};

/** The GGUF metadata key a field of a derived config.json comes from, or undefined for one no key holds. */
export function ggufMetadataKey(config: Record<string, unknown>, field: string): string | undefined {
  const key = METADATA_OF_CONFIG[field];
  const arch = (config.model_type as string | undefined) ?? 'llama';
  return key === undefined ? undefined : `${arch}.${key}`;
}

function requireTensor(g: GgufFile, name: string): GgufTensorInfo {
  const t = g.tensors.find((x) => x.name === name);
  if (!t) throw new InputError(`tensor ${name} is missing`, { where: g.path, hint: 'is this a LLaMA-family GGUF?' });
  return t;
}

const LAYER_NAMES: Record<string, string> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

/** llama.cpp tensor name → Hugging Face parameter name, or undefined for tensors tempered does not use. */
export function hfName(gguf: string): string | undefined {
  if (gguf === 'token_embd.weight') return 'model.embed_tokens.weight';
  if (gguf === 'output_norm.weight') return 'model.norm.weight';
  if (gguf === 'output.weight') return 'lm_head.weight';
  const m = /^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$/.exec(gguf);
  const mapped = m ? LAYER_NAMES[m[2]!] : undefined;
  return m && mapped ? `model.layers.${m[1]}.${mapped}.${m[3]}` : undefined;
}

/**
 * Undoes convert_hf_to_gguf.py's LlamaModel.permute on the rows of a [rows, cols] weight (or a bias, cols = 1):
 * GGUF row h·d + 2i + s holds Hugging Face row h·d + s·d/2 + i.
 */
export function unpermuteRows(w: Float32Array, heads: number, rows: number, cols: number): Float32Array {
  const d = rows / heads;
  const half = d / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let s = 0; s < 2; s++) {
        const src = (h * d + 2 * i + s) * cols;
        out.set(w.subarray(src, src + cols), (h * d + s * half + i) * cols);
      }
    }
  }
  return out;
}

/** Every weight as float32 under its Hugging Face name and shape (nn.Linear: [out, in]). */
export function llamaWeightsFromGguf(g: GgufFile, config: Record<string, unknown>): Map<string, Weight> {
  const heads = config.num_attention_heads as number;
  const kvHeads = config.num_key_value_heads as number;
  const out = new Map<string, Weight>();
  const unknown: string[] = [];
  for (const t of g.tensors) {
    const name = hfName(t.name);
    if (!name) {
      unknown.push(t.name);
      continue;
    }
    let data = dequantize(g, t);
    const rows = t.shape[0]!;
    const cols = t.shape.length > 1 ? t.shape[1]! : 1;
    if (/\.attn_q\.(weight|bias)$/.test(t.name)) data = unpermuteRows(data, heads, rows, cols);
    else if (/\.attn_k\.(weight|bias)$/.test(t.name)) data = unpermuteRows(data, kvHeads, rows, cols);
    out.set(name, { shape: t.shape, data });
  }
  if (unknown.length > 0) {
    throw new InputError(
      `GGUF tensors tempered does not know how to place: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}`,
      { where: g.path },
    );
  }
  return out;
}

/** Writes config.json, tokenizer.json and tokenizer_config.json for a GGUF file into `dir` (each atomically: another process may be reading them). */
export function writeGgufSidecars(g: GgufFile, dir: string, ggufFile: string): string[] {
  const config = llamaConfigFromGguf(g, ggufFile);
  const tok = tokenizerFromGguf(g);
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(config, null, 2) + '\n');
  writeFileAtomic(join(dir, 'tokenizer.json'), JSON.stringify(tok.tokenizer));
  writeFileAtomic(join(dir, 'tokenizer_config.json'), JSON.stringify(tok.config, null, 2) + '\n');
  return ['config.json', 'tokenizer.json', 'tokenizer_config.json'];
}
