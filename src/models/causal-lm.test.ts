import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../onnx/proto.ts';
import { InputError } from '../errors.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { buildLlamaDecoderGraph, readLlamaConfig } from './llama.ts';
import { Weights } from './weights.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;

async function run(dir: string, ids: number[][], mask: number[][]): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const { model } = buildCausalLmGraph(dir);
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
  const t = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
  const out = await s.run({ input_ids: t(ids), attention_mask: t(mask) });
  await s.release();
  return { data: out.logits!.data as Float32Array, dims: out.logits!.dims };
}

// References: transformers itself (float64, eager attention) and a NumPy float64 re-implementation. tiny-qwen2 and
// tiny-mistral (bench/fixtures/make_llama_family_fixtures.py): q/k/v biases and a tied head; a sliding window of 5 on
// rows of 12.
for (const [name, suffix] of [
  ['tiny-gpt2', 'logits-hf'],
  ['tiny-llama', 'logits-hf'],
  ['tiny-qwen2', 'logits-hf'],
  ['tiny-mistral', 'logits-hf'],
  ['tiny-gpt2', 'logits'],
  ['tiny-llama', 'logits'],
] as const) {
  test(`${name}: logits match ${name}-${suffix}.json on unpadded and right-padded rows`, async () => {
    const ref = JSON.parse(readFileSync(join(FX, `${name}-${suffix}.json`), 'utf8')) as {
      input_ids: number[][];
      attention_mask: number[][];
      logits: number[][][];
    };
    const out = await run(join(FX, name), ref.input_ids, ref.attention_mask);
    const [B, S, V] = out.dims as number[];
    assert.deepEqual([B, S, V], [ref.logits.length, ref.logits[0]!.length, ref.logits[0]![0]!.length]);
    let maxErr = 0;
    let compared = 0;
    for (let b = 0; b < B!; b++)
      for (let s = 0; s < S!; s++) {
        if (ref.attention_mask[b]![s] === 0) continue; // padded positions carry no meaning
        for (let v = 0; v < V!; v++) {
          maxErr = Math.max(maxErr, Math.abs(out.data[(b * S! + s) * V! + v]! - ref.logits[b]![s]![v]!));
          compared++;
        }
      }
    assert.ok(compared > 700);
    assert.ok(maxErr < 2e-4, `max abs error ${maxErr}`);
    if (process.env.TEMPERED_VERBOSE) console.log(name, suffix, 'max abs logit error', maxErr);
  });
}

test('causal: a later token never changes earlier logits, and padding never changes real tokens', async () => {
  for (const name of ['tiny-gpt2', 'tiny-llama']) {
    const dir = join(FX, name);
    const a = await run(dir, [[5, 17, 3, 60]], [[1, 1, 1, 1]]);
    const b = await run(dir, [[5, 17, 3, 9]], [[1, 1, 1, 1]]);
    const c = await run(dir, [[5, 17, 3, 60, 0, 0]], [[1, 1, 1, 1, 0, 0]]);
    const V = a.dims[2]!;
    for (let i = 0; i < 3 * V; i++) assert.ok(Math.abs(a.data[i]! - b.data[i]!) < 1e-5, `${name} position ${Math.floor(i / V)}`);
    for (let i = 0; i < 4 * V; i++) assert.ok(Math.abs(a.data[i]! - c.data[i]!) < 1e-5, `${name} padded ${Math.floor(i / V)}`);
    assert.ok(Math.abs(a.data[3 * V]! - b.data[3 * V]!) > 1e-4, 'the last position does see its own token');
  }
});

