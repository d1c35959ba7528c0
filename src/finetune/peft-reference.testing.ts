/**
 * Shared setup of the PEFT export check: a LoRA adapter trained deterministically on the tiny GGUF LLaMA
 * (src/formats/fixtures/tiny-llama.gguf) with adapters on layer 1 only, exported by trainCausalLm. The fixture
 * (src/finetune/fixtures/peft-tiny-llama.safetensors, regenerate with `node --import tsx bench/fixtures/peft-reference.ts`)
 * holds what transformers + peft made of that export: the adapter tensors as peft loaded them and the logits of
 * LlamaForCausalLM (from the same GGUF, `gguf_file=`) with the adapter on, for LOGIT_IDS.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { SafetensorsFile } from '../formats/safetensors.ts';
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

/** The deterministic LoRA run (adapters on layer 1 only) whose exports the peft fixtures were made from. */
export function referenceLoraRun(o: { modelDir: string; train: string; maxSteps: number; checkpointDir: string; outDir: string }) {
  return {
    ...o,
    chat: { template: TEMPLATE },
    method: 'lora',
    lora: { r: 4, alpha: 8, layers: [1] as number[] },
    lr: 3e-2,
    batchSize: 8,
    schedule: 'constant',
    weightDecay: 0,
    seed: 3,
    maxLength: 32,
    device: 'cpu',
    threads: 1,
    checkpointEvery: 0,
  } as const;
}

/** Trains and exports the reference adapter under `root`; returns the export folder and the base model folder. */
export async function trainReferenceAdapter(root: string): Promise<{ outDir: string; modelDir: string }> {
  const model = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'cache') });
  const outDir = join(root, 'out');
  const train = table(join(root, 'train.arrow'), 32, 1);
  await trainCausalLm(referenceLoraRun({ modelDir: model.dir, train, maxSteps: 6, checkpointDir: join(root, 'ck'), outDir }));
  return { outDir, modelDir: model.dir };
}

/**
 * The export's merged model.onnx on LOGIT_IDS against the fixture's transformers + peft logits: the largest
 * difference, and how far the adapter moves peft's logits from the base's (a check that could not fail otherwise).
 */
export async function mergedLogitsAgainstPeft(outDir: string, fixture: SafetensorsFile): Promise<{ diff: number; moved: number }> {
  const [B, T] = [LOGIT_IDS.length, LOGIT_IDS[0]!.length];
  const session = await ort.InferenceSession.create(readFileSync(join(outDir, 'model.onnx')), { intraOpNumThreads: 1 });
  const out = await session.run({
    input_ids: new ort.Tensor('int64', BigInt64Array.from(LOGIT_IDS.flat(), BigInt), [B, T]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(B * T).fill(1n), [B, T]),
  });
  await session.release();
  const got = out.logits!.data as Float32Array;
  const want = fixture.tensors.get('logits')!.data as Float32Array;
  const base = fixture.tensors.get('base_logits')!.data as Float32Array;
  if (got.length !== want.length) throw new Error(`${got.length} logits against the fixture's ${want.length}`);
  let diff = 0,
    moved = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    moved = Math.max(moved, Math.abs(want[i]! - base[i]!));
  }
  return { diff, moved };
}
