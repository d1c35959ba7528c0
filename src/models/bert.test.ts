import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../onnx/proto.ts';
import type { Model } from '../onnx/ir.ts';
import { cloneModel } from '../onnx/ir.ts';
import { sinkRowGathers } from '../onnx/sink-gathers.ts';
import { InputError } from '../errors.ts';
import { buildClassifierGraph, buildEncoderGraph } from './bert.ts';
import { DEFAULT_MODEL } from './sources.ts';
import { realModel } from './real-models.testing.ts';
import { tinyBertDir, tinyGpt2Dir, tinyLlamaDir } from './tiny.testing.ts';
import { loadTokenizer, padBatch, type HfTokenizer } from './tokenizer.ts';
import { buildCausalLmGraph } from './causal-lm.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;

async function runEncoder(model: Model, tok: HfTokenizer, texts: string[], maxLength: number): Promise<Record<string, ort.Tensor>> {
  const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 2 });
  const b = padBatch(
    tok,
    texts.map((t) => tok.encode(t, null, { maxLength })),
    { kind: 'longest', maxLength },
  );
  const t = (a: Int32Array) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [b.rows, b.seqLen]);
  const out = await s.run({ input_ids: t(b.inputIds), attention_mask: t(b.attentionMask), token_type_ids: t(b.tokenTypeIds) });
  await s.release();
  return out;
}

const row = (t: ort.Tensor, i: number) => {
  const d = t.dims[1]!;
  return Array.from((t.data as Float32Array).subarray(i * d, (i + 1) * d));
};

test('tiny BERT classifier: logits [batch, numLabels] and pooled embeddings; masked mean ignores padding', async () => {
  const dir = tinyBertDir(mkdtempSync(join(tmpdir(), 'bert-')), 7);
  const tok = loadTokenizer(dir);
  const { model } = buildClassifierGraph(dir, { numLabels: 3, pooling: 'mean', seed: 1 });
  assert.deepEqual(
    model.graph.outputs.map((o) => o.name),
    ['logits', 'embeddings'],
  );
  assert.deepEqual(model.graph.initializers.get('classifier.weight')!.dims, [16, 3]);
  assert.deepEqual(model.graph.initializers.get('encoder.layer.0.intermediate.dense.weight')!.dims, [16, 64]);
  const texts = ['this movie is great', 'call now to win a free prize, text stop to reply', 'a'];
  const out = await runEncoder(model, tok, texts, 32);
  assert.deepEqual(out.logits!.dims, [3, 3]);
  assert.deepEqual(out.embeddings!.dims, [3, 16]);
  // The same sentence alone (no padding) gives the same embedding as inside a padded batch.
  for (let i = 0; i < texts.length; i++) {
    const alone = await runEncoder(model, tok, [texts[i]!], 32);
    row(alone.embeddings!, 0).forEach((v, j) => assert.ok(Math.abs(v - row(out.embeddings!, i)[j]!) < 1e-5, `text ${i} dim ${j}`));
  }
  // Different texts → different embeddings (the graph is not constant).
  assert.ok(row(out.embeddings!, 0).some((v, j) => Math.abs(v - row(out.embeddings!, 1)[j]!) > 1e-3));
  rmSync(dir, { recursive: true });
});

test('classifier head: seeded when absent, reused when the checkpoint has one; cls/pooler pooling', async () => {
  const dir = tinyBertDir(mkdtempSync(join(tmpdir(), 'bert-')), 7);
  const a = buildClassifierGraph(dir, { numLabels: 2, pooling: 'cls', seed: 5 }).model.graph.initializers.get('classifier.weight')!.data;
  const b = buildClassifierGraph(dir, { numLabels: 2, pooling: 'cls', seed: 5 }).model.graph.initializers.get('classifier.weight')!.data;
  const c = buildClassifierGraph(dir, { numLabels: 2, pooling: 'cls', seed: 6 }).model.graph.initializers.get('classifier.weight')!.data;
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  const pooler = buildClassifierGraph(dir, { numLabels: 2, pooling: 'pooler', seed: 5 }).model;
  assert.ok(pooler.graph.initializers.has('pooler.dense.weight'));
  const out = await runEncoder(pooler, loadTokenizer(dir), ['good film'], 16);
  assert.ok(
    row(out.embeddings!, 0).every((v) => Math.abs(v) <= 1),
    'tanh pooler output',
  );
  assert.throws(() => buildClassifierGraph(dir, { numLabels: 0, pooling: 'cls', seed: 1 }), /numLabels must be a positive integer/);
  rmSync(dir, { recursive: true });
});

test('CLS and pooler classifiers keep their outputs when the last layer is pruned to the CLS row', async () => {
  const dir = tinyBertDir(mkdtempSync(join(tmpdir(), 'bert-')), 7);
  const tok = loadTokenizer(dir);
  const texts = ['this movie is great', 'call now to win a free prize, text stop to reply', 'a'];
  for (const pooling of ['cls', 'pooler'] as const) {
    const { model } = buildClassifierGraph(dir, { numLabels: 3, pooling, seed: 1 });
    const pruned = cloneModel(model);
    assert.ok(sinkRowGathers(pruned.graph) > 10, pooling);
    const [want, got] = [await runEncoder(model, tok, texts, 32), await runEncoder(pruned, tok, texts, 32)];
    for (const out of ['logits', 'embeddings'] as const) {
      const a = want[out]!.data as Float32Array,
        b = got[out]!.data as Float32Array;
      assert.deepEqual(got[out]!.dims, want[out]!.dims);
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) < 1e-5, `${pooling} ${out}[${i}]: ${a[i]} vs ${b[i]}`);
    }
  }
  rmSync(dir, { recursive: true });
});

