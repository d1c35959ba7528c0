/**
 * What `lora.layers` and `lora.targets` may name on a model, in the model's own terms: the layer numbers its
 * config.json declares (checked before any heavy work: a layer the model lacks would otherwise adapt nothing there,
 * silently, or fail later in graph-internal names), and the modules LoRA can adapt in its built graph (the
 * MatMul/Gemm weights the engine's LoRA rewrite accepts), so a target that matches nothing is named with the
 * architecture's real module names (q_proj, … for LLaMA; query, … for BERT; c_attn, … for GPT-2).
 */
import { InputError } from '../errors.ts';
import { matchesAny } from '../engine/patterns.ts';
import { q4WeightDims } from '../engine/quant4.ts';
import type { Model } from '../onnx/ir.ts';
import { ModelConfig } from './weights.ts';

/** Transformer layers (blocks) config.json declares: GPT-2's n_layer, else num_hidden_layers (LLaMA, BERT). */
export function modelLayerCount(dir: string): number {
  return ModelConfig.read(dir).int(['n_layer', 'num_hidden_layers']);
}

/**
 * Every entry of `layers` must be a layer of the model: an integer from 0 to layerCount − 1. An empty or absent
 * list means every layer.
 */
export function checkLoraLayers(layers: readonly unknown[] | undefined, layerCount: number, where = 'train.lora.layers'): void {
  if (layers === undefined || layers === null) return;
  if (!Array.isArray(layers)) throw new InputError(`must be a list of layer numbers, got ${JSON.stringify(layers)}`, { where });
  const bad = layers.filter((l) => !(typeof l === 'number' && Number.isInteger(l) && l >= 0 && l < layerCount));
  if (bad.length === 0) return;
  const shown = bad.map((l) => (typeof l === 'number' ? String(l) : JSON.stringify(l))).join(', ');
  throw new InputError(
    `${shown} ${bad.length === 1 ? 'is not a layer' : 'are not layers'} of this model: it has ${layerCount} layer${layerCount === 1 ? '' : 's'}, numbered 0 to ${layerCount - 1}`,
    {
      where,
      hint: `give layer numbers from 0 to ${layerCount - 1} (the top layer is ${layerCount - 1}), or leave layers out to adapt every layer`,
    },
  );
}

/**
 * The module weights LoRA can adapt: a MatMul/Gemm's weight input that is a 2-D initializer or a 4-bit weight
 * (QLoRA), named `<module>.weight` (the graph's own constants, such as rotate_half's matrix, are not modules).
 */
export function adaptableWeights(model: Model): string[] {
  const out = new Set<string>();
  for (const node of model.graph.nodes) {
    if (node.opType !== 'MatMul' && node.opType !== 'Gemm') continue;
    const w = node.inputs[1];
    if (w === undefined || !w.endsWith('.weight')) continue;
    const dims = model.graph.initializers.get(w)?.dims ?? q4WeightDims(model, w);
    if (dims?.length === 2) out.add(w);
  }
  return [...out];
}

/** The layer a weight belongs to (`model.layers.3.…`, `encoder.layer.3.…`, `transformer.h.3.…`), if any. */
const LAYER = /^(.*?(?:^|\.)(?:layers|layer|h)\.\d+\.)/;

/** A weight's module name: the part before `.weight` after the last dot (`q_proj`, `query`, `dense`, `c_attn`). */
function shortName(weight: string): string {
  return weight
    .replace(/\.weight$/, '')
    .split('.')
    .pop()!;
}

/**
 * What to say about a model's adaptable modules: the names inside its layers (`q_proj, k_proj, …`), the full
 * weight names outside them (`lm_head.weight`), an example weight, and a glob over one module in every layer.
 */
export function describeAdaptable(model: Model): { inLayers: string[]; outside: string[]; example?: string; glob?: string } {
  const weights = adaptableWeights(model);
  const inLayers = new Set<string>(),
    outside = new Set<string>();
  // Outside the layers a module is adapted by its full weight name (`lm_head.weight`): a bare module
  // name becomes a pattern over the layers' weights.
  for (const w of weights)
    if (LAYER.test(w)) inLayers.add(shortName(w));
    else outside.add(w);
  const example = weights.find((w) => LAYER.test(w));
  return {
    inLayers: [...inLayers],
    outside: [...outside],
    example,
    glob: example && example.replace(LAYER, '*'),
  };
}

/**
 * Each LoRA target (module name or pattern) must adapt at least one weight of `model` once `resolve` has turned it
 * into weight patterns (restricted to the chosen layers); otherwise an InputError at `where` lists the model's
 * adaptable modules. `modelType` names the architecture in the message (llama, bert, gpt2).
 */
export function checkLoraTargets(
  model: Model,
  o: {
    targets: readonly string[];
    /** The user named no targets: `targets` are the defaults for this architecture. */
    defaulted?: boolean;
    resolve: (targets: string[]) => string[];
    layers?: readonly number[];
    modelType: string;
    where?: string;
  },
): void {
  const weights = adaptableWeights(model);
  const unmatched = o.targets.filter((t) => {
    const patterns = o.resolve([t]);
    return !weights.some((w) => matchesAny(w, patterns));
  });
  if (unmatched.length === 0) return;
  const d = describeAdaptable(model);
  const modules = [
    d.inLayers.length ? `${d.inLayers.join(', ')} in every layer${d.example ? ` (e.g. ${d.example})` : ''}` : '',
    d.outside.length ? `${d.outside.join(', ')} outside the layers (named in full)` : '',
  ]
    .filter(Boolean)
    .join(', and ');
  const which = `${o.defaulted ? 'default ' : ''}LoRA target${unmatched.length === 1 ? '' : 's'} ${unmatched.map((t) => JSON.stringify(t)).join(', ')}`;
  const inLayers = o.layers?.length ? ` in layer${o.layers.length === 1 ? '' : 's'} ${o.layers.join(', ')}` : '';
  const example = d.inLayers.slice(0, 2).join(', ');
  throw new InputError(
    `${which} ${unmatched.length === 1 ? 'matches' : 'match'} no weight of this ${o.modelType} model${inLayers}; the modules LoRA can adapt are ${modules || 'none'}`,
    {
      where: o.where ?? 'train.lora.targets',
      hint: `name modules (${example ? `${example}, …` : 'see above'})${d.glob && !o.layers?.length ? ` or glob full weight names, e.g. ${d.glob}` : ''}`,
    },
  );
}
