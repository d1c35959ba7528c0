/**
 * Scores for generated text against references: exact match after normalisation (with a final-answer
 * extractor), ROUGE-L as Google's `rouge-score` computes it, and chrF as `sacrebleu` computes it.
 * No npm package implements the two reference definitions exactly (rouge-score's tokenizer, sacrebleu's
 * effective-order averaging and corpus statistics), so they are written here and checked against values
 * the Python packages produced (bench/fixtures/make_generative_metrics_fixture.py).
 */
import { RE2JS } from 're2js';
import { InputError } from '../errors.ts';
import type { ValueShape } from '../spec/types.ts';
import { isFreeForm } from './free-form.ts';

// ---------------------------------------------------------------------------------------------
// Exact match

export type WhitespaceMode = 'keep' | 'strip' | 'collapse';

/**
 * A regular expression that picks the answer out of a text. RE2 syntax (re2js): matching takes linear time, so a
 * pattern cannot stall on a long reference or a rambling answer; lookarounds and backreferences are not available.
 */
export interface RegexExtractor {
  regex: string;
  /** Capture group holding the answer; default 1 when the regex has a group, else the whole match (0). */
  group?: number;
  /** Which match when there are several; default 'first' (as lm-evaluation-harness's regex filter). */
  select?: 'first' | 'last';
  /** Any of i (ignore case), m (^ and $ at line ends), s (. matches newlines); u is accepted (RE2 is always Unicode-aware). */
  flags?: string;
}

export interface AnswerNormalization {
  /** Compare case-insensitively (full case folding: ß = ss); default false. */
  caseFold?: boolean;
  /** 'strip' trims the ends, 'collapse' also turns every inner run into one space (default), 'keep' compares as is. */
  whitespace?: WhitespaceMode;
  /** Remove punctuation (Unicode punctuation and ASCII symbols, Python's string.punctuation); default false. */
  stripPunctuation?: boolean;
  /**
   * Compare only the final answer: 'gsm8k' takes the number after the last `####` (commas, `$` and a trailing
   * period dropped), or a regex. A prediction without a match scores 0; a reference without one is used whole.
   */
  extract?: 'gsm8k' | RegexExtractor;
}

const WHITESPACE_MODES: readonly WhitespaceMode[] = ['keep', 'strip', 'collapse'];

/** Config errors, each naming its field under `where` (e.g. `generation.exactMatch`). */
export function checkAnswerNormalization(n: unknown, where: string): InputError[] {
  if (n === undefined) return [];
  const err = (field: string, message: string, hint?: string) => new InputError(message, { where: `${where}.${field}`, hint });
  if (typeof n !== 'object' || n === null || Array.isArray(n)) return [new InputError('must be an object', { where })];
  const o = n as Record<string, unknown>;
  const errors: InputError[] = [];
  for (const k of Object.keys(o))
    if (!['caseFold', 'whitespace', 'stripPunctuation', 'extract'].includes(k))
      errors.push(err(k, 'unknown field', 'fields: caseFold, whitespace, stripPunctuation, extract'));
  for (const k of ['caseFold', 'stripPunctuation'])
    if (o[k] !== undefined && typeof o[k] !== 'boolean') errors.push(err(k, `must be true or false, got ${JSON.stringify(o[k])}`));
  if (o.whitespace !== undefined && !WHITESPACE_MODES.includes(o.whitespace as WhitespaceMode))
    errors.push(err('whitespace', `must be one of ${WHITESPACE_MODES.join(', ')}, got ${JSON.stringify(o.whitespace)}`));
  const x = o.extract;
  if (x === undefined || x === 'gsm8k') return errors;
  if (typeof x !== 'object' || x === null || Array.isArray(x)) {
    errors.push(err('extract', `must be "gsm8k" or { regex, group?, select?, flags? }, got ${JSON.stringify(x)}`));
    return errors;
  }
  const r = x as Record<string, unknown>;
  for (const k of Object.keys(r))
    if (!['regex', 'group', 'select', 'flags'].includes(k))
      errors.push(err(`extract.${k}`, 'unknown field', 'fields: regex, group, select, flags'));
  if (typeof r.flags !== 'undefined' && (typeof r.flags !== 'string' || !/^[imsu]*$/.test(r.flags)))
    errors.push(err('extract.flags', `must be made of the letters i, m, s, u; got ${JSON.stringify(r.flags)}`));
  if (r.select !== undefined && r.select !== 'first' && r.select !== 'last')
    errors.push(err('extract.select', `must be first or last, got ${JSON.stringify(r.select)}`));
  if (typeof r.regex !== 'string' || r.regex === '') {
    errors.push(err('extract.regex', 'a regular expression is required'));
    return errors;
  }
  let re: RE2JS;
  try {
    re = compileRegex(r.regex, typeof r.flags === 'string' && /^[imsu]*$/.test(r.flags) ? r.flags : '');
  } catch (e) {
    errors.push(
      err('extract.regex', `is not a valid regular expression (${(e as Error).message})`, 'RE2 syntax: no lookarounds or backreferences'),
    );
    return errors;
  }
  const groups = re.groupCount();
  if (r.group !== undefined && (!Number.isInteger(r.group) || (r.group as number) < 0 || (r.group as number) > groups))
    errors.push(
      err('extract.group', `must be an integer from 0 to ${groups} (the regex's capture groups), got ${JSON.stringify(r.group)}`),
    );
  return errors;
}

