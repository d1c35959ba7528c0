/**
 * Which test rows a model was trained on: the task input of every training row (the text of a classification row,
 * text_a + text_b of a pair, the prompt of an instruction row, a conversation before each trained reply), normalised as dedupe normalises by default (NFKC,
 * case fold, whitespace, zero-width characters: src/data/normalize.ts) and kept as a 53-bit hash, against which test
 * rows are looked up. A test row is also seen when it is a near duplicate of a training input as dedupe's defaults
 * find them (MinHash of word 3-shingles, estimated Jaccard ≥ 0.8): a rephrased or re-punctuated copy of a training
 * row, which dedupe would have merged into it had both been in one table. Like dedupe, the near-duplicate check leaves
 * out the own text of a prompt template the tables record (src/data/template-shingles.ts), so that two different short
 * inputs in one long template are not near duplicates. Pure: the evaluate stage reads the tables.
 *
 * Hashes, not texts, so a training split of millions of long documents costs a few dozen bytes a row, plus the
 * near-duplicate signature (256 bytes a row, as dedupe's). Two different inputs share a key with odds of about
 * n²/2^54 (about 6e-5 at a million rows), and a collision can only count a clean test row as seen (it is left out of
 * a comparison, never let into one); so can a near-duplicate estimate that errs high.
 */
import { TASK_COLUMNS, type Task } from '../data/config.ts';
import { resolveNear, type ResolvedNear } from '../data/dedupe-config.ts';
import { Growable } from '../data/growable.ts';
import { estimateJaccard, key53, LshIndex, MinHasher, shingleHashesScratch } from '../data/minhash.ts';
import { makeNormalizer, type NormalizeOptions } from '../data/normalize.ts';
import type { ParsedTemplate } from '../data/prompt-template.ts';
import { TemplateShingles } from '../data/template-shingles.ts';

/**
 * The columns that are a task's input (what a model is asked), not its answer: `text`; `text_a`, `text_b`; `prompt`;
 * `messages`, whose cells are read as the conversation before each trained reply in training rows (trainedInputs) and
 * before the last one in test rows (promptText).
 */
export function inputColumns(task: Task): string[] {
  return TASK_COLUMNS[task].filter((c) => c !== 'label' && c !== 'response');
}

/**
 * Signatures a test row's near-duplicate check compares with at most. Rows alike enough to share LSH buckets but not
 * to match (a template filled with one word each) would otherwise cost a comparison with every one of them: 34 ms a
 * test row against 200,000 such training rows. Real data compares with a handful.
 */
export const NEAR_COMPARISONS = 512;
/** How a test row's input matched a training row's: the same after normalisation, or a near duplicate of one. */
export type SeenAs = 'exact' | 'near';

/** The normalised task inputs of a model's training rows. */
export class SeenInputs {
  private readonly keys = new Set<number>();
  private readonly normalize: (s: string) => string;
  private readonly near: {
    cfg: ResolvedNear;
    template: TemplateShingles;
    hasher: MinHasher;
    lsh: LshIndex;
    sigs: Growable<Uint16Array>;
    count: number;
  } | null;
  private cut = 0;
  private compared = 0;
  /** Rows given to add so far: the next row's number in the training table. */
  private added = 0;
  /** The training row each near-duplicate signature id came from. */
  private readonly nearRows: number[] = [];
  /**
   * After seenAs answered 'near': the number (0-based, in the order add was given them) of the training row it
   * matched, so a report can quote it beside the test row. Undefined after any other answer.
   */
  lastNearRow: number | undefined;

  /**
   * `normalize`: dedupe's steps (default all on, as dedupe's default). `near`: the near-duplicate settings, dedupe's
   * defaults unless given; null for exact inputs only.
   */
  constructor(
    normalize: NormalizeOptions = {},
    near: ResolvedNear | null = resolveNear(undefined),
    /**
     * The prompt templates the input columns were rendered with (src/data/template-shingles.ts, columnTemplates), of
     * each table compared (the training table's and the test table's): their own text is left out of near-duplicate
     * checks, as dedupe leaves it out.
     */
    templates: ReadonlyArray<ReadonlyArray<ParsedTemplate | null>> = [],
  ) {
    this.normalize = makeNormalizer(normalize);
    this.near = near && {
      cfg: near,
      template: TemplateShingles.of(templates, this.normalize, near.shingle, near.size),
      hasher: new MinHasher(near.numPerm, near.seed),
      lsh: new LshIndex(near.bands, near.rows, near.numPerm),
      sigs: new Growable<Uint16Array>(Uint16Array, near.numPerm * 1024),
      count: 0,
    };
  }

