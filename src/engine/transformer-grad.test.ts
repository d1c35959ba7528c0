import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { compileTrainStep } from './compile.ts';
import { programGradCheck } from './gradcheck.testing.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from './tiny-encoder.testing.ts';
import { tokenTask } from './synthetic.testing.ts';

/**
 * End-to-end check of the compiled gradient graph of a whole transformer block (embeddings with repeated
 * tokens, attention with a padding mask, layer norms, GELU MLP, pooler, classifier, cross-entropy with
 * label smoothing) against central differences of the eval graph's loss, for every weight element.
 */
async function check(cfg: TinyEncoderConfig, h: number): Promise<{ rel: number; checked: number }> {
  const prog = compileTrainStep(buildTinyEncoder(cfg), {
    loss: { kind: 'cross_entropy', labelSmoothing: 0.1 },
    trainable: { kind: 'full' },
    optimizer: { kind: 'sgd' },
  });
  const data = tokenTask({ n: 3, seq: cfg.seq, vocab: cfg.vocab, seed: 4, task: 'contains' });
  (data.attention_mask!.data as BigInt64Array)[cfg.seq - 1] = 0n; // one padded position
  const feeds = Object.fromEntries(
    ['input_ids', 'attention_mask', 'labels'].map((k) => [k, new ort.Tensor('int64', data[k]!.data as BigInt64Array, data[k]!.dims)]),
  );
  return programGradCheck(prog, feeds, { dtype: cfg.dtype === 'float64' ? 'float64' : 'float32', h });
}

test('tiny transformer block: every weight gradient matches central differences (float64, tanh GELU, rel < 1e-6)', async (t) => {
  const r = await check(
    { vocab: 7, hidden: 4, heads: 2, intermediate: 8, layers: 1, seq: 4, classes: 3, seed: 2, dtype: 'float64', gelu: 'tanh' },
    1e-6,
  );
  assert.ok(r.checked > 200);
  assert.ok(r.rel < 1e-6, `relative error ${r.rel}`);
  t.diagnostic(`${r.checked} weight elements, relative error ${r.rel}`);
});

test('tiny transformer block with exact erf GELU (float32 only on CPU: h=1e-2, rel < 1e-2)', async (t) => {
  const r = await check(
    { vocab: 7, hidden: 4, heads: 2, intermediate: 8, layers: 1, seq: 4, classes: 3, seed: 2, dtype: 'float32', gelu: 'erf' },
    1e-2,
  );
  assert.ok(r.rel < 1e-2, `relative error ${r.rel}`);
  t.diagnostic(`${r.checked} weight elements, relative error ${r.rel}`);
});
