/**
 * Evaluation metrics for the two task kinds tempered trains: single-label classification and
 * causal language modelling. Pure functions over plain arrays; no I/O.
 *
 * 0/0 convention (same as scikit-learn's `zero_division=0`): a class that is never predicted has
 * precision 0, a class that never occurs has recall 0, and F1 is 0 whenever precision + recall is 0.
 * Such classes still count in the macro average, which is what makes macro scores punish a model
 * that ignores a class.
 */
import { InputError } from '../errors.ts';
import type { ValueShape } from '../spec/types.ts';

export interface PRF {
  precision: number;
  recall: number;
  f1: number;
}

export interface ClassMetrics extends PRF {
  /** Number of true examples of this class. */
  support: number;
}

export interface ClassificationReport {
  /** Label order used by `confusion` rows/columns and by `perClass` iteration. */
  labels: string[];
  n: number;
  accuracy: number;
  perClass: Record<string, ClassMetrics>;
  /** Unweighted mean over `labels` (classes with zero support included). */
  macro: PRF;
  /** From pooled TP/FP/FN; for single-label data over all labels this equals accuracy. */
  micro: PRF;
  /** Mean weighted by support. */
  weighted: PRF;
  /** confusion[i][j] = count of examples with true label labels[i] predicted as labels[j]. */
  confusion: number[][];
}

export interface ClassificationOptions {
  /**
   * Label order. Default: the union of labels seen in yTrue and yPred, sorted by code point
   * (so the order is stable whatever order examples arrive in). When given, every label seen
   * must be listed; listing a label that never appears is allowed (it scores 0 by the 0/0 rule).
   */
  labels?: readonly string[];
  /** Used in error messages, e.g. the artifact the predictions came from. */
  where?: string;
}

const safeDiv = (a: number, b: number): number => (b === 0 ? 0 : a / b);
const f1Of = (p: number, r: number): number => safeDiv(2 * p * r, p + r);

export function classificationReport(
  yTrue: readonly string[],
  yPred: readonly string[],
  opts: ClassificationOptions = {},
): ClassificationReport {
  const where = opts.where ?? 'evaluate';
  if (yTrue.length !== yPred.length) {
    throw new InputError(`yTrue has ${yTrue.length} labels but yPred has ${yPred.length}`, {
      where,
      hint: 'pass one prediction per example',
    });
  }
  if (yTrue.length === 0) throw new InputError('no examples to evaluate', { where, hint: 'check the evaluation split is not empty' });

  let labels: string[];
  if (opts.labels) {
    labels = [...opts.labels];
    if (new Set(labels).size !== labels.length) throw new InputError('labels contains duplicates', { where: `${where}.labels` });
  } else {
    labels = [...new Set([...yTrue, ...yPred])].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
  const index = new Map(labels.map((l, i) => [l, i] as const));
  const k = labels.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < yTrue.length; i++) {
    const t = index.get(yTrue[i]!);
    const p = index.get(yPred[i]!);
    if (t === undefined || p === undefined) {
      const bad = t === undefined ? `yTrue[${i}]=${JSON.stringify(yTrue[i])}` : `yPred[${i}]=${JSON.stringify(yPred[i])}`;
      throw new InputError(`${bad} is not one of the labels ${JSON.stringify(labels)}`, {
        where,
        hint: 'add it to labels or fix the data',
      });
    }
    confusion[t]![p]!++;
  }

  const perClass: Record<string, ClassMetrics> = {};
  let correct = 0;
  let tpSum = 0,
    fpSum = 0,
    fnSum = 0;
  let macroP = 0,
    macroR = 0,
    macroF = 0,
    wP = 0,
    wR = 0,
    wF = 0;
  for (let c = 0; c < k; c++) {
    const tp = confusion[c]![c]!;
    let rowSum = 0,
      colSum = 0;
    for (let j = 0; j < k; j++) {
      rowSum += confusion[c]![j]!;
      colSum += confusion[j]![c]!;
    }
    const precision = safeDiv(tp, colSum);
    const recall = safeDiv(tp, rowSum);
    const f1 = f1Of(precision, recall);
    perClass[labels[c]!] = { precision, recall, f1, support: rowSum };
    correct += tp;
    tpSum += tp;
    fpSum += colSum - tp;
    fnSum += rowSum - tp;
    macroP += precision;
    macroR += recall;
    macroF += f1;
    wP += precision * rowSum;
    wR += recall * rowSum;
    wF += f1 * rowSum;
  }
  const n = yTrue.length;
  const microP = safeDiv(tpSum, tpSum + fpSum);
  const microR = safeDiv(tpSum, tpSum + fnSum);
  return {
    labels,
    n,
    accuracy: correct / n,
    perClass,
    macro: { precision: macroP / k, recall: macroR / k, f1: macroF / k },
    micro: { precision: microP, recall: microR, f1: f1Of(microP, microR) },
    weighted: { precision: wP / n, recall: wR / n, f1: wF / n },
    confusion,
  };
}

