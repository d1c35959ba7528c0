/**
 * The LLaMA building blocks of layers.ts, each on its own, against central finite differences: RMSNorm (input and
 * weight), rotary embeddings, SwiGLU and grouped-query attention (4 query heads sharing 2 kv heads, causal bias), both
 * with repeated keys and values and in the stacked form llama.ts uses (groupedAttention).
 * The blocks are float32 graphs (as the models are), so differences use h = 1e-2 and the float32 tolerance of
 * src/engine/gradients.test.ts. The whole models are checked in gradients.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gradCheck, type CheckInput } from '../engine/gradcheck.testing.ts';
import type { GraphBuilder } from '../onnx/builder.ts';
import * as ort from 'onnxruntime-node';
import { GraphBuilder as Builder } from '../onnx/builder.ts';
import { encodeModel } from '../onnx/proto.ts';
import { Rng } from '../engine/prng.ts';
import {
  attention,
  causalBias,
  causalGroupedAttention,
  causalHalves,
  groupedAttention,
  groupedBias,
  MASK_NEG,
  repeatKv,
  rmsNormOf,
  rotary,
  swiGlu,
} from './layers.ts';

const F32_TOL = 5e-3;
const f32 = (name: string, shape: number[], extra: Partial<CheckInput> = {}): CheckInput => ({ name, shape, dtype: 'float32', ...extra });

/** cos/sin tables [seq, dh] for positions 0..seq-1, each frequency twice, as llama.ts builds them. */
function ropeTables(seq: number, dh: number, theta = 10000): { cos: number[]; sin: number[] } {
  const cos: number[] = [],
    sin: number[] = [];
  for (let p = 0; p < seq; p++)
    for (let i = 0; i < dh; i++) {
      const a = p / theta ** ((2 * (i % (dh / 2))) / dh);
      cos.push(Math.cos(a));
      sin.push(Math.sin(a));
    }
  return { cos, sin };
}

const cases: { name: string; inputs: CheckInput[]; build: (g: GraphBuilder, x: string[]) => string }[] = [
  {
    name: 'RMSNorm (input and weight)',
    inputs: [f32('x', [2, 3, 8]), f32('w', [8])],
    build: (g, [x, w]) => rmsNormOf(g, x!, w!, 1e-6),
  },
  {
    name: 'rotary embedding (rotate_half form), positions 0..3, head size 6',
    inputs: [
      f32('t', [1, 2, 4, 6]),
      f32('cos', [4, 6], { data: ropeTables(4, 6).cos, wrt: false }),
      f32('sin', [4, 6], { data: ropeTables(4, 6).sin, wrt: false }),
    ],
    build: (g, [t, cos, sin]) => rotary(g, t!, cos!, sin!, 6),
  },
  {
    name: 'SwiGLU silu(gate)·up',
    inputs: [f32('gate', [2, 3, 5]), f32('up', [2, 3, 5])],
    build: (g, [gate, up]) => swiGlu(g, gate!, up!),
  },
  {
    name: 'grouped-query attention: 4 query heads, 2 kv heads, causal',
    inputs: [
      f32('q', [2, 4, 3, 2]),
      f32('k', [2, 2, 3, 2]),
      f32('v', [2, 2, 3, 2]),
      f32('bias', [3, 3], { data: [0, MASK_NEG, MASK_NEG, 0, 0, MASK_NEG, 0, 0, 0], wrt: false }),
    ],
    build: (g, [q, k, v, bias]) => attention(g, q!, repeatKv(g, k!, 4, 2, 2), repeatKv(g, v!, 4, 2, 2), 2, bias!),
  },
  {
    name: 'grouped-query attention with stacked query groups: 4 query heads, 2 kv heads, causal, batch-wise bias',
    inputs: [
      f32('q', [2, 4, 3, 2]),
      f32('k', [2, 2, 3, 2]),
      f32('v', [2, 2, 3, 2]),
      f32('bias', [1, 1, 3, 3], { data: [0, MASK_NEG, MASK_NEG, 0, 0, MASK_NEG, 0, 0, 0], wrt: false }),
    ],
    build: (g, [q, k, v, bias]) => groupedAttention(g, q!, k!, v!, groupedBias(g, bias!, 2), { heads: 4, kvHeads: 2, dh: 2 }),
  },
  {
    name: 'causal grouped-query attention in two query halves (seq 3: halves of 2 and 1)',
    inputs: [
      f32('q', [2, 4, 3, 2]),
      f32('k', [2, 2, 3, 2]),
      f32('v', [2, 2, 3, 2]),
      f32('bias', [1, 1, 3, 3], { data: [0, MASK_NEG, MASK_NEG, 0, 0, MASK_NEG, 0, 0, 0], wrt: false }),
    ],
    build: (g, [q, k, v, bias]) =>
      causalGroupedAttention(g, q!, k!, v!, causalHalves(g, bias!, g.op('Shape', [q!], { start: 2, end: 3 }), 2), {
        heads: 4,
        kvHeads: 2,
        dh: 2,
      }),
  },
];

