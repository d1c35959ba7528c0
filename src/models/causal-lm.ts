/** Picks the causal-LM graph builder from config.json's model_type. */
import type { Model } from '../onnx/ir.ts';
import { buildGpt2Graph } from './gpt2.ts';
import { buildLlamaGraph } from './llama.ts';
import { ModelConfig } from './weights.ts';

export const CAUSAL_LM_TYPES = ['gpt2', 'llama'] as const;

export function buildCausalLmGraph(dir: string): { model: Model; modelType: (typeof CAUSAL_LM_TYPES)[number] } {
  const type = ModelConfig.read(dir).oneOf('model_type', CAUSAL_LM_TYPES, 'gpt2' as const);
  return { model: type === 'gpt2' ? buildGpt2Graph(dir).model : buildLlamaGraph(dir).model, modelType: type };
}
