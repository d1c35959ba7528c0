// The KV-cache generation graph of Qwen2 (q/k/v biases, tied head) and Mistral (sliding window of 5) against
// transformers' logits position by position, and against the training graph's full recompute well past the window,
// with the cache read in one-token steps, in chunks and in a left-padded batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { buildLlamaGraph } from '../models/llama.ts';
import { encodeModel } from '../onnx/proto.ts';
import { Decoder, type KvCache } from './decoder.ts';
import { argmax } from './sampling.ts';

const FX = new URL('../models/fixtures/', import.meta.url).pathname;
const i64 = (xs: number[]) => BigInt64Array.from(xs, BigInt);

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Feeds `ids` to the decoder in calls of the given sizes; returns each position's logits (a call's last only). */
async function feed(dec: Decoder, ids: number[], chunks: number[], cache: KvCache) {
  const out = new Map<number, Float32Array>();
  let at = 0;
  for (const n of chunks) {
    const part = ids.slice(at, at + n);
    const r = await dec.run(i64(part), i64(part.map((_, j) => at + j)), i64(ids.slice(0, at + n).map(() => 1)), 1, cache);
    cache = r.cache;
    at += n;
    out.set(at - 1, r.logits);
  }
  return out;
}
for (const name of ['tiny-qwen2', 'tiny-mistral']) {
  const dir = FX + name;
  const ref = JSON.parse(readFileSync(`${FX}${name}-logits-hf.json`, 'utf8')) as {
    input_ids: number[][];
    attention_mask: number[][];
    logits: number[][][];
  };

  test(`${name}: the KV-cache graph gives transformers' logits at every position, in steps of one and in chunks`, async () => {
    const dec = await Decoder.load(dir, { threads: 1 });
    try {
      let worst = 0;
      for (let b = 0; b < ref.input_ids.length; b++) {
        const n = ref.attention_mask[b]!.reduce((s, m) => s + m, 0);
        const ids = ref.input_ids[b]!.slice(0, n);
        // One token a call: every position's logits. Then a prompt of 3, a chunk of 4 reading the cache, then single steps.
        const steps = await feed(
          dec,
          ids,
          ids.map(() => 1),
          dec.emptyCache(1),
        );
        const chunked = await feed(dec, ids, [3, 4, ...ids.slice(7).map(() => 1)], dec.emptyCache(1));
        for (let s = 0; s < n; s++) worst = Math.max(worst, maxAbsDiff(steps.get(s)!, ref.logits[b]![s]!));
        for (const [s, l] of chunked) worst = Math.max(worst, maxAbsDiff(l, ref.logits[b]![s]!));
      }
      if (process.env.TEMPERED_VERBOSE) console.log(name, 'KV-cache graph vs transformers, max abs logit error', worst);
      assert.ok(worst < 2e-4, `max abs logit error ${worst}`);
    } finally {
      await dec.close();
    }
  });

  test(`${name}: 40 greedy steps with the cache equal a full recompute at every step; a left-padded batch equals each row alone`, async () => {
    const dec = await Decoder.load(dir, { threads: 1 });
    const { model, config } = buildLlamaGraph(dir);
    const full = await ort.InferenceSession.create(encodeModel(model), { intraOpNumThreads: 1 });
    try {
      const V = config.vocabSize;
      const last = async (seq: number[]) => {
        const out = await full.run({
          input_ids: new ort.Tensor('int64', i64(seq), [1, seq.length]),
          attention_mask: new ort.Tensor('int64', i64(seq.map(() => 1)), [1, seq.length]),
        });
        return (out.logits!.data as Float32Array).slice((seq.length - 1) * V);
      };
      const seq = [5, 17, 3, 60, 22, 9];
      let { logits, cache } = await dec.run(i64(seq), i64(seq.map((_, i) => i)), i64(seq.map(() => 1)), 1, dec.emptyCache(1));
      let worst = maxAbsDiff(logits, await last(seq));
      for (let step = 0; step < 40; step++) {
        seq.push(argmax(logits));
        ({ logits, cache } = await dec.run(i64([seq.at(-1)!]), i64([seq.length - 1]), i64(seq.map(() => 1)), 1, cache));
        worst = Math.max(worst, maxAbsDiff(logits, await last(seq)));
      }
      if (process.env.TEMPERED_VERBOSE) console.log(name, 'KV-cache vs full graph over 46 positions, max abs logit difference', worst);
      assert.ok(worst < 1e-4, `max abs logit difference ${worst}`);

      // Left padding shifts a row's cache positions; the window counts distances, which it leaves alone.
      const prompts = [
        [7, 8, 9, 10, 11, 12, 13, 14],
        [40, 2],
        [3, 30, 33, 1, 5],
      ];
      const P = 8;
      const ids: number[] = [],
        pos: number[] = [],
        mask: number[] = [];
      for (const p of prompts)
        for (let j = 0; j < P; j++) {
          const pad = P - p.length;
          ids.push(j < pad ? 0 : p[j - pad]!);
          pos.push(j < pad ? 1 : j - pad);
          mask.push(j < pad ? 0 : 1);
        }
      let batch = await dec.run(i64(ids), i64(pos), i64(mask), 3, dec.emptyCache(3));
      const alone: { logits: Float32Array; cache: KvCache }[] = [];
      for (const p of prompts) alone.push(await dec.run(i64(p), i64(p.map((_, j) => j)), i64(p.map(() => 1)), 1, dec.emptyCache(1)));
      // Then 6 steps each, the batch fed the tokens each row chose alone.
      for (let step = 0; step <= 6; step++) {
        for (let i = 0; i < 3; i++) {
          const d = maxAbsDiff(batch.logits.subarray(i * V, (i + 1) * V), alone[i]!.logits);
          assert.ok(d < 1e-5, `step ${step} row ${i}: max abs difference ${d}`);
        }
        if (step === 6) break;
        const next = alone.map((a) => argmax(a.logits));
        for (let i = 0; i < 3; i++) {
          prompts[i]!.push(next[i]!);
          const p = prompts[i]!;
          alone[i] = await dec.run(i64([next[i]!]), i64([p.length - 1]), i64(p.map(() => 1)), 1, alone[i]!.cache);
        }
        const total = P + step + 1;
        batch = await dec.run(
          i64(next),
          i64(prompts.map((p) => p.length - 1)),
          i64(prompts.flatMap((p) => Array.from({ length: total }, (_, j) => (j < total - p.length ? 0 : 1)))),
          3,
          batch.cache,
        );
      }
    } finally {
      await dec.close();
      await full.release();
    }
  });
}
