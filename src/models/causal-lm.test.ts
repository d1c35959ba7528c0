import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../onnx/proto.ts';
import { InputError } from '../errors.ts';
import { buildCausalLmGraph } from './causal-lm.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;

async function run(dir: string, ids: number[][], mask: number[][]): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const { model } = buildCausalLmGraph(dir);
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
  const t = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
  const out = await s.run({ input_ids: t(ids), attention_mask: t(mask) });
  await s.release();
  return { data: out.logits!.data as Float32Array, dims: out.logits!.dims };
}

// References: transformers itself (float64, eager attention) and a NumPy float64 re-implementation.
for (const [name, suffix] of [
  ['tiny-gpt2', 'logits-hf'],
  ['tiny-llama', 'logits-hf'],
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

test('initializers carry Hugging Face names; linear weights are [in, out]', () => {
  const { model } = buildCausalLmGraph(join(FX, 'tiny-llama'));
  const init = model.graph.initializers;
  assert.deepEqual(init.get('model.layers.0.self_attn.k_proj.weight')!.dims, [32, 16]); // [hidden, kvHeads·headDim]
  assert.deepEqual(init.get('model.layers.1.mlp.down_proj.weight')!.dims, [48, 32]);
  assert.deepEqual(init.get('lm_head.weight')!.dims, [32, 64]);
  const gpt = buildCausalLmGraph(join(FX, 'tiny-gpt2')).model.graph.initializers;
  assert.deepEqual(gpt.get('h.0.attn.c_attn.weight')!.dims, [32, 96]);
  assert.ok(!gpt.has('lm_head.weight'), 'GPT-2 head is tied to wte');
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
    ['tiny-gpt2', { model_type: 't5' }, /model_type: "t5" is not supported; supported: "gpt2", "llama"/],
    ['tiny-gpt2', { n_embd: 30 }, /n_embd 30 is not a multiple of n_head 4|shape/],
    // Sizes beyond any model are refused before they allocate (a rotary table of 2^31, a graph input per layer of 10^8).
    ['tiny-llama', { head_dim: 2 ** 31 }, /config\.json: head_dim: is 2147483648, more than any model this size field allows \(4096\)/],
    ['tiny-llama', { num_hidden_layers: 1e8 }, /num_hidden_layers: is 100000000, more than any model/],
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
