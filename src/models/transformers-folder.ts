/**
 * What `models pull` adds to a copied export for transformers: model.safetensors (float32, the fine-tune's weights with
 * any LoRA merged, transformers' names and layout) and a config.json that says so, for the families transformers has a
 * class of the same computation for. The export in the store is left as it is (the weights twice there).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.ts';

/** What the pull wrote for transformers: the Auto class that loads the folder, or why nothing was written. */
export type TransformersExport = { auto: 'AutoModelForCausalLM' | 'AutoModelForSequenceClassification' } | { refused: string };

interface Manifest {
  task?: unknown;
  labels?: unknown;
  pooling?: unknown;
}

/**
 * config.json with the dtype of the written weights: transformers would otherwise load them as the base's bf16 or fp16
 * and give other logits than tempered's. transformers 5 reads `dtype`, earlier ones `torch_dtype`: the one the file
 * has is set (`dtype` when it has neither).
 */
function writeConfig(path: string, config: Record<string, unknown>, fields: Record<string, unknown>): void {
  const dtype = 'dtype' in config || !('torch_dtype' in config) ? { dtype: 'float32' } : {};
  const torchDtype = 'torch_dtype' in config ? { torch_dtype: 'float32' } : {};
  writeFileSync(path, JSON.stringify({ ...config, ...fields, ...dtype, ...torchDtype }, null, 2) + '\n');
}

/** A JSON object file of the export: anything else (bad JSON, null, a list) is an input error naming the file. */
function readJsonObject(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new InputError(`not a JSON object: ${(e as Error).message}`, { where: path, cause: e });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InputError(`not a JSON object: ${value === null ? 'null' : Array.isArray(value) ? 'a list' : typeof value}`, {
      where: path,
    });
  return value as Record<string, unknown>;
}

/**
 * Writes model.safetensors and config.json into the export copy `dir` for a LLaMA-family or GPT-2 causal LM and a BERT
 * classifier pooled as BertForSequenceClassification pools; undefined for a folder that is no such export.
 */
export async function writeTransformersWeights(dir: string): Promise<TransformersExport | undefined> {
  const manifestPath = join(dir, 'tempered-model.json');
  const configPath = join(dir, 'config.json');
  if (!existsSync(manifestPath) || !existsSync(configPath) || !existsSync(join(dir, 'model.onnx'))) return undefined;
  const manifest = readJsonObject(manifestPath) as Manifest;
  const config = readJsonObject(configPath);
  const weightsPath = join(dir, 'model.safetensors');
  if (manifest.task === 'causal-lm') {
    const { isLlamaFamily } = await import('./llama.ts');
    if (isLlamaFamily(config.model_type)) {
      const { writeHfSafetensors } = await import('../generate/hf-weights.ts');
      writeHfSafetensors(dir, weightsPath);
      writeConfig(configPath, config, {});
      return { auto: 'AutoModelForCausalLM' };
    }
    if (config.model_type === 'gpt2') {
      const { writeGpt2Safetensors } = await import('./transformers-export.ts');
      const { tied } = writeGpt2Safetensors(dir, weightsPath);
      writeConfig(configPath, config, { architectures: ['GPT2LMHeadModel'], tie_word_embeddings: tied });
      return { auto: 'AutoModelForCausalLM' };
    }
    return undefined;
  }
  if (manifest.task === 'classification' && config.model_type === 'bert') {
    const { classifierPoolingRefusal, writeBertClassifierSafetensors } = await import('./transformers-export.ts');
    const refused = classifierPoolingRefusal(manifest.pooling as never);
    if (refused) return { refused };
    const labels = manifest.labels;
    if (!Array.isArray(labels) || labels.length === 0 || !labels.every((l) => typeof l === 'string'))
      throw new InputError(`labels must be a non-empty list of label names, got ${JSON.stringify(labels)}`, {
        where: `${manifestPath}: labels`,
      });
    writeBertClassifierSafetensors(dir, weightsPath, labels.length);
    writeConfig(configPath, config, {
      architectures: ['BertForSequenceClassification'],
      num_labels: labels.length,
      id2label: Object.fromEntries(labels.map((l, i) => [String(i), l])),
      label2id: Object.fromEntries(labels.map((l, i) => [l, i])),
      // tempered trains one label a row with cross-entropy, which is what transformers calls this.
      problem_type: 'single_label_classification',
    });
    return { auto: 'AutoModelForSequenceClassification' };
  }
  return undefined;
}
