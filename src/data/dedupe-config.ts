/**
 * The near-duplicate settings of a dedupe config, resolved and checked. Apart from the dedupe
 * library so that `tempered validate` can check them without loading Arrow.
 */
import { InputError } from '../errors.ts';
import type { DedupeConfig } from './config.ts';
import { optimalBands, type ShingleKind } from './minhash.ts';

export interface ResolvedNear {
  shingle: ShingleKind;
  size: number;
  numPerm: number;
  bands: number;
  rows: number;
  threshold: number;
  seed: number;
}

export function resolveNear(near: DedupeConfig['near']): ResolvedNear | null {
  if (near === false) return null;
  const n = near ?? {};
  const shingle = n.shingle ?? 'word';
  if (shingle !== 'char' && shingle !== 'word')
    throw new InputError(`near.shingle must be 'char' or 'word', got ${JSON.stringify(shingle)}`, { where: 'near.shingle' });
  const size = n.size ?? (shingle === 'char' ? 5 : 3);
  const numPerm = n.numPerm ?? 128;
  const threshold = n.threshold ?? 0.8;
  const seed = n.seed ?? 0;
  if (!Number.isInteger(size) || size < 1)
    throw new InputError(`near.size must be a positive integer, got ${size}`, { where: 'near.size' });
  if (!Number.isInteger(numPerm) || numPerm < 1 || numPerm > 1024)
    throw new InputError(`near.numPerm must be an integer in [1, 1024], got ${numPerm}`, { where: 'near.numPerm' });
  if (!(threshold > 0 && threshold <= 1))
    throw new InputError(`near.threshold must be in (0, 1], got ${threshold}`, { where: 'near.threshold' });
  if (!Number.isInteger(seed)) throw new InputError(`near.seed must be an integer, got ${seed}`, { where: 'near.seed' });
  let bands = n.bands,
    rows = n.rows;
  if (bands === undefined && rows === undefined) ({ bands, rows } = optimalBands(threshold, numPerm, 0.1, 0.9));
  else if (bands === undefined) bands = Math.floor(numPerm / rows!);
  else if (rows === undefined) rows = Math.floor(numPerm / bands);
  if (!Number.isInteger(bands) || !Number.isInteger(rows) || bands! < 1 || rows! < 1 || bands! * rows! > numPerm) {
    throw new InputError(`near.bands × near.rows must be positive integers with product ≤ numPerm (${numPerm}), got ${bands} × ${rows}`, {
      where: 'near.bands',
    });
  }
  return { shingle, size, numPerm, bands: bands!, rows: rows!, threshold, seed };
}
