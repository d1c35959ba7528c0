/**
 * Choosing the next token from one row of logits, in the order Hugging Face `generate` applies its
 * processors: repetition penalty, then (when sampling) temperature, top-k and top-p, then a draw from
 * a seeded generator. Temperature 0 (or absent) means greedy, as in the OpenAI API.
 */
import { InputError } from '../errors.ts';
import { Rng } from '../engine/prng.ts';

export interface SamplingOptions {
  /** 0 or absent: greedy (argmax). Otherwise logits are divided by it before sampling. */
  temperature?: number;
  /** Keep only the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p (1 or absent: all). */
  topP?: number;
  /** > 1 discourages tokens already in the prompt or the output (HF's CTRL-style penalty). 1 or absent: off. */
  repetitionPenalty?: number;
  /** Seed of the draw; the same seed, prompt and options give the same tokens. Default 0. */
  seed?: number;
}

/**
 * transformers and vLLM take any penalty > 0, but a seen token's logit divided by 1e-39 (or multiplied by 1e39) leaves
 * float32's range, and sampling over an infinite logit drew the least likely token. Past these bounds a seen token is
 * as good as forced (or banned) already: 1 is off, 1.1-1.3 the usual.
 */
export const REPETITION_PENALTY = { min: 0.01, max: 100 } as const;

export function checkSampling(o: SamplingOptions, where = 'generate'): void {
  const bad = (field: string, msg: string) => new InputError(msg, { where: `${where}.${field}` });
  if (o.temperature !== undefined && !(Number.isFinite(o.temperature) && o.temperature >= 0))
    throw bad('temperature', `must be a number >= 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) throw bad('topK', `must be an integer >= 0, got ${o.topK}`);
  if (o.topP !== undefined && !(Number.isFinite(o.topP) && o.topP > 0 && o.topP <= 1))
    throw bad('topP', `must be in (0, 1], got ${o.topP}`);
  const rp = o.repetitionPenalty;
  if (rp !== undefined && !(Number.isFinite(rp) && rp >= REPETITION_PENALTY.min && rp <= REPETITION_PENALTY.max))
    throw bad('repetitionPenalty', `must be a number from ${REPETITION_PENALTY.min} to ${REPETITION_PENALTY.max} (1 is off), got ${rp}`);
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) throw bad('seed', `must be an integer, got ${o.seed}`);
}

/** HF RepetitionPenaltyLogitsProcessor: a seen token's logit is divided by the penalty when positive, multiplied when negative. */
export function applyRepetitionPenalty(logits: Float32Array, seen: Iterable<number>, penalty: number): void {
  if (penalty === 1) return;
  for (const t of new Set(seen)) {
    const v = logits[t]!;
    logits[t] = v < 0 ? v * penalty : v / penalty;
  }
}

/** Index of the largest value; the first one on ties (as torch.argmax on CPU). */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** One row's token chooser: its own generator, so a row's draws do not depend on the other rows of a batch. */
export class TokenSampler {
  private readonly rng: Rng;
  private readonly greedy: boolean;

  constructor(
    private readonly o: SamplingOptions,
    row = 0,
  ) {
    checkSampling(o);
    this.greedy = !o.temperature;
    // Mix the row into the seed so rows of one request differ, yet each is fixed by (seed, row).
    const seed = o.seed ?? 0;
    const lo = seed >>> 0,
      hi = Math.floor(seed / 2 ** 32) >>> 0;
    this.rng = new Rng((Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) + Math.imul(row + 1, 0xc2b2ae35)) >>> 0);
  }

  /** Picks the next token; `logits` is modified (penalty applied). `seen`: prompt and generated ids. */
  next(logits: Float32Array, seen: Iterable<number>): number {
    if (this.o.repetitionPenalty !== undefined) applyRepetitionPenalty(logits, seen, this.o.repetitionPenalty);
    if (this.greedy) return argmax(logits);
    return this.sample(logits);
  }

  private sample(logits: Float32Array): number {
    const V = logits.length;
    const t = this.o.temperature!;
    const k = this.o.topK && this.o.topK < V ? this.o.topK : V;
    const p = this.o.topP ?? 1;
    // Candidates by descending logit (ties: lower id first, so the order is total and reproducible).
    let order: number[];
    if (k < V) {
      order = topIndices(logits, k);
    } else {
      order = Array.from({ length: V }, (_, i) => i);
      order.sort((a, b) => logits[b]! - logits[a]! || a - b);
    }
    const max = logits[order[0]!]!;
    const probs = new Float64Array(order.length);
    let sum = 0;
    for (let i = 0; i < order.length; i++) sum += probs[i] = Math.exp((logits[order[i]!]! - max) / t);
    // Top-p: keep the shortest prefix whose mass reaches p (always at least one token).
    let keep = order.length;
    if (p < 1) {
      let acc = 0;
      for (let i = 0; i < order.length; i++) {
        acc += probs[i]! / sum;
        if (acc >= p) {
          keep = i + 1;
          break;
        }
      }
    }
    let kept = 0;
    for (let i = 0; i < keep; i++) kept += probs[i]!;
    let u = this.rng.next() * kept;
    for (let i = 0; i < keep; i++) {
      u -= probs[i]!;
      if (u < 0) return order[i]!;
    }
    return order[keep - 1]!;
  }
}

/** The k largest entries' indices, descending (ties: lower index first), without sorting the whole row. */
function topIndices(v: Float32Array, k: number): number[] {
  const idx: number[] = [];
  const better = (a: number, b: number) => v[a]! > v[b]! || (v[a] === v[b] && a < b);
  for (let i = 0; i < v.length; i++) {
    if (idx.length === k && !better(i, idx[k - 1]!)) continue;
    let j = idx.length === k ? k - 1 : idx.length;
    if (idx.length < k) idx.push(i);
    while (j > 0 && better(i, idx[j - 1]!)) {
      idx[j] = idx[j - 1]!;
      j--;
    }
    idx[j] = i;
  }
  return idx;
}
