/**
 * The tiny chat task the causal-LM tests train on: "Q:XYZ" → "A:ZYX". The reply (the prompt reversed) is
 * predictable from the prompt, so its loss can fall in a few steps. Letters, capitals and punctuation only:
 * single bytes "!".."`" and <|endoftext|> are the tiny GGUF tokenizer's ids below 64, the model's vocabulary.
 */
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';

export const QA_TEMPLATE =
  "{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

/** Writes n seeded prompt/response rows to `path` (Arrow); `wordLength` draws each prompt's length (default 3). */
export function writeReversalTable(path: string, n: number, seed: number, wordLength: (rng: Rng) => number = () => 3): string {
  const rng = new Rng(seed);
  const letters = 'BCDFGHJK';
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = Array.from({ length: wordLength(rng) }, () => letters[rng.int(letters.length)]!);
    prompts.push(w.join(''));
    responses.push([...w].reverse().join(''));
  }
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  return path;
}

/**
 * Full fine-tuning of a tiny causal LM (the GGUF fixture's folder) on a prompt/response table with QA_TEMPLATE as its
 * chat template, on the CPU, no checkpoints: a model for the evaluate stage's tests. Returns `outDir`.
 */
export async function tuneTinyChat(
  modelDir: string,
  train: string,
  outDir: string,
  o: ({ epochs: number } | { maxSteps: number }) & { seed?: number; threads?: number },
): Promise<string> {
  const { trainCausalLm } = await import('./causal-lm.ts');
  await trainCausalLm({
    modelDir,
    train,
    chat: { template: QA_TEMPLATE },
    method: 'full',
    lr: 0.01,
    ...('epochs' in o ? { epochs: o.epochs } : { maxSteps: o.maxSteps }),
    batchSize: 8,
    schedule: 'constant',
    weightDecay: 0,
    clipNorm: 1,
    seed: o.seed ?? 3,
    maxLength: 32,
    device: 'cpu',
    threads: o.threads ?? 2,
    checkpointEvery: 0,
    checkpointDir: `${outDir}-ck`,
    outDir,
  });
  return outDir;
}
