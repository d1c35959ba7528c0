/**
 * Which test rows a model was trained on: the task input of every training row (the text of a classification row,
 * text_a + text_b of a pair, the prompt of an instruction row), normalised as dedupe normalises by default (NFKC,
 * case fold, whitespace, zero-width characters: src/data/normalize.ts) and kept as a 53-bit hash, against which test
 * rows are looked up. Pure: the evaluate stage reads the tables.
 *
 * Hashes, not texts, so a training split of millions of long documents costs a few dozen bytes a row. Two different
 * inputs share a key with odds of about n²/2^54 (about 6e-5 at a million rows), and a collision can only count a
 * clean test row as seen (it is left out of a comparison, never let into one).
 */
import { TASK_COLUMNS, type Task } from '../data/config.ts';
import { hashString32 } from '../data/minhash.ts';
import { makeNormalizer, type NormalizeOptions } from '../data/normalize.ts';

/** The columns that are a task's input (what a model is asked), not its answer: `text`; `text_a`, `text_b`; `prompt`. */
export function inputColumns(task: Task): string[] {
  return TASK_COLUMNS[task].filter((c) => c !== 'label' && c !== 'response');
}

/** 53 bits from two independent 32-bit hashes, as dedupe keys its exact duplicates. */
function key53(s: string): number {
  return hashString32(s, 0x2545f491) * 2097152 + (hashString32(s, 0x6a09e667) >>> 11);
}

/** The normalised task inputs of a model's training rows. */
export class SeenInputs {
  private readonly keys = new Set<number>();
  private readonly normalize: (s: string) => string;

  /** `normalize`: dedupe's steps (default all on, as dedupe's default). */
  constructor(normalize: NormalizeOptions = {}) {
    this.normalize = makeNormalizer(normalize);
  }

  /** A row's key: its input columns' normalised texts, joined as dedupe joins them; undefined when one is missing. */
  private key(values: readonly (string | null | undefined)[]): number | undefined {
    let k = '';
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'string') return undefined;
      k += (i ? '\u0000' : '') + this.normalize(v);
    }
    return key53(k);
  }

  /** Records a training row's input (one value per input column, in order). A row with a missing value adds nothing. */
  add(values: readonly (string | null | undefined)[]): void {
    const k = this.key(values);
    if (k !== undefined) this.keys.add(k);
  }

  /** Whether a test row's input (same columns, same order) is, after normalisation, a training row's input. */
  has(values: readonly (string | null | undefined)[]): boolean {
    const k = this.key(values);
    return k !== undefined && this.keys.has(k);
  }

  /** Distinct inputs recorded. */
  get size(): number {
    return this.keys.size;
  }
}
