/**
 * Transformer building blocks written with the GraphBuilder, using only ops the engine can
 * differentiate (MatMul, Add, Mul, Softmax, LayerNormalization, Erf, Tanh, Sigmoid, ReduceMean, Sqrt,
 * Gather, Reshape, Transpose, Slice, Concat, Neg...). Linear weights are [in, out] and named after
 * the Hugging Face parameter they come from.
 */
import type { GraphBuilder } from '../onnx/builder.ts';

/** Large negative added to masked attention scores; exp() underflows to exactly 0 in float32. */
export const MASK_NEG = -1e9;

export function linear(g: GraphBuilder, x: string, name: string, w: Float32Array, inF: number, outF: number, bias?: Float32Array): string {
  const y = g.op('MatMul', [x, g.initializer(`${name}.weight`, w, [inF, outF])]);
  return bias ? g.op('Add', [y, g.initializer(`${name}.bias`, bias, [outF])]) : y;
}

export function layerNorm(g: GraphBuilder, x: string, name: string, gamma: Float32Array, beta: Float32Array, eps: number): string {
  const n = gamma.length;
  return g.op('LayerNormalization', [x, g.initializer(`${name}.weight`, gamma, [n]), g.initializer(`${name}.bias`, beta, [n])], {
    axis: -1,
    epsilon: eps,
  });
}

/** RMSNorm as LLaMA computes it: x / sqrt(mean(x²) + eps) · weight. */
export function rmsNorm(g: GraphBuilder, x: string, name: string, weight: Float32Array, eps: number): string {
  return rmsNormOf(g, x, g.initializer(`${name}.weight`, weight, [weight.length]), eps);
}

/** RMSNorm with the weight as a value (float32). */
export function rmsNormOf(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const sq = g.op('Mul', [x, x]);
  // ReduceMean takes its axes as an input from opset 18 on (the 4-bit QLoRA graphs are opset 21).
  const ms =
    (g.opsets[''] ?? 17) >= 18
      ? g.op('ReduceMean', [sq, g.ints([-1])], { keepdims: 1 })
      : g.op('ReduceMean', [sq], { axes: [-1], keepdims: 1 });
  const normed = g.op('Mul', [x, g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [ms, g.scalar(eps)])])])]);
  const y = g.op('Mul', [normed, weight]);
  // A float→float Cast is a no-op at run time. It is here for the engine: the gradient of a fanned-out
  // value (this output feeds q, k and v) is an untyped Sum, and the Sqrt rule below needs its dtype;
  // the Cast rule re-types it.
  return g.op('Cast', [y], { to: 1 });
}

/** Exact GELU: 0.5·x·(1 + erf(x/√2)) (BERT's "gelu"). */
export function geluErf(g: GraphBuilder, x: string): string {
  return g.op('Mul', [
    g.op('Mul', [x, g.scalar(0.5)]),
    g.op('Add', [g.op('Erf', [g.op('Mul', [x, g.scalar(Math.SQRT1_2)])]), g.scalar(1)]),
  ]);
}

/** Tanh-approximated GELU (GPT-2's "gelu_new"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))). */
export function geluTanh(g: GraphBuilder, x: string): string {
  const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
  const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [x3, g.scalar(0.044715)])]), g.scalar(Math.sqrt(2 / Math.PI))]);
  return g.op('Mul', [g.op('Mul', [x, g.scalar(0.5)]), g.op('Add', [g.op('Tanh', [inner]), g.scalar(1)])]);
}

/** SiLU: x·sigmoid(x) (LLaMA's "silu"). */
export function silu(g: GraphBuilder, x: string): string {
  return g.op('Mul', [x, g.op('Sigmoid', [x])]);
}

/** SwiGLU, LLaMA's MLP activation: silu(gate)·up (the projections around it are ordinary linears). */
export function swiGlu(g: GraphBuilder, gate: string, up: string): string {
  return g.op('Mul', [silu(g, gate), up]);
}

/**
 * Rotary position embedding in transformers' rotate_half form on [batch, heads, seq, dh]:
 * t·cos + [−t₂, t₁]·sin, where t₁, t₂ are the two halves of the head and cos/sin hold each frequency twice.
 * The rotation [−t₂, t₁] is t·R for a constant [dh, dh] matrix R with one ±1 per column, so it is exact (each output
 * is one input, negated or not, plus zeros) and takes one small MatMul forward and one backward, where slicing the
 * halves, negating and concatenating took four ops forward and five backward (two Pads among them).
 */
export function rotary(g: GraphBuilder, t: string, cos: string, sin: string, dh: number): string {
  return g.op('Add', [g.op('Mul', [t, cos]), g.op('Mul', [g.op('MatMul', [t, rotateHalfMatrix(g, dh)]), sin])]);
}

const ROTATIONS = new WeakMap<GraphBuilder, Map<number, string>>();

