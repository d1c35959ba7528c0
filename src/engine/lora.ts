/**
 * LoRA as a graph rewrite: beside each targeted linear weight W ([in, out], MatMul(x, W)) it adds
 * y += (dropout(x)·A·B)·(alpha/r) with A [in, r] (Kaiming-uniform, seeded) and B [r, out] (zeros),
 * named `<module>.lora_A.weight` / `<module>.lora_B.weight` where W is `<module>.weight`.
 */
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import type { Model } from '../onnx/ir.ts';
import { attrInt } from '../onnx/ir.ts';
import { matchesAny } from './patterns.ts';
import { Rng } from './prng.ts';

export interface LoraSpec {
  r: number;
  alpha: number;
  dropout?: number;
  /** Patterns on weight initializer names, e.g. ['*attention.self.query.weight', '*attention.self.value.weight']. */
  targets: string[];
  seed?: number;
}

export interface LoraModule {
  /** Weight name without the trailing '.weight' (the PEFT module path). */
  module: string;
  weight: string;
  a: string;
  b: string;
  inFeatures: number;
  outFeatures: number;
  /** Gemm with transB=1 stores W as [out, in] (HF layout) instead of [in, out]. */
  weightTransposed: boolean;
}

/** Graph input fed each step with a fresh seed for LoRA dropout masks (only when dropout > 0). */
export const LORA_DROPOUT_SEED = 'lora_dropout_seed';

export function moduleOf(weight: string): string {
  return weight.endsWith('.weight') ? weight.slice(0, -'.weight'.length) : weight;
}

/** Rewrites `model` in place; returns the modules it adapted (in graph order). */
export function applyLora(model: Model, spec: LoraSpec): LoraModule[] {
  if (!(spec.r >= 1 && Number.isInteger(spec.r))) throw new InputError(`LoRA rank must be a positive integer, got ${spec.r}`, { where: 'train.trainable.r' });
  const p = spec.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new InputError(`LoRA dropout must be in [0, 1), got ${p}`, { where: 'train.trainable.dropout' });
  const b = GraphBuilder.extend(model);
  const rng = new Rng(spec.seed ?? 0);
  const scale = spec.alpha / spec.r;
  const modules: LoraModule[] = [];
  const seed = p > 0 ? b.input(LORA_DROPOUT_SEED, 'float32', []) : undefined;
  const original = [...model.graph.nodes];
  for (const node of original) {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const wName = node.inputs[1]!;
    const w = model.graph.initializers.get(wName);
    if (!w || w.dims.length !== 2 || !matchesAny(wName, spec.targets)) continue;
    if (node.opType === 'Gemm' && attrInt(node, 'transA', 0)) throw new InputError(`LoRA target '${wName}': Gemm with transA=1 is not supported`, { where: 'train.trainable.targets', hint: 'target other weights' });
    const transposed = node.opType === 'Gemm' && attrInt(node, 'transB', 0) === 1;
    const [inF, outF] = transposed ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
    const module = moduleOf(wName);
    if (modules.some((m) => m.module === module)) continue; // a weight shared by two MatMuls gets one adapter
    const bound = 1 / Math.sqrt(inF); // kaiming_uniform_(a=√5) on [r, in], as PEFT initializes lora_A
    const aData = w.dtype === 'float64' ? new Float64Array(inF * spec.r) : new Float32Array(inF * spec.r);
    // Draw in PEFT's [r, in] order so the same seed gives the same adapter in either layout.
    for (let i = 0; i < spec.r; i++) for (let j = 0; j < inF; j++) aData[j * spec.r + i] = rng.uniform(-bound, bound);
    const a = b.initializer(`${module}.lora_A.weight`, aData, [inF, spec.r]);
    const bw = b.initializer(`${module}.lora_B.weight`, w.dtype === 'float64' ? new Float64Array(spec.r * outF) : new Float32Array(spec.r * outF), [spec.r, outF]);
    let x = node.inputs[0]!;
    if (seed) x = dropout(b, x, seed, p, modules.length, w.dtype === 'float64');
    const delta = b.op('Mul', [b.op('MatMul', [b.op('MatMul', [x, a]), bw]), b.scalar(scale, w.dtype)]);
    // The adapted value keeps the original output name, so every consumer sees W·x + ΔW·x.
    const out = node.outputs[0]!;
    const base = b.fresh(`${out}__base`);
    node.outputs[0] = base;
    b.op('Add', [base, delta], {}, { name: `${module}.lora_add` });
    // The builder named the sum freshly; point it at the original output name the consumers read.
    model.graph.nodes[model.graph.nodes.length - 1]!.outputs[0] = out;
    modules.push({ module, weight: wName, a, b: bw, inFeatures: inF, outFeatures: outF, weightTransposed: transposed });
  }
  if (modules.length === 0) throw new InputError(`LoRA targets [${spec.targets.join(', ')}] match no MatMul/Gemm weight; weight names look like '${[...model.graph.initializers.keys()].slice(0, 3).join("', '")}'`, { where: 'train.trainable.targets', hint: 'use globs over full weight names, e.g. *attention.self.query.weight' });
  return modules;
}

/**
 * Dropout whose mask is a pure function of (element index, per-step seed, module index): reproducible
 * across runs and resumes, unlike onnxruntime's Dropout whose generator lives inside the session.
 */
function dropout(b: GraphBuilder, x: string, seed: string, p: number, k: number, f64: boolean): string {
  const iota = b.op('Cast', [b.op('Range', [b.constant([0], [], 'int64'), b.op('Size', [x]), b.constant([1], [], 'int64')])], { to: 1 });
  const phase = b.op('Add', [b.op('Mul', [iota, b.scalar(12.9898)]), b.op('Mul', [b.op('Add', [seed, b.scalar(k * 17.31)]), b.scalar(78.233)])]);
  const h = b.op('Mul', [b.op('Sin', [phase]), b.scalar(43758.5453)]);
  const u = b.op('Sub', [h, b.op('Floor', [h])]);
  let keep = b.op('Cast', [b.op('Greater', [u, b.scalar(p)])], { to: f64 ? 11 : 1 });
  keep = b.op('Reshape', [keep, b.op('Shape', [x])]);
  return b.op('Mul', [x, b.op('Mul', [keep, b.scalar(1 / (1 - p), f64 ? 'float64' : 'float32')])]);
}
