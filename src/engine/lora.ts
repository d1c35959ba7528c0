/**
 * LoRA as a graph rewrite: beside each targeted linear weight W ([in, out], MatMul(x, W)) it adds
 * y += (dropout(x)·A·B)·(alpha/r) with A [in, r] (Kaiming-uniform, seeded) and B [r, out] (zeros),
 * named `<module>.lora_A.weight` / `<module>.lora_B.weight` where W is `<module>.weight`.
 */
import { InputError } from '../errors.ts';
import { GraphBuilder } from '../onnx/builder.ts';
import type { Dim, Model } from '../onnx/ir.ts';
import { attrInt } from '../onnx/ir.ts';
import { inferShapes } from '../onnx/shapes.ts';
import { dropoutThreshold, LORA_MASK_PREFIX, type DropoutMask } from './dropout-masks.ts';
import { matchesAny } from './patterns.ts';
import { Rng } from './prng.ts';
import { q4WeightDims } from './quant4.ts';

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
  /** With dropout: the 0/1 keep-mask input fed each step (see dropout-masks.ts). */
  dropoutMask?: DropoutMask;
}

export function moduleOf(weight: string): string {
  return weight.endsWith('.weight') ? weight.slice(0, -'.weight'.length) : weight;
}

/** Rewrites `model` in place; returns the modules it adapted (in graph order). */
export function applyLora(model: Model, spec: LoraSpec): LoraModule[] {
  if (!(spec.r >= 1 && Number.isInteger(spec.r)))
    throw new InputError(`LoRA rank must be a positive integer, got ${spec.r}`, { where: 'train.trainable.r' });
  const p = spec.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new InputError(`LoRA dropout must be in [0, 1), got ${p}`, { where: 'train.trainable.dropout' });
  const b = GraphBuilder.extend(model);
  const rng = new Rng(spec.seed ?? 0);
  const scale = spec.alpha / spec.r;
  const modules: LoraModule[] = [];
  const { threshold, rate } = dropoutThreshold(p);
  const types = threshold > 0 ? inferShapes(model.graph) : undefined;
  // Mask shapes must be expressible in the model inputs' dims, which the trainer knows at each step.
  const inputDims = new Set(model.graph.inputs.flatMap((v) => (v.shape ?? []).filter((d): d is string => typeof d === 'string')));
  const original = [...model.graph.nodes];
  for (const node of original) {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const wName = node.inputs[1]!;
    // A 4-bit frozen weight (QLoRA) is the output of its dequantization chain, not an initializer.
    const q4 = q4WeightDims(model, wName);
    const w = model.graph.initializers.get(wName) ?? (q4 ? { dims: q4, dtype: 'float32' as const } : undefined);
    if (!w || w.dims.length !== 2 || !matchesAny(wName, spec.targets)) continue;
    if (node.opType === 'Gemm' && attrInt(node, 'transA', 0))
      throw new InputError(`LoRA target '${wName}': Gemm with transA=1 is not supported`, {
        where: 'train.trainable.targets',
        hint: 'target other weights',
      });
    const transposed = node.opType === 'Gemm' && attrInt(node, 'transB', 0) === 1;
    const [inF, outF] = transposed ? [w.dims[1]!, w.dims[0]!] : [w.dims[0]!, w.dims[1]!];
    const module = moduleOf(wName);
    if (modules.some((m) => m.module === module)) continue; // a weight shared by two MatMuls gets one adapter
    const bound = 1 / Math.sqrt(inF); // kaiming_uniform_(a=√5) on [r, in], as PEFT initializes lora_A
    const aData = w.dtype === 'float64' ? new Float64Array(inF * spec.r) : new Float32Array(inF * spec.r);
    // Draw in PEFT's [r, in] order so the same seed gives the same adapter in either layout.
    for (let i = 0; i < spec.r; i++) for (let j = 0; j < inF; j++) aData[j * spec.r + i] = rng.uniform(-bound, bound);
    const a = b.initializer(`${module}.lora_A.weight`, aData, [inF, spec.r]);
    const bw = b.initializer(
      `${module}.lora_B.weight`,
      w.dtype === 'float64' ? new Float64Array(spec.r * outF) : new Float32Array(spec.r * outF),
      [spec.r, outF],
    );
    let x = node.inputs[0]!;
    let dropoutMask: DropoutMask | undefined;
    if (types) {
      const shape = types.get(x)?.shape;
      if (!shape || !shape.every((d: Dim) => typeof d === 'number' || inputDims.has(d))) {
        throw new InputError(
          `LoRA dropout on '${wName}': the shape of its input '${x}' ([${shape ?? '?'}]) cannot be derived from the model inputs' dims`,
          { where: 'train.trainable.dropout', hint: 'set dropout: 0 for this model' },
        );
      }
      dropoutMask = { input: b.input(`${LORA_MASK_PREFIX}${module}`, w.dtype, shape), shape: [...shape], threshold, dtype: w.dtype };
      x = b.op('Mul', [x, dropoutMask.input]);
    }
    // Inverted dropout's 1/(1-p) rides on the adapter scale: one multiply on the small output, not on x.
    const delta = b.op('Mul', [b.op('MatMul', [b.op('MatMul', [x, a]), bw]), b.scalar(dropoutMask ? scale / (1 - rate) : scale, w.dtype)]);
    // The adapted value keeps the original output name, so every consumer sees W·x + ΔW·x.
    const out = node.outputs[0]!;
    const base = b.fresh(`${out}__base`);
    node.outputs[0] = base;
    b.op('Add', [base, delta], {}, { name: `${module}.lora_add` });
    // The builder named the sum freshly; point it at the original output name the consumers read.
    model.graph.nodes[model.graph.nodes.length - 1]!.outputs[0] = out;
    modules.push({
      module,
      weight: wName,
      a,
      b: bw,
      inFeatures: inF,
      outFeatures: outF,
      weightTransposed: transposed,
      ...(dropoutMask ? { dropoutMask } : {}),
    });
  }
  if (modules.length === 0)
    throw new InputError(
      `LoRA targets [${spec.targets.join(', ')}] match no MatMul/Gemm weight; weight names look like '${[...model.graph.initializers.keys()].slice(0, 3).join("', '")}'`,
      { where: 'train.trainable.targets', hint: 'use globs over full weight names, e.g. *attention.self.query.weight' },
    );
  return modules;
}