/**
 * Flattens a report into the names gate expressions use: `accuracy`, `f1_macro`,
 * `precision_micro`, `per_class.<label>.f1`, ... Labels that are not identifier-safe keep their
 * raw text as a key; gates can only reach labels made of letters, digits and `_`.
 */
export function reportToGateMetrics(r: ClassificationReport): Record<string, unknown> {
  const perClass: Record<string, Record<string, number>> = {};
  for (const l of r.labels) {
    const m = r.perClass[l]!;
    perClass[l] = { precision: m.precision, recall: m.recall, f1: m.f1, support: m.support };
  }
  return {
    accuracy: r.accuracy,
    n: r.n,
    precision_macro: r.macro.precision,
    recall_macro: r.macro.recall,
    f1_macro: r.macro.f1,
    precision_micro: r.micro.precision,
    recall_micro: r.micro.recall,
    f1_micro: r.micro.f1,
    precision_weighted: r.weighted.precision,
    recall_weighted: r.weighted.recall,
    f1_weighted: r.weighted.f1,
    per_class: perClass,
  };
}

const num = { type: 'number' } as const;

/** The names reportToGateMetrics produces, for checking gates before a run; `labels` when known, else any label. */
export function classificationGateShape(labels?: readonly string[]): Extract<ValueShape, { type: 'object' }> {
  const perClass: ValueShape = { type: 'object', fields: { precision: num, recall: num, f1: num, support: num } };
  const fields: Record<string, ValueShape> = {};
  for (const k of [
    'accuracy',
    'n',
    'precision_macro',
    'recall_macro',
    'f1_macro',
    'precision_micro',
    'recall_micro',
    'f1_micro',
    'precision_weighted',
    'recall_weighted',
    'f1_weighted',
  ])
    fields[k] = num;
  fields.per_class = labels
    ? { type: 'object', fields: Object.fromEntries(labels.map((l) => [l, perClass])) }
    : { type: 'object', fields: {}, rest: perClass };
  return { type: 'object', fields };
}

/** The names a causal-LM evaluation produces (see LmLoss). */
/** What a gate sees of a causal LM's response-token loss over `scoredRows` test rows (lmGateShape). */
export function lmGateMetrics(l: LmLoss, scoredRows: number): Record<string, number> {
  return { loss: l.loss, perplexity: l.perplexity, tokens: l.tokens, scored_rows: scoredRows };
}

export function lmGateShape(): Extract<ValueShape, { type: 'object' }> {
  // scored_rows: the test rows the loss is over (a row whose reply does not fit maxLength is left out), so a
  // gate can require that models it compares by loss were scored on as many rows.
  return { type: 'object', fields: { loss: num, perplexity: num, tokens: num, scored_rows: num } };
}

// ---------------------------------------------------------------------------------------------
// Causal LM

export interface LmLoss {
  /** Mean negative log-likelihood (nats) over counted tokens. */
  loss: number;
  /** exp(loss). */
  perplexity: number;
  /** Number of tokens counted. */
  tokens: number;
}

/**
 * Accumulates token NLLs across batches so the final loss is the token-weighted mean over the
 * whole eval set (averaging per-batch means would over-weight short batches).
 * Sums in float64 whatever the input precision.
 */
export class LmLossAccumulator {
  private sum = 0;
  private count = 0;

  /**
   * Adds per-token losses (NLL in nats). `mask[i]` non-zero counts token i; only response tokens
   * should be counted, so the prompt does not inflate or deflate the score.
   */
  addTokenLosses(losses: Float32Array | Float64Array, mask?: Uint8Array | Int32Array | Float32Array | null): void {
    if (mask && mask.length !== losses.length) {
      throw new InputError(`mask has ${mask.length} entries but losses has ${losses.length}`, { where: 'evaluate.lm' });
    }
    for (let i = 0; i < losses.length; i++) {
      if (mask && !mask[i]) continue;
      const v = losses[i]!;
      if (!Number.isFinite(v))
        throw new InputError(`token loss ${i} is ${v}`, {
          where: 'evaluate.lm',
          hint: 'the model produced non-finite values; check the checkpoint',
        });
      this.sum += v;
      this.count++;
    }
  }

  /**
   * Adds a sequence given its logits, shifting by one as causal LMs do: logits at position t
   * score the token at t+1. `responseMask[t]` non-zero means token t is part of the response
   * and is scored. `logits` is row-major [seqLen, vocabSize].
   */
  addLogits(
    logits: Float32Array,
    vocabSize: number,
    inputIds: Int32Array | BigInt64Array | readonly number[],
    responseMask: Uint8Array | Int32Array | readonly number[],
  ): void {
    const T = inputIds.length;
    if (logits.length !== T * vocabSize) {
      throw new InputError(`logits has ${logits.length} values, expected seqLen ${T} × vocab ${vocabSize}`, { where: 'evaluate.lm' });
    }
    if (responseMask.length !== T)
      throw new InputError(`responseMask has ${responseMask.length} entries, expected ${T}`, { where: 'evaluate.lm' });
    for (let t = 0; t + 1 < T; t++) {
      if (!responseMask[t + 1]) continue;
      const target = Number(inputIds[t + 1]);
      if (!Number.isInteger(target) || target < 0 || target >= vocabSize) {
        throw new InputError(`token id ${target} at position ${t + 1} is outside the vocabulary (size ${vocabSize})`, {
          where: 'evaluate.lm',
        });
      }
      this.sum += tokenNll(logits, t * vocabSize, vocabSize, target);
      this.count++;
    }
  }

