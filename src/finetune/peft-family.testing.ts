/**
 * The PEFT export check for the other LLaMA-family architectures: a LoRA adapter trained deterministically on the tiny
 * Qwen2 (q/k/v biases, tied head) and Mistral (sliding window 5) checkpoints of src/models/fixtures, with the tiny GGUF's
 * tokenizer beside them (their 64-token vocabulary is the same size), exported by trainCausalLm. The fixtures
 * (src/finetune/fixtures/peft-tiny-{qwen2,mistral}.safetensors, regenerate with
 * `PYTHON=/work/pyref/bin/python node --import tsx bench/fixtures/peft-family-reference.ts`) hold what transformers
 * (Qwen2ForCausalLM / MistralForCausalLM from the same folder) + peft made of that export: the adapter tensors as peft
 * loaded them and the logits with the adapter on, for LOGIT_IDS.
 */
import { copyFileSync, cpSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { resolveModelSource } from '../models/sources.ts';
import { trainCausalLm, type CausalTrainResult } from './causal-lm.ts';
import { referenceLoraRun, TINY_GGUF } from './peft-reference.testing.ts';
import { writeReversalTable } from './reversal-task.testing.ts';

export const FAMILY_MODELS = ['tiny-qwen2', 'tiny-mistral'] as const;
export type FamilyModel = (typeof FAMILY_MODELS)[number];

export const peftFamilyFixture = (name: FamilyModel): string =>
  fileURLToPath(new URL(`./fixtures/peft-${name}.safetensors`, import.meta.url));

/** The fixture checkpoint with a tokenizer: config.json and model.safetensors as transformers saved them. */
export async function familyModelDir(root: string, name: FamilyModel): Promise<string> {
  const dir = join(root, name);
  cpSync(fileURLToPath(new URL(`../models/fixtures/${name}/`, import.meta.url)), dir, { recursive: true });
  const gguf = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'cache') });
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(gguf.dir, f), join(dir, f));
  return dir;
}

/** Trains and exports the reference adapter of `name` under `root`; returns the export folder, the base folder and the run. */
export async function trainFamilyAdapter(
  root: string,
  name: FamilyModel,
): Promise<{ outDir: string; modelDir: string; result: CausalTrainResult }> {
  const modelDir = await familyModelDir(root, name);
  const outDir = join(root, `${name}-out`);
  // Rows of 12 to 20 tokens: longer than Mistral's window of 5, so its mask is trained through.
  const train = writeReversalTable(join(root, `${name}-train.arrow`), 32, 1, (rng) => 5 + rng.int(4));
  const result = await trainCausalLm(referenceLoraRun({ modelDir, train, maxSteps: 8, checkpointDir: join(root, `${name}-ck`), outDir }));
  return { outDir, modelDir, result };
}
