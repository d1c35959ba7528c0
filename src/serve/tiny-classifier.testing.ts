/**
 * The exported classifier the serving benches answer with: a randomly initialised BERT of the size asked with a
 * classifier head, trained two steps (for speed and stop behaviour the weights do not matter).
 */
import { join } from 'node:path';
import { trainClassifier } from '../src/finetune/classifier.ts';
import { syntheticRows, writeTextTable } from '../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../src/models/tiny.testing.ts';

/** Trains into `root` and resolves to the export's folder. */
export async function exportTinyClassifier(root: string, o: { hidden: number; layers: number; threads: number }): Promise<string> {
  const outDir = join(root, 'out');
  await trainClassifier({
    modelDir: tinyBertDir(join(root, 'model'), 7, {
      ...TINY_MINILM,
      hidden: o.hidden,
      layers: o.layers,
      heads: Math.max(1, o.hidden / 32),
      intermediate: o.hidden * 4,
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
    maxLength: 64,
    pooling: 'mean',
    device: 'cpu',
    threads: o.threads,
    checkpointDir: join(root, 'ck'),
    checkpointEvery: 0,
    outDir,
  });
  return outDir;
}