  /** A row's input columns' normalised texts, joined as dedupe joins them; undefined when one is missing. */
  private text(values: readonly (string | null | undefined)[]): string | undefined {
    let k = '';
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      if (typeof v !== 'string') return undefined;
      k += (i ? '\u0000' : '') + this.normalize(v);
    }
    return k;
  }

  /**
   * The signature of `text` written at id `near.count`, the slot after the last indexed one: indexed there by add, or
   * only looked up from there by seenAs. False for a text of empty columns, or one that is all prompt template, which
   * has no shingles of its own to compare.
   */
  private sign(text: string, columns: number): boolean {
    const near = this.near!;
    if (text.length <= columns - 1) return false;
    const shingles = near.template.strip(shingleHashesScratch(text, near.cfg.shingle, near.cfg.size));
    if (shingles.length === 0) return false;
    near.sigs.reserve(near.cfg.numPerm);
    near.hasher.signature(shingles, near.sigs.data, near.count * near.cfg.numPerm);
    return true;
  }

  /**
   * Records a training row's input (one value per input column, in order), or its inputs: a conversation has one per
   * trained reply (trainedInputs). An input with a missing value adds nothing.
   */
  add(...inputs: (readonly (string | null | undefined)[])[]): void {
    const row = this.added++;
    for (const values of inputs) {
      const text = this.text(values);
      if (text === undefined) continue;
      const k = key53(text);
      if (this.keys.has(k)) continue;
      this.keys.add(k);
      const near = this.near;
      if (!near || !this.sign(text, values.length)) continue;
      near.lsh.add(near.sigs.data, near.count);
      this.nearRows[near.count] = row;
      near.count++;
      near.sigs.length += near.cfg.numPerm;
    }
  }

  /** How a test row's input (same columns, same order) matches a training row's input, or undefined when it does not. */
  seenAs(values: readonly (string | null | undefined)[]): SeenAs | undefined {
    this.lastNearRow = undefined;
    const text = this.text(values);
    if (text === undefined) return undefined;
    if (this.keys.has(key53(text))) return 'exact';
    const near = this.near;
    if (!near || !this.sign(text, values.length)) return undefined;
    const { numPerm, threshold } = near.cfg;
    const me = near.count;
    let matched = -1;
    const matches = (other: number) => {
      this.compared++;
      const isNear = estimateJaccard(near.sigs.data, other, me, numPerm) >= threshold;
      if (isNear) matched = other;
      return isNear;
    };
    const found = near.lsh.find(near.sigs.data, me, matches, NEAR_COMPARISONS);
    if (found === 'cut') this.cut++;
    if (found !== 'found') return undefined;
    this.lastNearRow = this.nearRows[matched];
    return 'near';
  }

  /**
   * Test rows whose near-duplicate check stopped at NEAR_COMPARISONS without a match: counted as not seen, though some
   * may be near a training row the check did not reach.
   */
  get nearChecksCut(): number {
    return this.cut;
  }

  /** Signature comparisons made so far, indexing and looking up: what the near-duplicate check cost. */
  get nearComparisons(): number {
    return this.compared;
  }

  /** Whether a test row's input is, after normalisation, a training row's input or a near duplicate of one. */
  has(values: readonly (string | null | undefined)[]): boolean {
    return this.seenAs(values) !== undefined;
  }

  /** Distinct inputs recorded. */
  get size(): number {
    return this.keys.size;
  }

  /** The near-duplicate settings, or null when only exact inputs count. */
  get nearSettings(): ResolvedNear | null {
    return this.near?.cfg ?? null;
  }
}