/** R [dh, dh] with t·R = [−t₂, t₁]: a builder constant (never a trained weight), one per graph and head size. */
function rotateHalfMatrix(g: GraphBuilder, dh: number): string {
  const byDh = ROTATIONS.get(g) ?? ROTATIONS.set(g, new Map()).get(g)!;
  let r = byDh.get(dh);
  if (!r) {
    const half = dh / 2;
    const m = new Float32Array(dh * dh);
    for (let i = 0; i < half; i++) {
      m[(i + half) * dh + i] = -1; // output i (first half) = −t[i + half]
      m[i * dh + i + half] = 1; // output i + half = t[i]
    }
    r = g.constant(m, [dh, dh], 'float32');
    byDh.set(dh, r);
  }
  return r;
}

/**
 * Grouped-query attention's key/value sharing: [batch, kvHeads, seq, dh] → [batch, heads, seq, dh], each kv head
 * serving heads/kvHeads consecutive query heads (transformers' repeat_kv).
 */
export function repeatKv(g: GraphBuilder, t: string, heads: number, kvHeads: number, dh: number): string {
  if (kvHeads === heads) return t;
  const expanded = g.op('Expand', [g.op('Unsqueeze', [t, g.ints([2])]), g.ints([1, 1, heads / kvHeads, 1, 1])]);
  return g.op('Reshape', [expanded, g.ints([0, heads, -1, dh])]);
}

/** [batch, seq, heads·dh] → [batch, heads, seq, dh]. */
export function splitHeads(g: GraphBuilder, x: string, heads: number, dh: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, g.ints([0, 0, heads, dh])])], { perm: [0, 2, 1, 3] });
}

/** [batch, heads, seq, dh] → [batch, seq, heads·dh]. */
export function mergeHeads(g: GraphBuilder, x: string, hidden: number): string {
  return g.op('Reshape', [g.op('Transpose', [x], { perm: [0, 2, 1, 3] }), g.ints([0, 0, hidden])]);
}

/**
 * Grouped-query attention without repeating keys and values: the `heads / kvHeads` query heads that share a kv head are
 * stacked along the sequence axis, [batch, heads, seq, dh] → [batch, kvHeads, groups·seq, dh] (a reshape: transformers'
 * repeat_kv pairs query head h with kv head ⌊h / groups⌋, and those heads are adjacent), so each kv head meets all its
 * queries in one MatMul. The same scores and weighted sums as `attention` on repeatKv'd keys and values, without the
 * Expand of k and v forward and its ReduceSum backward, and in fewer, larger MatMuls. `bias` is the additive score bias
 * tiled for the groups (`groupedBias`). `scale` multiplies the scores (default 1/√dh); 1 adds no Mul, for a caller that
 * scaled q already. Returns [batch, heads, seq, dh].
 */
export function groupedAttention(
  g: GraphBuilder,
  q: string,
  k: string,
  v: string,
  bias: string,
  o: { heads: number; kvHeads: number; dh: number; scale?: number },
): string {
  const grouped = o.heads !== o.kvHeads;
  const qg = grouped ? g.op('Reshape', [q, g.ints([0, o.kvHeads, -1, o.dh])]) : q;
  const scale = o.scale ?? 1 / Math.sqrt(o.dh);
  let scores = g.op('MatMul', [qg, g.op('Transpose', [k], { perm: [0, 1, 3, 2] })]);
  if (scale !== 1) scores = g.op('Mul', [scores, g.scalar(scale)]);
  const probs = g.op('Softmax', [g.op('Add', [scores, bias])], { axis: -1 });
  const ctx = g.op('MatMul', [probs, v]);
  // Back to q's own shape (read at run time, so shape inference keeps q's symbolic dims downstream).
  return grouped ? g.op('Reshape', [ctx, g.op('Shape', [q])]) : ctx;
}

/** An additive score bias [batch or 1, 1, seq, total] repeated for `groups` query heads per kv head (groupedAttention). */
export function groupedBias(g: GraphBuilder, bias: string, groups: number): string {
  return groups === 1
    ? bias
    : g.op(
        'Concat',
        Array.from({ length: groups }, () => bias),
        { axis: 2 },
      );
}

/** The query halves of causalGroupedAttention: split sizes [⌈seq/2⌉, ⌊seq/2⌋] and each half's grouped score bias. */
export interface CausalHalves {
  sizes: string;
  first: string;
  second: string;
}

/**
 * Splits a causal score bias [batch or 1, 1, seq, seq] for causalGroupedAttention, once per graph: the first half of the
 * queries against the first half of the keys, the second half against all keys, each tiled for `groups`.
 */
export function causalHalves(g: GraphBuilder, bias: string, seqLen: string, groups: number): CausalHalves {
  // ⌈seq/2⌉ first: the size shape inference gives Split's first output when seq is a known number.
  const h = g.op('Div', [g.op('Add', [seqLen, g.ints([1])]), g.ints([2])]);
  const sizes = g.op('Concat', [h, g.op('Sub', [seqLen, h])], { axis: 0 });
  const [rowsA, rowsB] = g.opMulti('Split', [bias, sizes], { axis: 2 }, { outputs: 2 }) as [string, string];
  const [first] = g.opMulti('Split', [rowsA, sizes], { axis: 3 }, { outputs: 2 }) as [string, string];
  return { sizes, first: groupedBias(g, first, groups), second: groupedBias(g, rowsB, groups) };
}