test("Qwen2 and Mistral configs in the hub's older form (rope_theta, no rope_parameters) and the fields their architecture ignores", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'clm-'));
  const ref = JSON.parse(readFileSync(join(FX, 'tiny-mistral-logits-hf.json'), 'utf8')) as {
    input_ids: number[][];
    attention_mask: number[][];
  };
  const variant = async (src: string, patch: Record<string, unknown>) => {
    rmSync(dir, { recursive: true, force: true });
    cpSync(join(FX, src), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
    return (await run(dir, ref.input_ids, ref.attention_mask)).data;
  };
  const same = (a: Float32Array, b: Float32Array) => a.every((v, i) => v === b[i]);
  for (const src of ['tiny-qwen2', 'tiny-mistral']) {
    const base = await variant(src, {});
    // Qwen2.5's own config.json: rope_theta at the top, sliding_window set but off (use_sliding_window false), no layer_types.
    assert.ok(same(base, await variant(src, { rope_parameters: undefined, rope_theta: 1e6, layer_types: undefined })), `${src} rope_theta`);
    // attention_bias / mlp_bias are LlamaConfig's: Qwen2 has q/k/v biases and Mistral none whatever they say.
    assert.ok(same(base, await variant(src, { attention_bias: src === 'tiny-mistral', mlp_bias: true })), `${src} bias flags`);
    assert.ok(!same(base, await variant(src, { rope_parameters: { rope_type: 'default', rope_theta: 1e4 } })), `${src} theta read`);
  }
  // Qwen2 ignores sliding_window and max_window_layers while use_sliding_window is false, as transformers does.
  const qwen = await variant('tiny-qwen2', {});
  assert.ok(same(qwen, await variant('tiny-qwen2', { sliding_window: 2, max_window_layers: 0 })));
  // Mistral v0.2+: sliding_window null is full causal attention, which differs from the window of 5 past position 4 only.
  const windowed = await variant('tiny-mistral', {});
  const full = await variant('tiny-mistral', { sliding_window: null });
  const V = 64;
  let before = 0,
    after = 0;
  for (let s = 0; s < 12; s++)
    for (let v = 0; v < V; v++) {
      const d = Math.abs(windowed[s * V + v]! - full[s * V + v]!);
      if (s < 5) before = Math.max(before, d);
      else after = Math.max(after, d);
    }
  assert.ok(before < 1e-5 && after > 0.1, `window changes positions 0-4 by ${before}, 5-11 by ${after}`);
  rmSync(dir, { recursive: true, force: true });
});

test("a Mistral config without sliding_window has transformers' default window of 4096; null has none", () => {
  const dir = mkdtempSync(join(tmpdir(), 'clm-'));
  cpSync(join(FX, 'tiny-mistral'), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  // MistralConfig's sliding_window defaults to 4096: a config.json without the key (hand-written, or from other
  // tooling) gets that window in transformers, which changes every position from 4096 on.
  delete cfg.sliding_window;
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  assert.equal(readLlamaConfig(dir).slidingWindow, 4096);
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, sliding_window: null }));
  assert.equal(readLlamaConfig(dir).slidingWindow, undefined);
  rmSync(dir, { recursive: true, force: true });
});

test('initializers carry Hugging Face names; linear weights are [in, out]', () => {
  const { model } = buildCausalLmGraph(join(FX, 'tiny-llama'));
  const init = model.graph.initializers;
  assert.deepEqual(init.get('model.layers.0.self_attn.k_proj.weight')!.dims, [32, 16]); // [hidden, kvHeads·headDim]
  assert.deepEqual(init.get('model.layers.1.mlp.down_proj.weight')!.dims, [48, 32]);
  assert.deepEqual(init.get('lm_head.weight')!.dims, [32, 64]);
  const gpt = buildCausalLmGraph(join(FX, 'tiny-gpt2')).model.graph.initializers;
  assert.deepEqual(gpt.get('h.0.attn.c_attn.weight')!.dims, [32, 96]);
  assert.ok(!gpt.has('lm_head.weight'), 'GPT-2 head is tied to wte');
  const qwen = buildCausalLmGraph(join(FX, 'tiny-qwen2')).model.graph.initializers;
  assert.deepEqual(qwen.get('model.layers.1.self_attn.k_proj.bias')!.dims, [16]);
  assert.ok(qwen.has('model.layers.0.self_attn.q_proj.bias') && qwen.has('model.layers.0.self_attn.v_proj.bias'));
  assert.ok(!qwen.has('model.layers.0.self_attn.o_proj.bias') && !qwen.has('lm_head.weight'), 'no o_proj bias; tied head');
});

