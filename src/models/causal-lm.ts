/** Picks the causal-LM graph builder from config.json's model_type. */
import type { Model } from '../onnx/ir.ts';
import { buildGpt2Graph } from './gpt2.ts';
import { LLAMA_FAMILY, buildLlamaGraph } from './llama.ts';
import { ModelConfig } from './weights.ts';
import { InputError } from '../errors.ts';

export const CAUSAL_LM_TYPES = ['gpt2', ...LLAMA_FAMILY] as const;

/**
 * `packed`: the graph for packed rows (LLaMA family only; see packing.ts). `quantize: 'q4'`: 4-bit frozen projections
 * (LLaMA family only; QLoRA). `inference`: the graph is only scored, never trained (readLlamaConfig).
 */
export function buildCausalLmGraph(
  dir: string,
  opts: { packed?: boolean; quantize?: 'q4'; inference?: boolean } = {},
): { model: Model; modelType: (typeof CAUSAL_LM_TYPES)[number] } {
  const c = ModelConfig.read(dir);
  const type = c.oneOf('model_type', CAUSAL_LM_TYPES, 'gpt2' as const);
  if (opts.packed && type === 'gpt2')
    throw new InputError(`sequence packing is implemented for LLaMA-family models (${LLAMA_FAMILY.join(', ')}), not ${type}`, {
      where: `${c.path}: model_type`,
      hint: 'turn packing off',
    });
  if (opts.quantize && type === 'gpt2')
    throw new InputError(`4-bit base weights (QLoRA) are implemented for LLaMA-family models (${LLAMA_FAMILY.join(', ')}), not ${type}`, {
      where: `${c.path}: model_type`,
      hint: 'use method lora',
    });
  return { model: type === 'gpt2' ? buildGpt2Graph(dir).model : buildLlamaGraph(dir, opts).model, modelType: type };
}
