/**
 * Graphs compiled with deterministicSums (the ones CUDA runs) compute the same gradients and the same
 * AdamW step as the default graphs, with the batch sums as MatMuls instead of ReduceSum over leading
 * axes and ScatterElements additions. The CUDA side (bitwise repeatability) is checked on a GPU by
 * scripts/gpu-check.ts; here, on the CPU, the values must agree up to summation order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileTrainStep, gradName, LOSS_OUTPUT, type CompileOptions, type TrainProgram } from './compile.ts';
import { createSession } from './runtime.ts';
import { buildTinyEncoder } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';
import { programFeeds } from './program-feeds.testing.ts';
import { Rng } from './prng.ts';
import type { Dataset } from './trainer.ts';
import { buildCausalLmGraph } from '../models/causal-lm.ts';
import { tinyLlamaDir } from '../models/tiny.testing.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// vocab 16 with batch 6 × 12 tokens: most token ids repeat, so the embedding's row sums add several rows.
const cfg = { vocab: 16, hidden: 16, heads: 2, intermediate: 32, layers: 2, seq: 12, classes: 3, seed: 5 };
const data = tokenTask({ n: 6, seq: cfg.seq, vocab: cfg.vocab, seed: 2, task: 'contains' });
const base: CompileOptions = {
  loss: { kind: 'cross_entropy' },
  trainable: { kind: 'full' },
  optimizer: { kind: 'adamw', weightDecay: 0.01 },
  clipNorm: 0.5,
};

const LR = 1e-2;

const count = (prog: TrainProgram, graph: 'grad' | 'step', op: string) => prog[graph].graph.nodes.filter((n) => n.opType === op).length;

function assertClose(a: Float32Array, b: Float32Array, what: string, tol = 1e-5) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!) / Math.max(1e-3, Math.abs(a[i]!)));
  assert.ok(worst <= tol, `${what}: worst relative difference ${worst}`);
}

/** Runs `graph` of both programs on the same feeds and compares the loss and every gradient or updated weight. */
async function assertSameValues(plain: TrainProgram, det: TrainProgram, data: Dataset, graph: 'grad' | 'step') {
  const run = async (prog: TrainProgram) => {
    const s = await createSession(prog[graph], { threads: 1 });
    const out = await s.run(
      programFeeds(prog, data, (n) => prog.params.find((p) => p.name === n)!.init, graph === 'step' ? { lr: LR } : undefined),
    );
    await s.release();
    return out;
  };
  const [a, b] = [await run(plain), await run(det)];
  assertClose(a[LOSS_OUTPUT]!.data as Float32Array, b[LOSS_OUTPUT]!.data as Float32Array, `${graph} loss`, 1e-6);
  for (const p of plain.params) {
    const name = graph === 'grad' ? gradName(p.name) : `${p.name}::new`;
    // A key bias's gradient is zero in exact arithmetic (it shifts a query's scores alike), so its
    // first AdamW step, about lr·sign(g), follows rounding noise; it may move by up to 2·lr either way.
    if (graph === 'step' && p.name.endsWith('key.bias')) {
      const [x, y] = [a[name]!.data as Float32Array, b[name]!.data as Float32Array];
      for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) <= 2 * LR * (1 + 1e-4), `${name}[${i}]`);
    } else assertClose(a[name]!.data as Float32Array, b[name]!.data as Float32Array, `${graph} ${name}`);
  }
}

test('deterministicSums: same gradients and AdamW step as the default graphs, batch sums as MatMuls', async () => {
  const plain = compileTrainStep(buildTinyEncoder(cfg), base);
  const det = compileTrainStep(buildTinyEncoder(cfg), { ...base, deterministicSums: true });

  // Every bias and LayerNorm gradient's ReduceSum, the embedding scatter-adds and the norm's
  // ReduceSumSquares are gone; what ReduceSum is left sums within rows (softmax, loss).
  assert.ok(count(det, 'grad', 'ReduceSum') < count(plain, 'grad', 'ReduceSum') - 10);
  assert.ok(count(det, 'step', 'ReduceSumSquare') === 0 && count(plain, 'step', 'ReduceSumSquare') > 0);
  assert.ok(count(det, 'grad', 'ScatterElements') < count(plain, 'grad', 'ScatterElements'));
  assert.ok(count(det, 'step', 'ScatterElements') < count(plain, 'step', 'ScatterElements'));

  for (const graph of ['grad', 'step'] as const) await assertSameValues(plain, det, data, graph);
});

test('deterministicSums on a tiny LLaMA (RMSNorm scales, tied embedding read by Gather and the head): same gradients and step', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'det-sums-llama-'));
  try {
    const model = () => buildCausalLmGraph(tinyLlamaDir(dir, 11, { hidden: 32, heads: 4, kvHeads: 2, layers: 2 })).model;
    const opts: CompileOptions = {
      loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: true },
      trainable: { kind: 'full' },
      optimizer: { kind: 'adamw' },
      clipNorm: 1,
    };
    const plain = compileTrainStep(model(), opts);
    const det = compileTrainStep(model(), { ...opts, deterministicSums: true });
    assert.ok(count(det, 'grad', 'ReduceSum') < count(plain, 'grad', 'ReduceSum'));
    assert.ok(count(det, 'grad', 'ScatterElements') < count(plain, 'grad', 'ScatterElements'));
    // 2 rows × 10 tokens from a vocabulary of 200: some ids repeat, so the embedding's rows add up.
    const rng = new Rng(4);
    const [rows, seq] = [2, 10];
    const ids = BigInt64Array.from({ length: rows * seq }, () => BigInt(rng.int(200)));
    const llamaData: Dataset = {
      input_ids: { dtype: 'int64', data: ids, dims: [rows, seq] },
      attention_mask: { dtype: 'int64', data: new BigInt64Array(rows * seq).fill(1n), dims: [rows, seq] },
      labels: { dtype: 'int64', data: ids.map((v, i) => (i % seq < 2 ? -100n : v)), dims: [rows, seq] },
    };
    for (const graph of ['grad', 'step'] as const) await assertSameValues(plain, det, llamaData, graph);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
