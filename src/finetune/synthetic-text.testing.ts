/**
 * A synthetic, learnable text-classification task for tests: seeded rows whose label follows from
 * sentiment words, written as an Arrow table. The tiny model to train on it is models/tiny.testing.ts's
 * tinyBertDir with the MiniLM tokenizer.
 */
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import type { TrainClassifierOptions } from './classifier.ts';
import { Rng } from '../engine/prng.ts';

const POS = ['great', 'wonderful', 'excellent', 'happy', 'love', 'superb', 'nice', 'brilliant'];
const NEG = ['awful', 'terrible', 'horrible', 'sad', 'hate', 'poor', 'bad', 'boring'];
const FILLER = ['the', 'movie', 'was', 'a', 'story', 'of', 'and', 'it', 'show', 'film', 'plot', 'actors', 'really', 'quite', 'very', 'day'];

/** Rows whose label is decided by which sentiment words appear; lengths vary so bucketing is exercised. */
export function syntheticRows(n: number, seed: number): { text: string; label: string }[] {
  const rng = new Rng(seed);
  const rows: { text: string; label: string }[] = [];
  for (let i = 0; i < n; i++) {
    const positive = rng.next() < 0.5;
    const words: string[] = [];
    const len = 3 + rng.int(12);
    for (let k = 0; k < len; k++) words.push(FILLER[rng.int(FILLER.length)]!);
    const cue = positive ? POS : NEG;
    const cues = 1 + rng.int(2);
    for (let k = 0; k < cues; k++) words.splice(rng.int(words.length + 1), 0, cue[rng.int(cue.length)]!);
    rows.push({ text: words.join(' '), label: positive ? 'positive' : 'negative' });
  }
  return rows;
}

export function writeTextTable(path: string, rows: { text: string; label: string }[]): string {
  const w = new ArrowTableWriter(path, { text: 'utf8', label: 'utf8' });
  w.writeBatch({ text: rows.map((r) => r.text), label: rows.map((r) => r.label) });
  w.close();
  return path;
}

/**
 * The tiny seeded BERT and the synthetic task's train and validation tables under `root`, with the
 * recipe every run on it shares (the classifier tests and scripts/gpu-train-check.ts). `base(name)`
 * keeps each run's checkpoints and outputs in a folder of its own; callers add the method, learning
 * rate, length, device and cadence.
 */
export function syntheticClassifierTask(root: string) {
  const modelDir = tinyBertDir(join(root, 'model'), 7, TINY_MINILM);
  const train = writeTextTable(join(root, 'train.arrow'), syntheticRows(256, 1));
  const validation = writeTextTable(join(root, 'val.arrow'), syntheticRows(96, 2));
  const base = (name: string) =>
    ({
      modelDir,
      train,
      validation,
      labels: ['negative', 'positive'],
      batchSize: 16,
      schedule: 'linear',
      warmupRatio: 0.05,
      weightDecay: 0.01,
      clipNorm: 1,
      seed: 3,
      maxLength: 32,
      pooling: 'mean',
      checkpointDir: join(root, name, 'ck'),
      outDir: join(root, name, 'out'),
    }) satisfies Partial<TrainClassifierOptions>;
  return { modelDir, train, validation, base };
}
