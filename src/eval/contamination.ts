/**
 * Which test rows a model was trained on: the task input of every training row (the text of a classification row,
 * text_a + text_b of a pair, the prompt of an instruction row), normalised as dedupe normalises by default (NFKC,
 * case fold, whitespace, zero-width characters: src/data/normalize.ts) and kept as a 53-bit hash, against which test
 * rows are looked up. A test row is also seen when it is a near duplicate of a training input as dedupe's defaults
 * find them (MinHash of word 3-shingles, estimated Jaccard ≥ 0.8): a rephrased or re-punctuated copy of a training
 * row, which dedupe would have merged into it had both been in one table. Pure: the evaluate stage reads the tables.
 *
 * Template shingles (word 3-shingles in nearly every row, a prompt template's constant text; src/data/minhash.ts,
 * TEMPLATE_*) are left out of both sides' MinHash sets, as dedupe leaves them out: the training table's, learnt from
 * its first distinct inputs (up to 2,000), so that two different short inputs rendered into one long template are not
 * near duplicates. Until then add() keeps those inputs' shingle sets (8 MiB at most) and indexes them once the
 * sample is full or the first test row is looked up.
 *
 * Hashes, not texts, so a training split of millions of long documents costs a few dozen bytes a row, plus the
 * near-duplicate signature (256 bytes a row, as dedupe's). Two different inputs share a key with odds of about
 * n²/2^54 (about 6e-5 at a million rows), and a collision can only count a clean test row as seen (it is left out of
 * a comparison, never let into one); so can a near-duplicate estimate that errs high.
 */
import { TASK_COLUMNS, type Task } from '../data/config.ts';
import { resolveNear, type ResolvedNear } from '../data/dedupe-config.ts';
import { Growable } from '../data/growable.ts';
import { estimateJaccard, key53, LshIndex, MinHasher, shingleHashesScratch, TemplateSample, TemplateShingles } from '../data/minhash.ts';
import { makeNormalizer, type NormalizeOptions } from '../data/normalize.ts';

/** The columns that are a task's input (what a model is asked), not its answer: `text`; `text_a`, `text_b`; `prompt`. */
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
    hasher: MinHasher;
    lsh: LshIndex;
    sigs: Growable<Uint16Array>;
    count: number;
    /** The training rows' template shingles, once learnt. */
    template: TemplateShingles;
    /** While the template is learnt: the sample, and the training row each of its shingle sets came from. */
    learning: { sample: TemplateSample; sets: Uint32Array[]; rows: number[] } | null;
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
  constructor(normalize: NormalizeOptions = {}, near: ResolvedNear | null = resolveNear(undefined)) {
    this.normalize = makeNormalizer(normalize);
    this.near = near && {
      cfg: near,
      hasher: new MinHasher(near.numPerm, near.seed),
      lsh: new LshIndex(near.bands, near.rows, near.numPerm),
      sigs: new Growable<Uint16Array>(Uint16Array, near.numPerm * 1024),
      count: 0,
      template: TemplateShingles.NONE,
      learning: near.template ? { sample: new TemplateSample(), sets: [], rows: [] } : null,
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
   * The signature of a row's shingles, less the template's, written at id `near.count`, the slot after the last
   * indexed one: indexed there by add, or only looked up from there by seenAs. False when no shingle is left: a text of
   * empty columns, or one that is all template (its input empty), which is found by its exact key only.
   */
  private sign(shingles: Uint32Array): boolean {
    const near = this.near!;
    const content = near.template.strip(shingles);
    if (content.length === 0) return false;
    near.sigs.reserve(near.cfg.numPerm);
    near.hasher.signature(content, near.sigs.data, near.count * near.cfg.numPerm);
    return true;
  }

  /** A text's shingles (a scratch view); none for a text of empty columns. */
  private shingles(text: string, columns: number): Uint32Array {
    const { shingle, size } = this.near!.cfg;
    return text.length <= columns - 1 ? new Uint32Array(0) : shingleHashesScratch(text, shingle, size);
  }

  /** Indexes training row `row` by its shingles. */
  private index(shingles: Uint32Array, row: number): void {
    const near = this.near!;
    if (!this.sign(shingles)) return;
    near.lsh.add(near.sigs.data, near.count);
    this.nearRows[near.count] = row;
    near.count++;
    near.sigs.length += near.cfg.numPerm;
  }

  /** Ends the template's learning: the template from the rows sampled, which are then indexed in their order. */
  private learnt(): void {
    const near = this.near!;
    const l = near.learning;
    if (!l) return;
    near.learning = null;
    near.template = l.sample.template();
    for (let i = 0; i < l.sets.length; i++) this.index(l.sets[i]!, l.rows[i]!);
  }

  /** Records a training row's input (one value per input column, in order). A row with a missing value adds nothing. */
  add(values: readonly (string | null | undefined)[]): void {
    const row = this.added++;
    const text = this.text(values);
    if (text === undefined) return;
    const k = key53(text);
    if (this.keys.has(k)) return;
    this.keys.add(k);
    const near = this.near;
    if (!near) return;
    const shingles = this.shingles(text, values.length);
    if (shingles.length === 0) return;
    const l = near.learning;
    if (!l) return this.index(shingles, row);
    l.sets.push(l.sample.add(shingles));
    l.rows.push(row);
    if (l.sample.full) this.learnt();
  }

  /** How a test row's input (same columns, same order) matches a training row's input, or undefined when it does not. */
  seenAs(values: readonly (string | null | undefined)[]): SeenAs | undefined {
    this.lastNearRow = undefined;
    const text = this.text(values);
    if (text === undefined) return undefined;
    if (this.keys.has(key53(text))) return 'exact';
    const near = this.near;
    if (!near) return undefined;
    this.learnt();
    if (!this.sign(this.shingles(text, values.length))) return undefined;
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

  /**
   * Template shingles left out of the near-duplicate check (0: none, or `near.template` off); null until known: the
   * training rows' sample is full or a test row was looked up. Null without the near-duplicate check.
   */
  get templateShingles(): number | null {
    const near = this.near;
    return !near || near.learning ? null : near.template.size;
  }

  /** The near-duplicate settings, or null when only exact inputs count. */
  get nearSettings(): ResolvedNear | null {
    return this.near?.cfg ?? null;
  }
}
