import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { compileTrainStep, gradName, LOSS_OUTPUT } from './compile.ts';
import { buildTinyEncoder, type TinyEncoderConfig } from './tiny-encoder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { tokenTask } from './synthetic.ts';

/**
 * End-to-end check of the compiled gradient graph of a whole transformer block (embeddings with repeated
 * tokens, attention with a padding mask, layer norms, GELU MLP, pooler, classifier, cross-entropy with
 * label smoothing) against central differences of the eval graph's loss, for every weight element.
 */
async function check(cfg: TinyEncoderConfig, h: number): Promise<{ rel: number; checked: number }> {
  const prog = compileTrainStep(buildTinyEncoder(cfg), { loss: { kind: 'cross_entropy', labelSmoothing: 0.1 }, trainable: { kind: 'full' }, optimizer: { kind: 'sgd' } });
  const data = tokenTask({ n: 3, seq: cfg.seq, vocab: cfg.vocab, seed: 4, task: 'contains' });
  (data.attention_mask!.data as BigInt64Array)[cfg.seq - 1] = 0n; // one padded position
  const ft = cfg.dtype === 'float64' ? 'float64' : 'float32';
  const values = new Map(prog.params.map((p) => [p.name, Float64Array.from(p.init as Float64Array)]));
  const feeds = () => {
    const f: Record<string, ort.Tensor> = {};
    for (const k of ['input_ids', 'attention_mask', 'labels']) f[k] = new ort.Tensor('int64', data[k]!.data as BigInt64Array, data[k]!.dims);
    for (const p of prog.params) f[p.name] = new ort.Tensor(ft, ft === 'float64' ? values.get(p.name)! : Float32Array.from(values.get(p.name)!), p.dims);
    return f;
  };
  const gs = await ort.InferenceSession.create(encodeModel(prog.grad));
  const es = await ort.InferenceSession.create(encodeModel(prog.eval));
  const grads = await gs.run(feeds());
  let num2 = 0, den = 0, checked = 0;
  let na = 0, nn = 0;
  for (const p of prog.params) {
    const v = values.get(p.name)!;
    const a = grads[gradName(p.name)]!.data as Float64Array;
    for (let i = 0; i < v.length; i++) {
      const o = v[i]!;
      v[i] = o + h;
      const lp = Number((await es.run(feeds()))[LOSS_OUTPUT]!.data[0]);
      v[i] = o - h;
      const lm = Number((await es.run(feeds()))[LOSS_OUTPUT]!.data[0]);
      v[i] = o;
      const fd = (lp - lm) / (2 * h);
      num2 += (Number(a[i]) - fd) ** 2;
      na += Number(a[i]) ** 2;
      nn += fd * fd;
      checked++;
    }
  }
  den = Math.sqrt(na) + Math.sqrt(nn);
  return { rel: Math.sqrt(num2) / den, checked };
}

test('tiny transformer block: every weight gradient matches central differences (float64, tanh GELU, rel < 1e-6)', async (t) => {
  const r = await check({ vocab: 7, hidden: 4, heads: 2, intermediate: 8, layers: 1, seq: 4, classes: 3, seed: 2, dtype: 'float64', gelu: 'tanh' }, 1e-6);
  assert.ok(r.checked > 200);
  assert.ok(r.rel < 1e-6, `relative error ${r.rel}`);
  t.diagnostic(`${r.checked} weight elements, relative error ${r.rel}`);
});

test('tiny transformer block with exact erf GELU (float32 only on CPU: h=1e-2, rel < 1e-2)', async (t) => {
  const r = await check({ vocab: 7, hidden: 4, heads: 2, intermediate: 8, layers: 1, seq: 4, classes: 3, seed: 2, dtype: 'float32', gelu: 'erf' }, 1e-2);
  assert.ok(r.rel < 1e-2, `relative error ${r.rel}`);
  t.diagnostic(`${r.checked} weight elements, relative error ${r.rel}`);
});