test("each graph's metadata names the model's own family, not LLaMA's", () => {
  for (const family of ['llama', 'qwen2', 'mistral']) {
    const dir = join(FX, `tiny-${family}`);
    assert.equal(buildCausalLmGraph(dir).model.metadata['tempered.architecture'], `${family}-causal-lm`);
    assert.equal(buildCausalLmGraph(dir, { packed: true }).model.metadata['tempered.architecture'], `${family}-causal-lm-packed`);
    assert.equal(
      buildLlamaDecoderGraph(readLlamaConfig(dir), Weights.read(dir)).metadata['tempered.architecture'],
      `${family}-decoder-kv-cache`,
    );
  }
});

test('unsupported config values fail naming the field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'clm-'));
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['tiny-llama', { rope_scaling: { type: 'linear', factor: 2 } }, /config\.json: rope_scaling: .* not supported/],
    ['tiny-llama', { hidden_act: 'gelu' }, /config\.json: hidden_act: "gelu" is not supported; supported: "silu"/],
    ['tiny-llama', { num_key_value_heads: 3 }, /config\.json: num_key_value_heads/],
    ['tiny-llama', { tie_word_embeddings: 'yes' }, /tie_word_embeddings: must be true or false/],
    ['tiny-gpt2', { activation_function: 'relu' }, /config\.json: activation_function: "relu" is not supported/],
    ['tiny-gpt2', { scale_attn_by_inverse_layer_idx: true }, /scale_attn_by_inverse_layer_idx/],
    ['tiny-gpt2', { model_type: 't5' }, /model_type: "t5" is not supported; supported: "gpt2", "llama", "mistral", "qwen2"/],
    // Qwen2's sliding-window layers, rope variants and training-time attention dropout are not implemented.
    ['tiny-qwen2', { use_sliding_window: true }, /config\.json: use_sliding_window: true is not supported; supported: false/],
    ['tiny-qwen2', { layer_types: ['full_attention', 'sliding_attention'] }, /config\.json: layer_types: .*"full_attention"/],
    [
      'tiny-qwen2',
      { rope_parameters: { rope_type: 'yarn', factor: 4, rope_theta: 1e6 } },
      /config\.json: rope_parameters\.rope_type: "yarn"/,
    ],
    ['tiny-qwen2', { rope_scaling: { type: 'dynamic', factor: 2 } }, /config\.json: rope_scaling: .* not supported/],
    ['tiny-qwen2', { rope_parameters: { rope_theta: 'big' } }, /config\.json: rope_parameters\.rope_theta: must be a number/],
    // Per layer type (transformers 5's nested form): its rope_theta was not read, and the top-level one (or 10000) used.
    [
      'tiny-qwen2',
      { rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 5e5 } } },
      /config\.json: rope_parameters\.full_attention: .*per layer type/,
    ],
    ['tiny-qwen2', { rope_parameters: null, rope_theta: -1 }, /config\.json: rope_theta: must be at least 1/],
    // A base below 1 raises the frequencies along the head instead of lowering them; 1e-300 made them infinite and every
    // logit NaN, with no error.
    ['tiny-qwen2', { rope_parameters: null, rope_theta: 1e-300 }, /config\.json: rope_theta: must be at least 1, got 1e-300/],
    [
      'tiny-qwen2',
      { rope_parameters: { rope_type: 'default', rope_theta: 1e-300 } },
      /config\.json: rope_parameters\.rope_theta: must be at least 1, got 1e-300/,
    ],
    ['tiny-qwen2', { partial_rotary_factor: 0.5 }, /config\.json: partial_rotary_factor: 0\.5 is not supported/],
    ['tiny-qwen2', { attention_dropout: 0.1 }, /config\.json: attention_dropout: 0\.1 is not supported \(attention dropout/],
    ['tiny-qwen2', { hidden_act: 'gelu' }, /config\.json: hidden_act: "gelu" is not supported/],
    ['tiny-mistral', { sliding_window: 0 }, /config\.json: sliding_window: must be a positive integer/],
    ['tiny-mistral', { sliding_window: 2 ** 40 }, /config\.json: sliding_window: is 1099511627776, more than any model/],
    ['tiny-mistral', { sliding_window: '4096' }, /config\.json: sliding_window: must be a positive integer/],
    ['tiny-mistral', { num_key_value_heads: 3 }, /config\.json: num_key_value_heads/],
    ['tiny-mistral', { head_dim: 7 }, /config\.json: head_dim: head_dim 7 must be even/],
    ['tiny-gpt2', { n_embd: 30 }, /n_embd 30 is not a multiple of n_head 4|shape/],
    // Sizes beyond any model are refused before they allocate (a rotary table of 2^31, a graph input per layer of 10^8).
    ['tiny-llama', { head_dim: 2 ** 31 }, /config\.json: head_dim: is 2147483648, more than any model this size field allows \(4096\)/],
    ['tiny-llama', { num_hidden_layers: 1e8 }, /num_hidden_layers: is 100000000, more than any model/],
    // A negative or zero epsilon makes RMSNorm divide by zero (or take a root of a negative) on a row of zeros.
    ['tiny-llama', { rms_norm_eps: -1.5 }, /config\.json: rms_norm_eps: must be a number above 0 and below 1, got -1\.5/],
    ['tiny-llama', { rms_norm_eps: 0 }, /config\.json: rms_norm_eps: must be a number above 0 and below 1, got 0/],
    // A config.json derived from a GGUF file's metadata names the file and the key the value came from.
    [
      'tiny-llama',
      { gguf_file: 'model.gguf', num_attention_heads: 0 },
      /model\.gguf: llama\.attention\.head_count \(config\.json's num_attention_heads\): must be a positive integer, got 0/,
    ],
    // Without llama.vocab_size the vocabulary is token_embd.weight's rows, a key the file need not hold.
    [
      'tiny-llama',
      { gguf_file: 'model.gguf', vocab_size: 2 ** 23 },
      /model\.gguf: llama\.vocab_size \(or the rows of token_embd\.weight\) \(config\.json's vocab_size\): is 8388608, more than/,
    ],
    [
      'tiny-llama',
      { gguf_file: 'model.gguf', head_dim: 9 },
      /model\.gguf: llama\.attention\.key_length \(or rope\.dimension_count, or embedding_length \/ attention\.head_count\) \(config\.json's head_dim\): head_dim 9 must be even/,
    ],
  ];
  for (const [src, patch, re] of cases) {
    rmSync(dir, { recursive: true, force: true });
    cpSync(join(FX, src), dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
    assert.throws(
      () => buildCausalLmGraph(dir),
      (e: unknown) => e instanceof InputError && re.test(e.message),
      `${src} ${JSON.stringify(patch)}`,
    );
  }
  rmSync(dir, { recursive: true, force: true });
});

test('BF16 and F16 checkpoints load as float32 and give nearly the same logits', async () => {
  const { readSafetensors, writeSafetensors, fromFloat32, toFloat32 } = await import('../formats/safetensors.ts');
  const src = join(FX, 'tiny-llama');
  const ids = [[5, 17, 3, 60, 22]];
  const mask = [[1, 1, 1, 1, 1]];
  const ref = await run(src, ids, mask);
  for (const dtype of ['BF16', 'F16'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'half-'));
    cpSync(src, dir, { recursive: true });
    const f = readSafetensors(join(src, 'model.safetensors'));
    writeSafetensors(
      join(dir, 'model.safetensors'),
      new Map([...f.tensors].map(([k, t]) => [k, fromFloat32(toFloat32(t), t.shape, dtype)])),
    );
    const half = await run(dir, ids, mask);
    let maxErr = 0;
    let maxRef = 0;
    for (let i = 0; i < ref.data.length; i++) {
      maxErr = Math.max(maxErr, Math.abs(half.data[i]! - ref.data[i]!));
      maxRef = Math.max(maxRef, Math.abs(ref.data[i]!));
    }
    // bf16 keeps 8 mantissa bits, f16 11: rounding the weights moves logits by a few percent at most.
    assert.ok(maxErr > 0, `${dtype}: weights were rounded, so logits must move a little`);
    assert.ok(maxErr < (dtype === 'BF16' ? 0.08 : 0.01) * maxRef, `${dtype}: max error ${maxErr} vs max |logit| ${maxRef}`);
    rmSync(dir, { recursive: true });
  }
});
