/**
 * Shared setup of the PEFT export check: a LoRA adapter trained deterministically on the tiny GGUF LLaMA
 * (src/formats/fixtures/tiny-llama.gguf) with adapters on layer 1 only, exported by trainCausalLm. The fixture
 * (src/finetune/fixtures/peft-tiny-llama.safetensors, regenerate with `node --import tsx bench/fixtures/peft-reference.ts`)
 * holds what transformers + peft made of that export: the adapter tensors as peft loaded them and the logits of
 * LlamaForCausalLM (from the same GGUF, `gguf_file=`) with the adapter on, for LOGIT_IDS.
 */
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { resolveModelSource } from '../models/sources.ts';
import { trainCausalLm } from './causal-lm.ts';
import { QA_TEMPLATE, writeReversalTable } from './reversal-task.testing.ts';

export const TINY_GGUF = fileURLToPath(new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url));
export const PEFT_FIXTURE = fileURLToPath(new URL('./fixtures/peft-tiny-llama.safetensors', import.meta.url));
/** Token ids inside the tiny model's 64-token vocabulary, two rows of 8. */
export const LOGIT_IDS = [
  [0, 51, 38, 45, 33, 40, 50, 0],
  [0, 45, 40, 36, 43, 33, 50, 37],
];

const TEMPLATE = QA_TEMPLATE;
const table = (path: string, n: number, seed: number): string => writeReversalTable(path, n, seed);

/** Trains and exports the reference adapter under `root`; returns the export folder and the base model folder. */
export async function trainReferenceAdapter(root: string): Promise<{ outDir: string; modelDir: string }> {
  const model = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'cache') });
  const outDir = join(root, 'out');
  await trainCausalLm({
    modelDir: model.dir,
    train: table(join(root, 'train.arrow'), 32, 1),
    chat: { template: TEMPLATE },
    method: 'lora',
    lora: { r: 4, alpha: 8, layers: [1] },
    lr: 3e-2,
    maxSteps: 6,
    batchSize: 8,
    schedule: 'constant',
    weightDecay: 0,
    seed: 3,
    maxLength: 32,
    device: 'cpu',
    threads: 1,
    checkpointDir: join(root, 'ck'),
    checkpointEvery: 0,
    outDir,
  });
  return { outDir, modelDir: model.dir };
}
