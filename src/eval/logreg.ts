/**
 * Multinomial logistic regression on frozen feature vectors: the baseline a fine-tuned model has
 * to beat (e.g. a gate `f1_macro >= baseline.f1_macro + 0.02`).
 *
 * Objective: mean cross-entropy + (l2/2)·‖W‖² (the bias is not penalised, as in scikit-learn).
 * Optimiser: full-batch L-BFGS from all-zero parameters with a backtracking (Armijo) line search.
 * The objective is convex, so the answer does not depend on initialisation, and nothing in the
 * fit is random: the same inputs give bit-identical weights. `seed` is accepted so pipeline
 * configs can pass one uniformly; it is recorded in the model but there is nothing to seed.
 */
import { InputError } from '../errors.ts';

export interface LogRegOptions {
  /** L2 strength on weights (not bias). Default 1e-3. Needed for separable data to stay finite. */
  l2?: number;
  /** Maximum L-BFGS iterations. Default 200. */
  maxIter?: number;
  /** Stop when the largest gradient component falls below this. Default 1e-6. */
  gradTol?: number;
  /** Recorded only: the fit is deterministic without randomness (see module comment). */
  seed?: number;
  /** L-BFGS history length. Default 10. */
  memory?: number;
}

export interface LogRegModel {
  kind: 'logreg';
  /** Class labels, sorted by code point; row k of `weights` scores classes[k]. */
  classes: string[];
  dim: number;
  /** Row-major [classes.length, dim]. */
  weights: number[];
  bias: number[];
  l2: number;
  seed: number | null;
  iterations: number;
  converged: boolean;
  /** Objective value at the returned parameters. */
  loss: number;
}

/**
 * Objective and gradient over the packed parameter vector [W (K×D row-major), b (K)].
 * Exported so tests can check the gradient against finite differences.
 */
export function logregObjective(
  params: Float64Array,
  X: readonly Float32Array[],
  yIdx: Int32Array,
  K: number,
  D: number,
  l2: number,
): { loss: number; grad: Float64Array } {
  const n = X.length;
  const grad = new Float64Array(params.length);
  const z = new Float64Array(K);
  let loss = 0;
  const bOff = K * D;
  for (let i = 0; i < n; i++) {
    const x = X[i]!;
    let max = -Infinity;
    for (let k = 0; k < K; k++) {
      let s = params[bOff + k]!;
      const off = k * D;
      for (let d = 0; d < D; d++) s += params[off + d]! * x[d]!;
      z[k] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let k = 0; k < K; k++) {
      z[k] = Math.exp(z[k]! - max);
      sum += z[k]!;
    }
    const y = yIdx[i]!;
    loss += Math.log(sum) - Math.log(z[y]!);
    for (let k = 0; k < K; k++) {
      // dL/dz_k = p_k − [k = y]
      const r = z[k]! / sum - (k === y ? 1 : 0);
      const off = k * D;
      for (let d = 0; d < D; d++) grad[off + d] += r * x[d]!;
      grad[bOff + k] += r;
    }
  }
  loss /= n;
  for (let j = 0; j < grad.length; j++) grad[j] /= n;
  let reg = 0;
  for (let j = 0; j < bOff; j++) {
    reg += params[j]! * params[j]!;
    grad[j] += l2 * params[j]!;
  }
  return { loss: loss + 0.5 * l2 * reg, grad };
}

function dot(a: Float64Array, b: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
}

function validate(X: readonly Float32Array[], y: readonly string[]): number {
  if (X.length === 0) throw new InputError('no training rows', { where: 'baseline.X', hint: 'the training split is empty' });
  if (X.length !== y.length) throw new InputError(`X has ${X.length} rows but y has ${y.length} labels`, { where: 'baseline' });
  const D = X[0]!.length;
  if (D === 0) throw new InputError('feature vectors are empty', { where: 'baseline.X[0]' });
  for (let i = 0; i < X.length; i++) {
    const row = X[i]!;
    if (row.length !== D) throw new InputError(`row has ${row.length} features, expected ${D}`, { where: `baseline.X[${i}]` });
    for (let d = 0; d < D; d++) {
      if (!Number.isFinite(row[d]!))
        throw new InputError(`feature ${d} is ${row[d]}`, { where: `baseline.X[${i}]`, hint: 'features must be finite numbers' });
    }
  }
  return D;
}

