/**
 * 4-bit frozen linear weights for QLoRA: blocks of 32 weights along the input axis, each block one fp32
 * scale `d` and one fp32 offset `m`, value `d·q + m` with q in 0..15 (GGUF's Q4_1 with fp32 instead of fp16
 * block constants). A GGUF Q4_1 tensor converts without loss (its f16 constants widen exactly), and the
 * in-graph dequantization computes fround(fround(q·d) + m), as `gguf.quants.dequantize` does, so a QLoRA
 * graph on SmolLM2's Q4_1 projections sees bit for bit the weights the fp32 LoRA graph holds.
 *
 * In the graph (opset 21) a weight is three initializers, `<name>.q4` (uint4 [in, out], two per byte),
 * `<name>.q4_scale` and `<name>.q4_min` (float32 [in/32, out]), and a chain
 *   DequantizeLinear(q4, q4_scale, axis 0, block_size 32) → Reshape [in/32, 32, out] → Add(q4_min) → Reshape [in, out]
 * whose output is the value `<name>` the MatMul reads. onnxruntime does not constant-fold DequantizeLinear
 * (its constant folding skips DQ nodes while QDQ optimizations are on, the default), so the session keeps
 * the 4-bit bytes and builds one fp32 weight at a time, per use. The backward pass gets its own chain per
 * use (`rematerializeQ4ForBackward`), so no dequantized weight lives from the forward pass to the backward.
 */
import { InputError } from '../errors.ts';
import type { GraphBuilder } from '../onnx/builder.ts';
import { GraphBuilder as Builder } from '../onnx/builder.ts';
import type { Model, Node } from '../onnx/ir.ts';
import { cloneModel } from '../onnx/ir.ts';

export const Q4_BLOCK = 32;
/** Opset of DequantizeLinear with block_size and uint4. */
export const Q4_OPSET = 21;
const f = Math.fround;

/** A linear weight in tempered's [in, out] layout, 4-bit along `in` in blocks of Q4_BLOCK. */
export interface Q4Weight {
  inF: number;
  outF: number;
  /** uint4 [in, out] row-major, element e in byte e >> 1, low nibble first. */
  q: Uint8Array;
  /** [in / Q4_BLOCK, out] */
  scale: Float32Array;
  /** [in / Q4_BLOCK, out] */
  min: Float32Array;
}

function checkBlocks(inF: number, name: string): void {
  if (inF % Q4_BLOCK !== 0)
    throw new InputError(`weight ${name}: ${inF} input features are not a multiple of the 4-bit block size ${Q4_BLOCK}`, {
      where: 'train.method',
      hint: 'use method lora (fp32 base) for this model',
    });
}