for (const c of cases) {
  test(`gradient of ${c.name} matches finite differences`, async () => {
    const r = await gradCheck({ inputs: c.inputs, build: c.build, seed: 7 });
    assert.ok(r.relError < F32_TOL, `relative error ${r.relError}`);
    // Every differentiated input gets a gradient with signal (a rule dropping one would also show here).
    for (const [name, a] of Object.entries(r.analytic))
      assert.ok(
        a.some((v) => Math.abs(v) > 1e-3),
        `${name}: gradient is ~0`,
      );
  });
}

test('causal attention in two query halves equals attention over the whole row (seq 1, 2, 5, 8; padding)', async () => {
  const g = new Builder({ opset: 17 });
  const [B, H, KV, D] = [2, 4, 2, 3];
  const q = g.input('q', 'float32', [B, H, 'seq', D]);
  const k = g.input('k', 'float32', [B, KV, 'seq', D]);
  const v = g.input('v', 'float32', [B, KV, 'seq', D]);
  const mask = g.input('mask', 'int64', [B, 'seq']);
  const seqLen = g.op('Shape', [mask], { start: 1, end: 2 });
  const bias = causalBias(g, mask, seqLen);
  const o = { heads: H, kvHeads: KV, dh: D };
  g.output(groupedAttention(g, q, k, v, groupedBias(g, bias, H / KV), o), 'whole');
  g.output(causalGroupedAttention(g, q, k, v, causalHalves(g, bias, seqLen, H / KV), o), 'halves');
  const s = await ort.InferenceSession.create(encodeModel(g.build()));
  const rng = new Rng(3);
  const rand = (n: number) => Float32Array.from({ length: n }, () => rng.uniform(-1, 1));
  for (const S of [1, 2, 5, 8]) {
    // The second row ends in padding (never all of it: a row of padding only has no real token to compare).
    const m = BigInt64Array.from({ length: B * S }, (_, i) => (i >= S && i - S >= Math.max(1, S - 2) ? 0n : 1n));
    const out = await s.run({
      q: new ort.Tensor('float32', rand(B * H * S * D), [B, H, S, D]),
      k: new ort.Tensor('float32', rand(B * KV * S * D), [B, KV, S, D]),
      v: new ort.Tensor('float32', rand(B * KV * S * D), [B, KV, S, D]),
      mask: new ort.Tensor('int64', m, [B, S]),
    });
    const whole = out['whole']!.data as Float32Array;
    const halves = out['halves']!.data as Float32Array;
    assert.deepEqual(out['halves']!.dims, [B, H, S, D]);
    // Padded queries (second row, last positions) are compared too: each still sees its row's real tokens.
    for (let i = 0; i < whole.length; i++)
      assert.ok(Math.abs(whole[i]! - halves[i]!) < 1e-6, `seq ${S} [${i}]: ${whole[i]} vs ${halves[i]}`);
  }
});
