// Sequence packing: the layout of packed rows, and the packed LLaMA graph (GQA, RoPE from position_ids,
// block-diagonal causal attention) never lets one example see another: each example's logits inside a packed row
// are its logits alone, whatever its row-mates hold; and the packed graph's gradients match finite differences.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { InputError } from '../errors.ts';
import { compileTrainStep } from '../engine/compile.ts';
import { largestAndRandom, programGradCheck } from '../engine/gradcheck.testing.ts';
import { Rng } from '../engine/prng.ts';
import { encodeModel } from '../onnx/proto.ts';
import { buildCausalLmGraph } from './causal-lm.ts';
import { packSequences } from './packing.ts';
import { tinyGpt2Dir, tinyLlamaDir } from './tiny.testing.ts';
import { IGNORE_INDEX, type CausalEncoding } from './tokenizer.ts';

const root = mkdtempSync(join(tmpdir(), 'packing-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const llamaDir = tinyLlamaDir(join(root, 'llama'), 21, { hidden: 16, layers: 2, heads: 4, kvHeads: 2 });

const ex = (ids: number[], scoredFrom: number): CausalEncoding => ({
  inputIds: ids,
  attentionMask: ids.map(() => 1),
  labels: ids.map((t, i) => (i >= scoredFrom ? t : IGNORE_INDEX)),
});
const i64 = (a: ArrayLike<number>, dims: number[]) => new ort.Tensor('int64', BigInt64Array.from(Array.from(a), BigInt), dims);

test("first-fit decreasing packing: segments, restarting positions, and no label at an example's first token", () => {
  const p = packSequences([ex([10, 11, 12], 1), ex([20, 21, 22, 23, 24, 25], 0), ex([30, 31], 0), ex([40, 41, 42, 43], 2)], 8, 0);
  assert.deepEqual(p.members, [
    [1, 2],
    [3, 0],
  ]);
  assert.deepEqual(Array.from(p.inputIds), [20, 21, 22, 23, 24, 25, 30, 31, 40, 41, 42, 43, 10, 11, 12, 0]);
  assert.deepEqual(Array.from(p.segments), [1, 1, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 2, 2, 2, 0]);
  assert.deepEqual(Array.from(p.positionIds), [0, 1, 2, 3, 4, 5, 0, 1, 0, 1, 2, 3, 0, 1, 2, 0]);
  const X = IGNORE_INDEX;
  assert.deepEqual(Array.from(p.labels), [X, 21, 22, 23, 24, 25, X, 31, X, X, 42, 43, X, 11, 12, X]);
  assert.throws(
    () => packSequences([ex([1, 2, 3], 0)], 2, 0),
    (e: unknown) => e instanceof InputError && /examples\[0\]: example 0 has 3 tokens, more than the packed row length 2/.test(e.message),
  );
  assert.throws(
    () => buildCausalLmGraph(tinyGpt2Dir(join(root, 'gpt2'), 1, { hidden: 8, layers: 1 }), { packed: true }),
    (e: unknown) =>
      e instanceof InputError && /packing is implemented for LLaMA-family models \(llama, mistral, qwen2\), not gpt2/.test(e.message),
  );
});

// Mistral's window of 3 is shorter than the examples: it counts back within the example, as alone.
const mistral = tinyLlamaDir(join(root, 'mistral'), 22, {
  hidden: 16,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  modelType: 'mistral',
  slidingWindow: 3,
});
for (const [name, dir] of [
  ['llama', llamaDir],
  ['mistral', mistral],
] as const)
  test(`${name}: an example's logits in a packed row equal its logits alone, and do not move when its row-mates change`, async () => {
    const plain = await ort.InferenceSession.create(encodeModel(buildCausalLmGraph(dir).model), { intraOpNumThreads: 1 });
    const packed = await ort.InferenceSession.create(encodeModel(buildCausalLmGraph(dir, { packed: true }).model), {
      intraOpNumThreads: 1,
    });
    const alone = async (ids: number[]) =>
      (
        await plain.run({
          input_ids: i64(ids, [1, ids.length]),
          attention_mask: i64(
            ids.map(() => 1),
            [1, ids.length],
          ),
        })
      ).logits!.data as Float32Array;
    const rng = new Rng(5);
    const draw = (n: number) => Array.from({ length: n }, () => 3 + rng.int(60));
    const a = draw(5),
      b = draw(4),
      c = draw(3);
    const row = async (examples: number[][]) => {
      const p = packSequences(
        examples.map((e) => ex(e, 0)),
        16,
        0,
      );
      assert.equal(p.rows, 1);
      const out = await packed.run({
        input_ids: i64(p.inputIds, [1, 16]),
        attention_mask: i64(p.segments, [1, 16]),
        position_ids: i64(p.positionIds, [1, 16]),
      });
      return { logits: out.logits!.data as Float32Array, V: out.logits!.dims[2]!, members: p.members[0]! };
    };
    let maxDiff = 0;
    const r = await row([a, b, c]);
    let at = 0;
    for (const m of r.members) {
      const e = [a, b, c][m]!;
      const ref = await alone(e);
      for (let k = 0; k < ref.length; k++) maxDiff = Math.max(maxDiff, Math.abs(r.logits[at * r.V + k]! - ref[k]!));
      at += e.length;
    }
    assert.ok(maxDiff < 1e-5, `packed vs alone: max abs logit diff ${maxDiff}`);
    // The same row with a's tokens replaced: b's and c's logits are unchanged, a's do change.
    const a2 = draw(5);
    const r2 = await row([a2, b, c]);
    assert.deepEqual(r2.members, r.members);
    assert.deepEqual(r.members, [0, 1, 2]);
    const slice = (x: Float32Array, from: number, n: number) => Array.from(x.subarray(from * r.V, (from + n) * r.V));
    assert.deepEqual(slice(r2.logits, 5, 7), slice(r.logits, 5, 7));
    assert.notDeepEqual(slice(r2.logits, 0, 5), slice(r.logits, 0, 5));
    // Without the block-diagonal mask b would see a: the unpacked graph on the same row gives other logits for b.
    const p = packSequences(
      [a, b, c].map((e) => ex(e, 0)),
      16,
      0,
    );
    const leaky = (
      await plain.run({
        input_ids: i64(p.inputIds, [1, 16]),
        attention_mask: i64(
          Array.from(p.segments, (s) => (s > 0 ? 1 : 0)),
          [1, 16],
        ),
      })
    ).logits!.data as Float32Array;
    assert.notDeepEqual(slice(leaky, 5, 4), slice(r.logits, 5, 4));
    await plain.release();
    await packed.release();
  });

test('the packed graph trains: engine gradients match finite differences', async () => {
  const small = tinyLlamaDir(join(root, 'small'), 12, { hidden: 8, layers: 1, heads: 2, kvHeads: 1 });
  const p = packSequences([ex([72, 101, 108], 1), ex([116, 104, 101, 32], 1), ex([9, 8, 7, 6, 5], 2)], 7, 0);
  const prog = compileTrainStep(buildCausalLmGraph(small, { packed: true }).model, {
    loss: { kind: 'cross_entropy', ignoreIndex: -100, shift: true },
    trainable: { kind: 'full' },
    optimizer: { kind: 'sgd' },
  });
  const dims = [p.rows, p.seqLen];
  const rng = new Rng(3);
  const r = await programGradCheck(
    prog,
    {
      input_ids: i64(p.inputIds, dims),
      attention_mask: i64(p.segments, dims),
      position_ids: i64(p.positionIds, dims),
      labels: i64(p.labels, dims),
    },
    {
      dtype: 'float32',
      h: 1e-2,
      threads: 1,
      pick: largestAndRandom(rng, 2),
    },
  );
  assert.ok(r.rel < 2e-2, `relative error ${r.rel} over ${r.checked} elements`);
});