/** Quantizes a [in, out] float32 weight to Q4 blocks (Q4_1's rule: d = (max − min)/15, q = round((w − min)/d)). */
export function quantizeQ4(w: Float32Array, inF: number, outF: number, name = 'weight'): Q4Weight {
  checkBlocks(inF, name);
  const nb = inF / Q4_BLOCK;
  const q = new Uint8Array((inF * outF) / 2);
  const scale = new Float32Array(nb * outF);
  const min = new Float32Array(nb * outF);
  for (let b = 0; b < nb; b++) {
    for (let o = 0; o < outF; o++) {
      let lo = Infinity,
        hi = -Infinity;
      for (let j = 0; j < Q4_BLOCK; j++) {
        const v = w[(b * Q4_BLOCK + j) * outF + o]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const d = f((hi - lo) / 15);
      scale[b * outF + o] = d;
      min[b * outF + o] = lo;
      for (let j = 0; j < Q4_BLOCK; j++) {
        const e = (b * Q4_BLOCK + j) * outF + o;
        const v = d > 0 ? Math.min(15, Math.max(0, Math.round((w[e]! - lo) / d))) : 0;
        q[e >> 1] |= v << ((e & 1) * 4);
      }
    }
  }
  return { inF, outF, q, scale, min };
}

/** Float32 [in, out] values of a Q4 weight, with the graph's arithmetic: fround(fround(q·d) + m). */
export function dequantizeQ4(w: Q4Weight): Float32Array {
  const { inF, outF, q, scale, min } = w;
  const out = new Float32Array(inF * outF);
  for (let i = 0; i < inF; i++) {
    const row = Math.floor(i / Q4_BLOCK) * outF;
    for (let o = 0; o < outF; o++) {
      const e = i * outF + o;
      const v = (q[e >> 1]! >> ((e & 1) * 4)) & 15;
      out[e] = f(f(v * scale[row + o]!) + min[row + o]!);
    }
  }
  return out;
}

/**
 * A GGUF Q4_1 tensor of an nn.Linear weight (GGUF shape [out, in], 20-byte blocks: f16 d, f16 m, 16 bytes of
 * nibbles, low nibbles weights 0–15, high 16–31) as a Q4 weight in [in, out] layout. `rowOrder[r]` is the GGUF
 * row that holds output feature r (llama.cpp's Q/K permutation undone), identity when absent.
 */
export function q4FromGgufQ4_1(
  bytes: Uint8Array,
  outF: number,
  inF: number,
  half: (bits: number) => number,
  rowOrder?: Int32Array,
): Q4Weight {
  checkBlocks(inF, 'GGUF Q4_1 tensor');
  const nb = inF / Q4_BLOCK;
  if (bytes.byteLength !== outF * nb * 20)
    throw new InputError(`Q4_1 tensor holds ${bytes.byteLength} bytes, [${outF}, ${inF}] needs ${outF * nb * 20}`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const q = new Uint8Array((inF * outF) / 2);
  const scale = new Float32Array(nb * outF);
  const min = new Float32Array(nb * outF);
  for (let o = 0; o < outF; o++) {
    const src = rowOrder ? rowOrder[o]! : o;
    for (let b = 0; b < nb; b++) {
      const at = (src * nb + b) * 20;
      scale[b * outF + o] = half(dv.getUint16(at, true));
      min[b * outF + o] = half(dv.getUint16(at + 2, true));
      for (let j = 0; j < 16; j++) {
        const byte = bytes[at + 4 + j]!;
        for (const [k, v] of [
          [j, byte & 15],
          [j + 16, byte >> 4],
        ] as const) {
          const e = (b * Q4_BLOCK + k) * outF + o;
          q[e >> 1] |= v << ((e & 1) * 4);
        }
      }
    }
  }
  return { inF, outF, q, scale, min };
}

export const q4Names = (weight: string) => ({ q: `${weight}.q4`, scale: `${weight}.q4_scale`, min: `${weight}.q4_min` });

/** The frozen 4-bit weight `weight` as graph initializers; returns the value holding its float32 [in, out] form. */
export function q4Initializers(g: GraphBuilder, weight: string, w: Q4Weight): string {
  if (g.opsets[''] !== Q4_OPSET) throw new Error(`4-bit weights need a graph at opset ${Q4_OPSET}, not ${g.opsets['']}`);
  const n = q4Names(weight);
  g.initializer(n.q, w.q, [w.inF, w.outF], 'uint4');
  g.initializer(n.scale, w.scale, [w.inF / Q4_BLOCK, w.outF]);
  g.initializer(n.min, w.min, [w.inF / Q4_BLOCK, w.outF]);
  return dequantChain(g, weight, w.inF, w.outF, false, weight);
}

/**
 * One dequantization of `weight`. `swapped` writes the same arithmetic with the Add's operands in the other
 * order: onnxruntime's common-subexpression elimination would otherwise merge a backward chain with the
 * forward one, and the merged value would live from the forward pass to the backward.
 */
function dequantChain(g: GraphBuilder, weight: string, inF: number, outF: number, swapped: boolean, out?: string): string {
  const n = q4Names(weight);
  const nb = inF / Q4_BLOCK;
  const dq = g.op('DequantizeLinear', [n.q, n.scale], { axis: 0, block_size: Q4_BLOCK });
  const blocks = g.op('Reshape', [dq, g.ints([nb, Q4_BLOCK, outF])]);
  const m = g.op('Unsqueeze', [n.min, g.ints([1])]);
  const sum = g.op('Add', swapped ? [m, blocks] : [blocks, m]);
  return g.op('Reshape', [sum, g.ints([inF, outF])], {}, out ? { outputs: [out] } : {});
}

/** [in, out] of a 4-bit weight held by `model` under `weight`, or undefined when the model has no such weight. */
export function q4WeightDims(model: Model, weight: string): [number, number] | undefined {
  const t = model.graph.initializers.get(q4Names(weight).q);
  return t ? [t.dims[0]!, t.dims[1]!] : undefined;
}

function isChainEnd(model: Model, value: string): boolean {
  return q4WeightDims(model, value) !== undefined && model.graph.nodes.some((n) => n.outputs[0] === value && n.opType === 'Reshape');
}

/**
 * Gives every node from index `firstBackward` on (the nodes autodiff appended) that reads a dequantized weight its
 * own dequantization, placed just before it, instead of the forward pass's value. Without this the session
 * keeps every layer's fp32 weight alive from its forward use to its backward use: the fp32 model again.
 */
export function rematerializeQ4ForBackward(model: Model, firstBackward: number): number {
  const forward = model.graph.nodes.slice(0, firstBackward);
  const backward = model.graph.nodes.slice(firstBackward);
  const b = Builder.extend(model);
  const out: Node[] = [...forward];
  let count = 0;
  for (const node of backward) {
    for (let i = 0; i < node.inputs.length; i++) {
      const v = node.inputs[i]!;
      if (!v || !isChainEnd(model, v)) continue;
      const [inF, outF] = q4WeightDims(model, v)!;
      const before = model.graph.nodes.length;
      const fresh = dequantChain(b, v, inF, outF, true);
      out.push(...model.graph.nodes.splice(before));
      node.inputs[i] = fresh;
      count++;
    }
    out.push(node);
  }
  model.graph.nodes = out;
  return count;
}

/**
 * The model with every 4-bit weight replaced by its float32 initializer under the weight's own name (the values the
 * graph computed), and the dequantization nodes removed: what export merges LoRA into.
 */
export function dequantizeQ4Model(model: Model): Model {
  const m = cloneModel(model);
  const inits = m.graph.initializers;
  const weights = [...inits.keys()].filter((k) => k.endsWith('.q4')).map((k) => k.slice(0, -'.q4'.length));
  for (const weight of weights) {
    const n = q4Names(weight);
    const qt = inits.get(n.q)!;
    const w: Q4Weight = {
      inF: qt.dims[0]!,
      outF: qt.dims[1]!,
      q: qt.data as Uint8Array,
      scale: inits.get(n.scale)!.data as Float32Array,
      min: inits.get(n.min)!.data as Float32Array,
    };
    // Drop the chain: walk back from the node producing `weight` through nodes that only feed the chain.
    const producers = new Map(m.graph.nodes.map((node) => [node.outputs[0]!, node]));
    const drop = new Set<Node>();
    const stack = [weight];
    while (stack.length) {
      const node = producers.get(stack.pop()!);
      if (!node || drop.has(node)) continue;
      drop.add(node);
      stack.push(...node.inputs.filter((i) => producers.has(i)));
    }
    m.graph.nodes = m.graph.nodes.filter((node) => !drop.has(node));
    for (const k of [n.q, n.scale, n.min]) inits.delete(k);
    inits.set(weight, { name: weight, dtype: 'float32', dims: [w.inF, w.outF], data: dequantizeQ4(w) });
  }
  // Shape constants of the removed chains.
  const used = new Set(m.graph.nodes.flatMap((node) => node.inputs));
  for (const k of [...inits.keys()]) if (/^(const|scalar|ints)(_\d+)?$/.test(k) && !used.has(k)) inits.delete(k);
  return m;
}
