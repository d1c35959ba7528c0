/**
 * MiniLM-L6 embedding inference throughput: our BERT graph on onnxruntime-node versus
 * sentence-transformers on PyTorch, side by side with the same thread count (batch 32, seq 128).
 *
 *   node --import tsx bench/embed.bench.ts [--threads 2] [--batches 10]
 *
 * The PyTorch side runs bench/embed_reference.py with $TEMPERED_REFERENCE_PYTHON (default bench/.venv's python)
 * when sentence-transformers imports there; otherwise the script says so and prints our figure alone.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { encodeModel } from '../src/onnx/proto.ts';
import { buildEncoderGraph } from '../src/models/bert.ts';
import { DEFAULT_MODEL, resolveModelSource } from '../src/models/sources.ts';
import { loadTokenizer, padBatch } from '../src/models/tokenizer.ts';

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const threads = arg('threads', 2);
const batches = arg('batches', 10);
const BATCH = 32;
const SEQ = 128;

const model = await resolveModelSource(DEFAULT_MODEL);
const tok = loadTokenizer(model.dir);
// Long enough sentences that every row fills 128 tokens: the fixed shape both sides run.
const sentences = Array.from(
  { length: BATCH },
  (_, i) => `sentence ${i}: ` + 'the quick brown fox jumps over the lazy dog and keeps running '.repeat(12),
);
const b = padBatch(
  tok,
  sentences.map((s) => tok.encode(s, null, { maxLength: SEQ })),
  { kind: 'max_length', maxLength: SEQ },
);
const t = (a: Int32Array) => new ort.Tensor('int64', BigInt64Array.from(a, BigInt), [b.rows, b.seqLen]);
const feeds = { input_ids: t(b.inputIds), attention_mask: t(b.attentionMask), token_type_ids: t(b.tokenTypeIds) };
const session = await ort.InferenceSession.create(encodeModel(buildEncoderGraph(model.dir, { pooling: 'mean', normalize: true }).model), {
  intraOpNumThreads: threads,
  interOpNumThreads: 1,
  executionMode: 'sequential',
});
await session.run(feeds); // warm-up
const t0 = performance.now();
for (let i = 0; i < batches; i++) await session.run(feeds);
const ours = (batches * BATCH) / ((performance.now() - t0) / 1000);
console.log(
  `tempered (onnxruntime-node ${ort.env.versions.common}, ${threads} threads): ${ours.toFixed(1)} sentences/s  (batch ${BATCH}, seq ${SEQ}, ${batches} batches)`,
);

const py = process.env.TEMPERED_REFERENCE_PYTHON ?? join(import.meta.dirname, '.venv', 'bin', 'python');
const script = join(import.meta.dirname, 'embed_reference.py');
if (!existsSync(py)) {
  console.log('reference: skipped (no bench/.venv; see bench/embed_reference.py)');
} else {
  const r = spawnSync(py, [script, model.dir, String(threads), String(batches)], { encoding: 'utf8' });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  const m = /sentences\/s: ([\d.]+)/.exec(line);
  if (r.status !== 0 || !m) console.log(`reference: not run (${(r.stderr || line).trim().split('\n').pop()})`);
  else {
    console.log(line);
    console.log(`ratio tempered / sentence-transformers: ${(ours / Number(m[1])).toFixed(2)}`);
  }
}