test('tiny models are deterministic per seed and load through the real loaders', () => {
  const base = mkdtempSync(join(tmpdir(), 'tiny-'));
  const bytes = (d: string) => readFileSync(join(d, 'model.safetensors'));
  assert.deepEqual(bytes(tinyBertDir(join(base, 'a'), 3)), bytes(tinyBertDir(join(base, 'b'), 3)));
  assert.notDeepEqual(bytes(tinyBertDir(join(base, 'c'), 4)), bytes(join(base, 'a')));
  assert.deepEqual(bytes(tinyLlamaDir(join(base, 'l1'), 3)), bytes(tinyLlamaDir(join(base, 'l2'), 3)));
  tinyGpt2Dir(join(base, 'g'), 3);
  assert.equal(buildCausalLmGraph(join(base, 'g')).modelType, 'gpt2');
  assert.equal(buildCausalLmGraph(join(base, 'l1')).modelType, 'llama');
  // Reference ids from the Rust tokenizers library for the tiny WordPiece tokenizer.
  const tok = loadTokenizer(join(base, 'a'));
  const e = tok.encode('Hello, this movie is great! café 日本', 'pair b');
  assert.deepEqual(e.inputIds, [2, 47, 69, 76, 76, 79, 102, 33, 17, 8, 15, 103, 42, 65, 70, 69, 1, 1, 3, 54, 65, 73, 82, 41, 3]);
  const bpe = loadTokenizer(join(base, 'g'));
  assert.deepEqual(bpe.tokenize('Hello, th'), [72, 101, 108, 108, 111, 44, 32, 116, 104]);
  rmSync(base, { recursive: true });
});

test('unsupported BERT config values fail naming the field', () => {
  const dir = tinyBertDir(mkdtempSync(join(tmpdir(), 'bert-')), 1);
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ hidden_act: 'relu' }, /config\.json: hidden_act: "relu" is not supported; supported: "gelu"/],
    [{ position_embedding_type: 'relative_key' }, /position_embedding_type/],
    [{ model_type: 'roberta' }, /model_type: "roberta" is not supported/],
    [{ num_attention_heads: 3 }, /num_attention_heads/],
    [{ hidden_size: 32 }, /has shape \[\d+,16\], config.json implies \[\d+,32\]/],
    [{ vocab_size: 'many' }, /vocab_size: must be a positive integer/],
  ];
  for (const [patch, re] of cases) {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
    assert.throws(
      () => buildClassifierGraph(dir, { numLabels: 2, pooling: 'mean', seed: 1 }),
      (e: unknown) => e instanceof InputError && re.test(e.message),
      JSON.stringify(patch),
    );
  }
  rmSync(dir, { recursive: true });
});

// Two references: sentence-transformers on PyTorch (the real thing) and a NumPy float64 re-implementation.
for (const file of ['minilm-embeddings-st.json', 'minilm-embeddings.json'])
  test(`all-MiniLM-L6-v2 sentence embeddings match ${file} (cosine > 0.9999 per sentence)`, async (t) => {
    const minilm = await realModel(DEFAULT_MODEL);
    if ('skip' in minilm) return t.skip(minilm.skip);
    const MINILM = minilm.dir;
    const ref = JSON.parse(readFileSync(join(FX, file), 'utf8')) as { sentences: string[]; embeddings: number[][]; max_length: number };
    const { model } = buildEncoderGraph(MINILM, { pooling: 'mean', normalize: true });
    const out = await runEncoder(model, loadTokenizer(MINILM), ref.sentences, ref.max_length);
    let worst = 1;
    ref.embeddings.forEach((want, i) => {
      const got = row(out.embeddings!, i);
      let dot = 0;
      let na = 0;
      let nb = 0;
      for (let j = 0; j < want.length; j++) {
        dot += got[j]! * want[j]!;
        na += got[j]! ** 2;
        nb += want[j]! ** 2;
      }
      const cos = dot / Math.sqrt(na * nb);
      worst = Math.min(worst, cos);
      assert.ok(cos > 0.9999, `sentence ${i} ${JSON.stringify(ref.sentences[i]).slice(0, 40)}: cosine ${cos}`);
    });
    if (process.env.TEMPERED_VERBOSE) console.log(file, 'worst cosine', worst);
  });

test('mean pooling gives the same bits at any thread count (the trained weights depend on it)', async () => {
  // MiniLM's width and a training batch's shape: ReduceSum over the tokens split them between threads from 12 on here.
  const dir = tinyBertDir(mkdtempSync(join(tmpdir(), 'bert-threads-')), 7, { hidden: 384, heads: 12, layers: 1, intermediate: 64 });
  try {
    const { model } = buildEncoderGraph(dir, { pooling: 'mean' });
    const [rows, seq] = [8, 32];
    const vocab = (JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
    const ids = BigInt64Array.from({ length: rows * seq }, (_, i) => BigInt((i * 7919) % vocab));
    const mask = BigInt64Array.from({ length: rows * seq }, (_, i) => (i % seq < seq - (i / seq) * 3 ? 1n : 0n));
    const feeds = {
      input_ids: new ort.Tensor('int64', ids, [rows, seq]),
      attention_mask: new ort.Tensor('int64', mask, [rows, seq]),
      token_type_ids: new ort.Tensor('int64', new BigInt64Array(rows * seq), [rows, seq]),
    };
    const pooled = async (threads: number) => {
      const s = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: threads, interOpNumThreads: 1 });
      try {
        return Array.from((await s.run(feeds)).embeddings!.data as Float32Array);
      } finally {
        await s.release();
      }
    };
    const one = await pooled(1);
    for (const threads of [2, 12, 16]) assert.deepEqual(await pooled(threads), one, `${threads} threads against 1`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