export function fit(X: readonly Float32Array[], y: readonly string[], opts: LogRegOptions = {}): LogRegModel {
  const l2 = opts.l2 ?? 1e-3;
  const maxIter = opts.maxIter ?? 200;
  const gradTol = opts.gradTol ?? 1e-6;
  const m = opts.memory ?? 10;
  if (!(l2 >= 0) || !Number.isFinite(l2)) throw new InputError(`l2 must be a finite number ≥ 0, got ${l2}`, { where: 'baseline.l2' });
  if (!Number.isInteger(maxIter) || maxIter < 0)
    throw new InputError(`maxIter must be an integer ≥ 0, got ${maxIter}`, { where: 'baseline.maxIter' });
  const D = validate(X, y);
  const classes = [...new Set(y)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  if (classes.length < 2) throw new InputError(`need at least 2 classes, found ${JSON.stringify(classes)}`, { where: 'baseline.y' });
  const K = classes.length;
  const cIdx = new Map(classes.map((c, i) => [c, i] as const));
  const yIdx = Int32Array.from(y, (l) => cIdx.get(l)!);

  const P = K * D + K;
  let x = new Float64Array(P);
  let { loss: f, grad: g } = logregObjective(x, X, yIdx, K, D, l2);
  const S: Float64Array[] = [];
  const Y: Float64Array[] = [];
  const rho: number[] = [];
  let converged = false;
  let it = 0;
  const maxAbs = (v: Float64Array) => v.reduce((a, b) => Math.max(a, Math.abs(b)), 0);

  for (; it < maxIter; it++) {
    if (maxAbs(g) < gradTol) {
      converged = true;
      break;
    }
    // Two-loop recursion: d = −H·g with H the L-BFGS inverse-Hessian estimate.
    const q = Float64Array.from(g);
    const alpha = new Array<number>(S.length);
    for (let i = S.length - 1; i >= 0; i--) {
      alpha[i] = rho[i]! * dot(S[i]!, q);
      const yi = Y[i]!;
      for (let j = 0; j < P; j++) q[j] -= alpha[i]! * yi[j]!;
    }
    if (S.length > 0) {
      const last = S.length - 1;
      const gamma = dot(S[last]!, Y[last]!) / dot(Y[last]!, Y[last]!);
      for (let j = 0; j < P; j++) q[j] *= gamma;
    }
    for (let i = 0; i < S.length; i++) {
      const beta = rho[i]! * dot(Y[i]!, q);
      const si = S[i]!;
      for (let j = 0; j < P; j++) q[j] += si[j]! * (alpha[i]! - beta);
    }
    let d = q.map((v) => -v);
    let slope = dot(g, d);
    if (!(slope < 0)) {
      // The curvature history produced an ascent direction: restart from steepest descent.
      S.length = Y.length = rho.length = 0;
      d = g.map((v) => -v);
      slope = dot(g, d);
    }
    let step = S.length === 0 ? Math.min(1, 1 / Math.sqrt(dot(g, g))) : 1;
    let xNew = new Float64Array(P);
    let next: { loss: number; grad: Float64Array } | null = null;
    while (step > 1e-20) {
      for (let j = 0; j < P; j++) xNew[j] = x[j]! + step * d[j]!;
      const cand = logregObjective(xNew, X, yIdx, K, D, l2);
      if (cand.loss <= f + 1e-4 * step * slope) {
        next = cand;
        break;
      }
      step *= 0.5;
    }
    if (!next) {
      // No decrease possible at floating-point resolution: we are at the optimum numerically.
      converged = true;
      break;
    }
    const s = new Float64Array(P);
    const yv = new Float64Array(P);
    for (let j = 0; j < P; j++) {
      s[j] = xNew[j]! - x[j]!;
      yv[j] = next.grad[j]! - g[j]!;
    }
    const sy = dot(s, yv);
    if (sy > 1e-12) {
      S.push(s);
      Y.push(yv);
      rho.push(1 / sy);
      if (S.length > m) {
        S.shift();
        Y.shift();
        rho.shift();
      }
    }
    const fOld = f;
    x = xNew;
    f = next.loss;
    g = next.grad;
    if (Math.abs(fOld - f) <= 1e-15 * Math.max(1, Math.abs(f))) {
      converged = true;
      it++;
      break;
    }
  }
  if (!converged && maxAbs(g) < gradTol) converged = true;

  return {
    kind: 'logreg',
    classes,
    dim: D,
    weights: Array.from(x.subarray(0, K * D)),
    bias: Array.from(x.subarray(K * D)),
    l2,
    seed: opts.seed ?? null,
    iterations: it,
    converged,
    loss: f,
  };
}

/** Class probabilities per row, in `model.classes` order. */
export function predictProba(model: LogRegModel, X: readonly Float32Array[]): Float64Array[] {
  const K = model.classes.length;
  const D = model.dim;
  return X.map((x, i) => {
    if (x.length !== D) throw new InputError(`row has ${x.length} features, model expects ${D}`, { where: `predict.X[${i}]` });
    const z = new Float64Array(K);
    let max = -Infinity;
    for (let k = 0; k < K; k++) {
      let s = model.bias[k]!;
      for (let d = 0; d < D; d++) s += model.weights[k * D + d]! * x[d]!;
      z[k] = s;
      if (s > max) max = s;
    }
    let sum = 0;
    for (let k = 0; k < K; k++) sum += z[k] = Math.exp(z[k]! - max);
    for (let k = 0; k < K; k++) z[k] = z[k]! / sum;
    return z;
  });
}

/** Most probable class per row; ties go to the class listed first. */
export function predict(model: LogRegModel, X: readonly Float32Array[]): string[] {
  return predictProba(model, X).map((p) => {
    let best = 0;
    for (let k = 1; k < p.length; k++) if (p[k]! > p[best]!) best = k;
    return model.classes[best]!;
  });
}