  /**
   * Batched form for a model output of shape [batch, seqLen, vocab] (row-major, as onnxruntime
   * returns it) with inputIds and responseMask of shape [batch, seqLen]. Padding positions must
   * have mask 0.
   */
  addBatchLogits(
    logits: Float32Array,
    dims: readonly [batch: number, seqLen: number, vocab: number],
    inputIds: Int32Array | BigInt64Array,
    responseMask: Uint8Array | Int32Array | BigInt64Array,
  ): void {
    const [B, T, V] = dims;
    if (logits.length !== B * T * V)
      throw new InputError(`logits has ${logits.length} values, expected ${B}×${T}×${V}`, { where: 'evaluate.lm' });
    if (inputIds.length !== B * T || responseMask.length !== B * T) {
      throw new InputError(`inputIds (${inputIds.length}) and responseMask (${responseMask.length}) must both have ${B}×${T} entries`, {
        where: 'evaluate.lm',
      });
    }
    for (let b = 0; b < B; b++) {
      const ids = Array.from(inputIds.subarray(b * T, (b + 1) * T) as ArrayLike<number | bigint>, Number);
      const mask = Array.from(responseMask.subarray(b * T, (b + 1) * T) as ArrayLike<number | bigint>, Number);
      this.addLogits(logits.subarray(b * T * V, (b + 1) * T * V), V, ids, mask);
    }
  }

  result(): LmLoss {
    if (this.count === 0)
      throw new InputError('no response tokens were scored', {
        where: 'evaluate.lm',
        hint: 'check the response mask marks the answer tokens',
      });
    const loss = this.sum / this.count;
    return { loss, perplexity: Math.exp(loss), tokens: this.count };
  }
}

/**
 * Reply loss over test rows, some of which may have lost their whole answer to maxLength: the prompt (with its chat
 * or prompt template) and the reply exceed it, and training's own encoding leaves no answer token in the row (a chat
 * record keeps its reply whole or not at all; with a prompt template the answer tokens that fit are kept and scored,
 * as training trains on them). Such rows are left out and counted, not scored as zero.
 */
export interface ResponseLoss extends LmLoss {
  /** Test rows given, scored or not. */
  rows: number;
  /** Rows with no answer token within maxLength: left out of the loss. */
  unscoredRows: number;
  /** The length the rows were cut to. */
  maxLength: number;
}

/** Not one test row kept an answer token within maxLength, so there is no reply loss to compute. */
export class NoAnswerTokensError extends InputError {
  /** The message without `where` (for callers that say which model or stage it was). */
  readonly detail: string;
  constructor(
    readonly rows: number,
    readonly maxLength: number,
    o: { who?: string; where?: string; hint?: string } = {},
  ) {
    const detail =
      `${o.who ? `${o.who}: ` : ''}none of the ${rows} test row${rows === 1 ? '' : 's'} keeps an answer token within maxLength ${maxLength}: ` +
      `in ${rows === 1 ? 'it' : 'every one'}, the prompt (in its chat or prompt template) and the reply together exceed ${maxLength} tokens ` +
      'and the reply was cut off entirely, so there is no reply loss to score';
    super(detail, {
      where: o.where ?? 'maxLength',
      hint:
        o.hint ??
        'raise maxLength (the one the model was trained with), shorten the prompt template, or evaluate more rows so that some fit',
    });
    this.detail = detail;
  }
}

/** `acc`'s loss with the row counts; a NoAnswerTokensError when every row lost its answer. */
export function responseLoss(acc: LmLossAccumulator, o: { rows: number; unscoredRows: number; maxLength: number }): ResponseLoss {
  if (o.rows > 0 && o.unscoredRows >= o.rows) throw new NoAnswerTokensError(o.rows, o.maxLength);
  return { ...acc.result(), rows: o.rows, unscoredRows: o.unscoredRows, maxLength: o.maxLength };
}

/** −log softmax(row)[target], computed with the max-shift so large logits do not overflow. */
export function tokenNll(logits: Float32Array, offset: number, vocabSize: number, target: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocabSize; v++) max = Math.max(max, logits[offset + v]!);
  let s = 0;
  for (let v = 0; v < vocabSize; v++) s += Math.exp(logits[offset + v]! - max);
  return Math.log(s) + max - logits[offset + target]!;
}

/** One-shot form of LmLossAccumulator for a single array of per-token losses. */
export function lmLossFromTokenLosses(losses: Float32Array | Float64Array, mask?: Uint8Array | Int32Array | Float32Array | null): LmLoss {
  const acc = new LmLossAccumulator();
  acc.addTokenLosses(losses, mask);
  return acc.result();
}
