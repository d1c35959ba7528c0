/**
 * A causal-LM training run in a process of its own, for the kill -9 test (causal-kill.test.ts):
 *   node --import tsx src/finetune/causal-train-child.testing.ts '<json: { root, name, resume, stepPauseMs }>'
 * Trains LoRA (with dropout, cosine schedule with warmup) on every projection of the tiny GGUF LLaMA, checkpointing
 * every 3 steps; prints `checkpoint <dir>` as each is written and the result (with the training history) as JSON on its
 * last line.
 * stepPauseMs stretches the run (a busy wait after each step) so a kill lands while it trains.
 */
import { join } from 'node:path';
import { resolveModelSource } from '../models/sources.ts';
import { trainCausalLm } from './causal-lm.ts';
import { TINY_GGUF } from './peft-reference.testing.ts';
import { QA_TEMPLATE, writeReversalTable } from './reversal-task.testing.ts';

export const KILL_TEST_STEPS = 12;
export const KILL_TEST_CHECKPOINT_EVERY = 3;

const TEMPLATE = QA_TEMPLATE;

export function writeTable(path: string): string {
  return writeReversalTable(path, 48, 5, (rng) => 2 + rng.int(3));
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]!) as { root: string; name: string; resume: boolean; stepPauseMs: number };
  // A cache per run name: the reference and the killed run start at the same time.
  const model = await resolveModelSource(TINY_GGUF, { cacheDir: join(a.root, a.name, 'cache') });
  const r = await trainCausalLm({
    modelDir: model.dir,
    train: join(a.root, 'train.arrow'),
    chat: { template: TEMPLATE },
    method: 'lora',
    lora: { r: 4, alpha: 8, dropout: 0.1 },
    lr: 2e-2,
    maxSteps: KILL_TEST_STEPS,
    batchSize: 8,
    schedule: 'cosine',
    warmupSteps: 3,
    weightDecay: 0.01,
    clipNorm: 1,
    seed: 11,
    maxLength: 32,
    device: 'cpu',
    threads: 2,
    checkpointDir: join(a.root, a.name, 'ck'),
    checkpointEvery: KILL_TEST_CHECKPOINT_EVERY,
    resume: a.resume,
    outDir: join(a.root, a.name, 'out'),
    onCheckpoint: (dir) => process.stdout.write(`checkpoint ${dir}\n`),
    onProgress: () => {
      const until = Date.now() + a.stepPauseMs;
      while (Date.now() < until);
    },
  });
  // JSON carries the history's finite numbers exactly (the shortest text that parses back to the same double).
  process.stdout.write(
    JSON.stringify({ steps: r.steps, resumedFromStep: r.resumedFromStep ?? null, finalLoss: r.finalLoss, history: r.history }) + '\n',
  );
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop()!)) await main();