function compileRegex(regex: string, flags: string): RE2JS {
  let f = 0;
  if (flags.includes('i')) f |= RE2JS.CASE_INSENSITIVE;
  if (flags.includes('m')) f |= RE2JS.MULTILINE;
  if (flags.includes('s')) f |= RE2JS.DOTALL;
  return RE2JS.compile(regex, f);
}

/** ASCII punctuation and symbols (Python's string.punctuation) and every Unicode punctuation character. */
const PUNCTUATION = /[\p{P}!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/gu;
/** Python's str.isspace() characters (what str.split() splits on), which sacrebleu relies on. */
const PY_SPACE_CLASS = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_SPACES = new RegExp(`[${PY_SPACE_CLASS}]+`, 'g');
const PY_SPACES_AT_ENDS = new RegExp(`^[${PY_SPACE_CLASS}]+|[${PY_SPACE_CLASS}]+$`, 'g');

const GSM8K_ANSWER = /####\s*(-?[$0-9.,]*[0-9][0-9.,]*)/g;

export type Normalizer = (text: string, role: 'prediction' | 'reference') => string | null;

/** The normalisation as a function; null for a prediction the extractor finds no answer in. Check the config first. */
export function answerNormalizer(n: AnswerNormalization = {}): Normalizer {
  const extract = extractor(n.extract);
  const ws = n.whitespace ?? 'collapse';
  return (text, role) => {
    let t: string | null = extract ? extract(text) : text;
    if (t === null) {
      if (role === 'prediction') return null;
      t = text;
    }
    if (n.caseFold) t = t.toUpperCase().toLowerCase();
    if (n.stripPunctuation) t = t.replace(PUNCTUATION, '');
    if (ws === 'strip') t = t.replace(PY_SPACES_AT_ENDS, '');
    else if (ws === 'collapse') t = t.replace(PY_SPACES, ' ').replace(PY_SPACES_AT_ENDS, '');
    return t;
  };
}

function extractor(x: AnswerNormalization['extract']): ((text: string) => string | null) | undefined {
  if (x === undefined) return undefined;
  if (x === 'gsm8k')
    return (text) => {
      const last = [...text.matchAll(GSM8K_ANSWER)].at(-1);
      return last ? last[1]!.replace(/[,$]/g, '').replace(/\.$/, '') : null;
    };
  const re = compileRegex(x.regex, x.flags ?? '');
  const group = x.group ?? (re.groupCount() > 0 ? 1 : 0);
  return (text) => {
    const m = re.matcher(text);
    let found: string | null = null;
    while (m.find()) {
      found = m.group(group) ?? null;
      if (x.select !== 'last') break;
    }
    return found;
  };
}

/** Whether the normalised prediction equals the normalised reference (a prediction with no extracted answer never does). */
export function exactMatch(prediction: string, reference: string, normalize: Normalizer): boolean {
  const p = normalize(prediction, 'prediction');
  return p !== null && p === normalize(reference, 'reference');
}

// ---------------------------------------------------------------------------------------------
// ROUGE-L (rouge-score 0.1.2: RougeScorer(['rougeL']), default tokenizer, no stemmer)

export interface PrfScore {
  precision: number;
  recall: number;
  fmeasure: number;
}

/** rouge-score's tokenizer: lowercase, every run of characters other than [a-z0-9] is a separator. */
export function rougeTokens(text: string): string[] {
  return text
    .toLowerCase()
    .split(/[^a-z0-9]+/)
    .filter((t) => t.length > 0);
}

/** Length of the longest common subsequence, in O(min(n, m)) memory. */
export function lcsLength<T>(a: readonly T[], b: readonly T[]): number {
  const [long, short] = a.length >= b.length ? [a, b] : [b, a];
  let prev = new Uint32Array(short.length + 1);
  let cur = new Uint32Array(short.length + 1);
  for (let i = 1; i <= long.length; i++) {
    for (let j = 1; j <= short.length; j++) cur[j] = long[i - 1] === short[j - 1] ? prev[j - 1]! + 1 : Math.max(prev[j]!, cur[j - 1]!);
    [prev, cur] = [cur, prev];
  }
  return prev[short.length]!;
}

/** ROUGE-L of one prediction against its reference (precision over the prediction's tokens, recall over the reference's). */
export function rougeL(prediction: string, reference: string): PrfScore {
  const pred = rougeTokens(prediction);
  const ref = rougeTokens(reference);
  if (pred.length === 0 || ref.length === 0) return { precision: 0, recall: 0, fmeasure: 0 };
  const lcs = lcsLength(ref, pred);
  const precision = lcs / pred.length;
  const recall = lcs / ref.length;
  return { precision, recall, fmeasure: precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0 };
}

// ---------------------------------------------------------------------------------------------
// chrF (sacrebleu 2.x CHRF(): char_order 6, word_order 0, beta 2, case-sensitive, whitespace removed)

export const CHRF_CHAR_ORDER = 6;
export const CHRF_BETA = 2;

function charNgrams(text: string, order: number): Map<string, number>[] {
  // Python indexes strings by code point; so does Array.from.
  const chars = Array.from(text.replace(PY_SPACES, ''));
  const out: Map<string, number>[] = [];
  for (let n = 1; n <= order; n++) {
    const m = new Map<string, number>();
    for (let i = 0; i + n <= chars.length; i++) {
      const g = chars.slice(i, i + n).join('');
      m.set(g, (m.get(g) ?? 0) + 1);
    }
    out.push(m);
  }
  return out;
}

/** Per order: [hypothesis n-grams, reference n-grams, matched n-grams], flattened (3 × order numbers). */
export function chrfStatistics(hypothesis: string, reference: string, order = CHRF_CHAR_ORDER): number[] {
  const h = charNgrams(hypothesis, order);
  const r = charNgrams(reference, order);
  const stats: number[] = [];
  for (let n = 0; n < order; n++) {
    let hyp = 0,
      match = 0,
      ref = 0;
    for (const [g, c] of h[n]!) {
      hyp += c;
      const rc = r[n]!.get(g);
      if (rc !== undefined) match += Math.min(c, rc);
    }
    for (const c of r[n]!.values()) ref += c;
    // sacrebleu does not count hypothesis n-grams of an order the reference has none of.
    stats.push(r[n]!.size > 0 ? hyp : 0, ref, match);
  }
  return stats;
}

/** chrF in [0, 100] from (summed) statistics: precision and recall averaged over the orders both sides have, then F-beta. */
export function chrfFromStatistics(stats: readonly number[], beta = CHRF_BETA): number {
  const factor = beta * beta;
  let prec = 0,
    rec = 0,
    orders = 0;
  for (let i = 0; i + 2 < stats.length; i += 3) {
    const [nHyp, nRef, nMatch] = [stats[i]!, stats[i + 1]!, stats[i + 2]!];
    if (nHyp > 0 && nRef > 0) {
      prec += nMatch / nHyp;
      rec += nMatch / nRef;
      orders++;
    }
  }
  if (orders === 0) return 0;
  prec /= orders;
  rec /= orders;
  return prec + rec > 0 ? (100 * (1 + factor) * prec * rec) / (factor * prec + rec) : 0;
}

/** sacrebleu's `CHRF().sentence_score(hypothesis, [reference]).score`. */
export function sentenceChrf(hypothesis: string, reference: string): number {
  return chrfFromStatistics(chrfStatistics(hypothesis, reference));
}

/** sacrebleu's `CHRF().corpus_score(hypotheses, [references]).score`: statistics summed over segments, then one score. */
export function corpusChrf(hypotheses: readonly string[], references: readonly string[]): number {
  if (hypotheses.length !== references.length) throw new Error(`${hypotheses.length} hypotheses but ${references.length} references`);
  const sum = new Array<number>(3 * CHRF_CHAR_ORDER).fill(0);
  hypotheses.forEach((h, i) => chrfStatistics(h, references[i]!).forEach((v, j) => (sum[j]! += v)));
  return chrfFromStatistics(sum);
}

// ---------------------------------------------------------------------------------------------
// Corpus scores for gates

/** Gate names a generative evaluation adds; every score is a fraction in [0, 1]. */
export interface GenerativeScores {
  /** Fraction of rows whose normalised prediction equals the normalised reference. */
  exact_match: number;
  /** Mean ROUGE-L F-measure over rows (rouge-score scores rows; its aggregator's centre is this mean). */
  rouge_l: number;
  /** sacrebleu's corpus chrF / 100. */
  chrf: number;
  /**
   * Exact match averaged over the distinct (normalised) reference answers: each answer's rows weigh the same, so on a
   * one-word-label task it is balanced accuracy (scikit-learn's balanced_accuracy_score) and answering the majority
   * label every time scores 1/labels, not the majority's share. Absent for free-form answers (no reference repeats:
   * it would equal exact_match; free-form.ts).
   */
  balanced_exact_match?: number;
  /**
   * F1 per distinct reference answer (precision over the rows predicted as that answer), averaged: scikit-learn's
   * f1_score(average='macro', labels=<the reference answers>); a prediction that is none of them counts as wrong.
   * Absent for free-form answers, as balanced_exact_match.
   */
  answer_f1_macro?: number;
  /** Distinct (normalised) reference answers: `generated` when every answer is free-form, the label count on labels. */
  reference_answers: number;
  /** Rows scored. */
  generated: number;
}

/** How the rows with one reference answer fared (after normalisation). */
export interface AnswerBreakdown {
  answer: string;
  /** Rows with this reference. */
  rows: number;
  /** Of those, answered exactly (recall). */
  exact_match: number;
  /** Rows whose normalised prediction is this answer. */
  predicted: number;
  /** Of those, right. */
  precision: number;
  f1: number;
}

export interface GenerativeRowScore {
  exact: boolean;
  rougeL: number;
  chrf: number;
}

/**
 * Reference answers one at a time: whether each one's normalised form came before. Labels repeat, free-form replies do
 * not; the evaluate stage asks it of the whole test split (tableReferencesRepeat), not of the rows evaluated: the first
 * 2 rows of a positive/negative test set may be one of each, which says nothing about whether the answers are labels.
 */
export function repeatFinder(normalization: AnswerNormalization = {}): (reference: string) => boolean {
  const normalize = answerNormalizer(normalization);
  const seen = new Set<string>();
  return (reference) => {
    const a = normalize(reference, 'reference')!;
    if (seen.has(a)) return true;
    seen.add(a);
    return false;
  };
}

export function generativeScores(
  predictions: readonly string[],
  references: readonly string[],
  normalization: AnswerNormalization = {},
  /** True where the answers are labels though `references` do not repeat (tableReferencesRepeat over the whole test split). */
  o: { answersRepeat?: boolean } = {},
): { scores: GenerativeScores; rows: GenerativeRowScore[]; answers: AnswerBreakdown[] } {
  if (predictions.length !== references.length) throw new Error(`${predictions.length} predictions but ${references.length} references`);
  const normalize = answerNormalizer(normalization);
  const rows = predictions.map((p, i) => ({
    exact: exactMatch(p, references[i]!, normalize),
    rougeL: rougeL(p, references[i]!).fmeasure,
    chrf: sentenceChrf(p, references[i]!) / 100,
  }));
  const answers = answerBreakdown(
    predictions.map((p) => normalize(p, 'prediction')),
    references.map((r) => normalize(r, 'reference')!),
  );
  const n = rows.length;
  const k = answers.length;
  return {
    scores: {
      exact_match: n ? rows.filter((r) => r.exact).length / n : 0,
      rouge_l: n ? rows.reduce((s, r) => s + r.rougeL, 0) / n : 0,
      chrf: n ? corpusChrf(predictions, references) / 100 : 0,
      // Left out, not undefined: a metrics document holds numbers only (the registry refuses anything else).
      ...(isFreeForm(k, n) && !o.answersRepeat
        ? {}
        : {
            balanced_exact_match: k ? answers.reduce((s, a) => s + a.exact_match, 0) / k : 0,
            answer_f1_macro: k ? answers.reduce((s, a) => s + a.f1, 0) / k : 0,
          }),
      reference_answers: k,
      generated: n,
    },
    rows,
    answers,
  };
}

/** Per distinct reference answer, most frequent first (ties by answer): recall, precision and F1 of the normalised answers. */
function answerBreakdown(predicted: (string | null)[], references: string[]): AnswerBreakdown[] {
  const stats = new Map<string, { rows: number; right: number; predicted: number }>();
  for (const r of references) stats.set(r, { rows: 0, right: 0, predicted: 0 });
  references.forEach((r, i) => {
    const s = stats.get(r)!;
    s.rows++;
    const p = predicted[i];
    if (p === r) s.right++;
  });
  for (const p of predicted) if (p !== null && stats.has(p)) stats.get(p)!.predicted++;
  return [...stats.entries()]
    .map(([answer, s]) => {
      const recall = s.right / s.rows;
      const precision = s.predicted ? s.right / s.predicted : 0;
      const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
      return { answer, rows: s.rows, exact_match: recall, predicted: s.predicted, precision, f1 };
    })
    .sort((a, b) => b.rows - a.rows || (a.answer < b.answer ? -1 : a.answer > b.answer ? 1 : 0));
}

const num: ValueShape = { type: 'number' };

/** The names generativeScores adds to an evaluation's metrics. */
export function generativeGateShape(): Record<string, ValueShape> {
  // The class scores are not optional: a gate names them where the answers are labels, which validate cannot see, and
  // requiring has() would let a free-form test set pass such a gate unread. A gate that reads one where it is absent
  // fails with the reason (free-form.ts).
  const classScore = (what: string): ValueShape => ({
    type: 'number',
    description: `${what}; absent for free-form answers (no reference answer repeats)`,
  });
  return {
    exact_match: num,
    rouge_l: num,
    chrf: num,
    balanced_exact_match: classScore('exact match averaged over the reference answers'),
    answer_f1_macro: classScore('macro F1 over the reference answers'),
    reference_answers: num,
    generated: num,
  };
}
