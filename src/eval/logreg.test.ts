import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fit, predict, predictProba, logregObjective } from './logreg.ts';
import { InputError } from '../errors.ts';
import { mulberry32 } from '../util/mulberry32.testing.ts';

/** Gaussian-ish blobs around well separated centres. */
function blobs(seed: number, perClass: number, centres: number[][], spread: number) {
  const r = mulberry32(seed);
  const X: Float32Array[] = [];
  const y: string[] = [];
  centres.forEach((c, k) => {
    for (let i = 0; i < perClass; i++) {
      X.push(Float32Array.from(c, (v) => v + (r() + r() + r() - 1.5) * spread));
      y.push(`c${k}`);
    }
  });
  return { X, y };
}

test('gradient matches central finite differences', () => {
  const { X, y } = blobs(
    1,
    4,
    [
      [0, 1, 0],
      [1, 0, 2],
      [2, 2, 1],
    ],
    1,
  );
  const K = 3,
    D = 3;
  const yIdx = Int32Array.from(y, (l) => Number(l.slice(1)));
  const r = mulberry32(7);
  const params = Float64Array.from({ length: K * D + K }, () => r() - 0.5);
  const { grad } = logregObjective(params, X, yIdx, K, D, 0.3);
  const h = 1e-6;
  for (let j = 0; j < params.length; j++) {
    const p = Float64Array.from(params);
    p[j] += h;
    const m = Float64Array.from(params);
    m[j] -= h;
    const fd = (logregObjective(p, X, yIdx, K, D, 0.3).loss - logregObjective(m, X, yIdx, K, D, 0.3).loss) / (2 * h);
    assert.ok(Math.abs(fd - grad[j]!) < 1e-7, `param ${j}: fd ${fd} vs analytic ${grad[j]}`);
  }
});

test('separable three-class data reaches 100% training accuracy', () => {
  const { X, y } = blobs(
    2,
    30,
    [
      [0, 0],
      [6, 0],
      [0, 6],
    ],
    2,
  );
  const model = fit(X, y, { l2: 1e-4, maxIter: 300 });
  const pred = predict(model, X);
  assert.equal(pred.filter((p, i) => p === y[i]).length, y.length);
  for (const p of predictProba(model, X)) assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-12);
});

test('matches the hand-solved symmetric two-point case', () => {
  // x=−1 → a, x=+1 → b, l2=1. By symmetry w_b = −w_a = α, biases 0, and the objective is
  // −log σ(2α) + α², whose stationarity condition is α = 1 − σ(2α). Solve it by bisection.
  const sigma = (t: number) => 1 / (1 + Math.exp(-t));
  let lo = 0,
    hi = 1;
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2;
    if (mid - (1 - sigma(2 * mid)) < 0) lo = mid;
    else hi = mid;
  }
  const alpha = (lo + hi) / 2;
  const model = fit([new Float32Array([-1]), new Float32Array([1])], ['a', 'b'], { l2: 1 });
  assert.ok(model.converged);
  assert.deepEqual(model.classes, ['a', 'b']);
  assert.ok(Math.abs(model.weights[1]! - alpha) < 1e-6, `${model.weights[1]} vs ${alpha}`);
  assert.ok(Math.abs(model.weights[0]! + alpha) < 1e-6);
  assert.ok(Math.abs(model.bias[0]!) < 1e-6 && Math.abs(model.bias[1]!) < 1e-6);
  assert.ok(Math.abs(model.loss - (-Math.log(sigma(2 * alpha)) + alpha * alpha)) < 1e-10);
});

test('fit is deterministic: identical inputs give byte-identical models', () => {
  const { X, y } = blobs(
    3,
    20,
    [
      [0, 0, 0],
      [2, 1, 0],
      [1, 2, 2],
    ],
    3,
  );
  const a = JSON.stringify(fit(X, y, { l2: 0.01, seed: 5 }));
  const b = JSON.stringify(
    fit(
      X.map((r) => Float32Array.from(r)),
      [...y],
      { l2: 0.01, seed: 5 },
    ),
  );
  assert.equal(a, b);
});

test('overlapping data still converges to a stationary point', () => {
  const { X, y } = blobs(
    4,
    40,
    [
      [0, 0],
      [1, 1],
    ],
    4,
  );
  const model = fit(X, y, { l2: 0.1, maxIter: 500 });
  assert.ok(model.converged, `not converged after ${model.iterations}`);
  const K = 2,
    D = 2;
  const params = Float64Array.from([...model.weights, ...model.bias]);
  const { grad } = logregObjective(
    params,
    X,
    Int32Array.from(y, (l) => (l === 'c0' ? 0 : 1)),
    K,
    D,
    0.1,
  );
  assert.ok(Math.max(...grad.map(Math.abs)) < 1e-5);
});

test('bad inputs raise InputError with the row', () => {
  assert.throws(
    () => fit([new Float32Array([1, 2]), new Float32Array([1])], ['a', 'b']),
    (e: unknown) => e instanceof InputError && e.where === 'baseline.X[1]',
  );
  assert.throws(() => fit([new Float32Array([1]), new Float32Array([NaN])], ['a', 'b']), /feature 0 is NaN/);
  assert.throws(() => fit([new Float32Array([1])], ['a']), /at least 2 classes/);
  assert.throws(() => fit([new Float32Array([1])], ['a', 'b']), /1 rows but y has 2/);
  assert.throws(() => fit([new Float32Array([1]), new Float32Array([2])], ['a', 'b'], { l2: -1 }), /l2/);
});