/**
 * groupedAttention under a causal bias, the queries in two halves: no query of the first half sees a key of the second,
 * so the first half attends to the first half of the keys only, and a quarter of the score matrix (all of it masked)
 * is neither computed nor differentiated. Masked scores weigh exactly 0 after the softmax (MASK_NEG), so the result is
 * the same up to the order of float sums. SmolLM2 at batch 8 × 256, one layer forward and backward: 38–42 vs 49–53 ms
 * (minimum of 14–16 runs; split in four: 58 ms). `halves` from causalHalves on the same bias.
 */
export function causalGroupedAttention(
  g: GraphBuilder,
  q: string,
  k: string,
  v: string,
  halves: CausalHalves,
  o: { heads: number; kvHeads: number; dh: number; scale?: number },
): string {
  const split = (t: string) => g.opMulti('Split', [t, halves.sizes], { axis: 2 }, { outputs: 2 }) as [string, string];
  const [q1, q2] = split(q);
  const early = groupedAttention(g, q1, split(k)[0], split(v)[0], halves.first, o);
  const late = groupedAttention(g, q2, k, v, halves.second, o);
  // Back to q's own shape (read at run time, so shape inference keeps q's symbolic dims downstream).
  return g.op('Reshape', [g.op('Concat', [early, late], { axis: 2 }), g.op('Shape', [q])]);
}

/**
 * Dropout at `rate` as a standard ONNX Dropout node in inference mode, an identity wherever it runs
 * as is; the training engine turns it into real dropout in the graphs that train (src/engine/dropout.ts).
 * `name` is the Hugging Face module's (`encoder.layer.0.output.dropout`), so its mask input says where it
 * is. Rate 0 adds nothing.
 */
export function dropout(g: GraphBuilder, x: string, rate: number, name: string): string {
  if (!(rate > 0)) return x;
  return g.op('Dropout', [x, g.scalar(rate)], {}, { name });
}

/**
 * Scaled dot-product attention on [batch, heads, seq, dh] tensors with an additive score bias;
 * `probsDropout` drops out attention probabilities, as BERT does in training.
 */
export function attention(
  g: GraphBuilder,
  q: string,
  k: string,
  v: string,
  dh: number,
  bias: string,
  probsDropout?: { rate: number; name: string },
): string {
  const kT = g.op('Transpose', [k], { perm: [0, 1, 3, 2] });
  const scores = g.op('Add', [g.op('Mul', [g.op('MatMul', [q, kT]), g.scalar(1 / Math.sqrt(dh))]), bias]);
  let probs = g.op('Softmax', [scores], { axis: -1 });
  if (probsDropout) probs = dropout(g, probs, probsDropout.rate, probsDropout.name);
  return g.op('MatMul', [probs, v]);
}

/** Padding mask [batch, seq] (int64, 1 = token) → additive bias [batch, 1, 1, seq] and the float mask. */
export function paddingBias(g: GraphBuilder, mask: string): { bias: string; maskF: string } {
  const maskF = g.op('Cast', [mask], { to: 1 });
  const bias = g.op('Unsqueeze', [g.op('Mul', [g.op('Sub', [g.scalar(1), maskF]), g.scalar(MASK_NEG)]), g.ints([1, 2])]);
  return { bias, maskF };
}

/** The sequence length of a [batch, seq] input as a 1-element int64 vector. */
export function seqLenOf(g: GraphBuilder, ids: string): string {
  return g.op('Shape', [ids], { start: 1, end: 2 });
}

/** 0..seq-1 as int64 [seq] (Range on the shape path: no gradient flows through it). */
export function positions(g: GraphBuilder, seqLen: string): string {
  const scalarLen = g.op('Squeeze', [seqLen, g.ints([0])]);
  return g.op('Range', [g.constant([0], [], 'int64'), scalarLen, g.constant([1], [], 'int64')]);
}

/**
 * Causal + padding bias [batch, 1, seq, seq]: key j is hidden from query i when j > i or when j is
 * padding. Built from Range/Greater/Where at run time, so no [maxPos, maxPos] constant is stored.
 */
export function causalBias(g: GraphBuilder, mask: string, seqLen: string): string {
  const pos = positions(g, seqLen);
  const future = g.op('Greater', [g.op('Unsqueeze', [pos, g.ints([0])]), g.op('Unsqueeze', [pos, g.ints([1])])]);
  const causal = g.op('Where', [future, g.scalar(MASK_NEG), g.scalar(0)]);
  return g.op('Add', [causal, paddingBias(g, mask).bias]);
}

/** Rows 0..seq-1 of a table [maxPos, dim], as a Gather (the engine differentiates Gather, not a Slice with run-time ends). */
export function firstRows(g: GraphBuilder, table: string, seqLen: string): string {
  return g.op('Gather', [table, positions(g, seqLen)], { axis: 0 });
}

export function normalL2(g: GraphBuilder, x: string): string {
  const norm = g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.ints([-1])], { keepdims: 1 })]);
  return g.op('Div', [x, g.op('Max', [norm, g.scalar(1e-12)])]);
}
