/** Seeded synthetic token-classification data for the engine's tests and benchmark. */
import type { Dataset } from './trainer.ts';
import { Rng } from './prng.ts';

/**
 * Sequences of random tokens 1..vocab-1. Task 'contains': label 1 when `marker` occurs after position 0
 * (the model must attend across positions). Task 'first': label 1 when the first token is in the upper
 * half of the vocabulary (visible to the CLS position directly).
 */
export function tokenTask(opts: {
  n: number;
  seq: number;
  vocab: number;
  seed: number;
  task: 'contains' | 'first';
  marker?: number;
}): Dataset {
  const rng = new Rng(opts.seed);
  const marker = opts.marker ?? 5;
  const ids = new BigInt64Array(opts.n * opts.seq);
  const mask = new BigInt64Array(opts.n * opts.seq).fill(1n);
  const labels = new BigInt64Array(opts.n);
  for (let r = 0; r < opts.n; r++) {
    const want = rng.next() < 0.5;
    for (let t = 0; t < opts.seq; t++) {
      let tok = 1 + rng.int(opts.vocab - 1);
      if (opts.task === 'contains') while (tok === marker) tok = 1 + rng.int(opts.vocab - 1);
      ids[r * opts.seq + t] = BigInt(tok);
    }
    if (opts.task === 'contains') {
      if (want) ids[r * opts.seq + 1 + rng.int(opts.seq - 1)] = BigInt(marker);
      labels[r] = want ? 1n : 0n;
    } else {
      labels[r] = Number(ids[r * opts.seq]) >= opts.vocab / 2 ? 1n : 0n;
    }
  }
  return {
    input_ids: { data: ids, dims: [opts.n, opts.seq], dtype: 'int64' },
    attention_mask: { data: mask, dims: [opts.n, opts.seq], dtype: 'int64' },
    labels: { data: labels, dims: [opts.n], dtype: 'int64' },
  };
}
