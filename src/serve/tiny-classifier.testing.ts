/**
 * The exported classifier that the serving tests and benches answer with: a randomly initialised BERT (TINY_MINILM, or
 * of the size asked) with a classifier head, trained two steps (for what they check — a pool's answers against the
 * in-thread predictor's, a swap, speed and stop behaviour — the weights do not matter). `modelDir` puts a real encoder
 * (all-MiniLM-L6-v2, say) in the tiny BERT's place, for benches that need its size.
 */
import { join } from 'node:path';
import { trainClassifier } from '../finetune/classifier.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';

/** Trains into `root` and resolves to the export's folder (`<root>/out`). */
export async function exportTinyClassifier(
  root: string,
  o: { hidden?: number; layers?: number; threads?: number; maxLength?: number; modelDir?: string } = {},
): Promise<string> {
  const outDir = join(root, 'out');
  const maxLength = o.maxLength ?? 64;
  // A width asked for brings its heads and MLP along (32 wide a head, 4× wide an MLP); TINY_MINILM's own are other.
  const width = o.hidden === undefined ? {} : { hidden: o.hidden, heads: Math.max(1, o.hidden / 32), intermediate: o.hidden * 4 };
  await trainClassifier({
    modelDir:
      o.modelDir ??
      tinyBertDir(join(root, 'model'), 7, {
        ...TINY_MINILM,
        ...width,
        layers: o.layers ?? TINY_MINILM.layers,
        maxPositions: Math.max(TINY_MINILM.maxPositions, maxLength),
      }),
    train: writeTextTable(join(root, 'train.arrow'), syntheticRows(32, 1)),
    labels: ['negative', 'positive'],
    method: 'head',
    lr: 1e-3,
    maxSteps: 2,
    batchSize: 16,
    schedule: 'constant',
    weightDecay: 0,
    seed: 1,
    maxLength,
    pooling: 'mean',
    device: 'cpu',
    threads: o.threads ?? 1,
    checkpointDir: join(root, 'ck'),
    checkpointEvery: 0,
    outDir,
  });
  return outDir;
}
