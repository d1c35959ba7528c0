import { test } from 'node:test';
import assert from 'node:assert/strict';
import { learningRate } from './lr-schedules.ts';

test('constant schedule with warmup ramps linearly then holds', () => {
  const s = { kind: 'constant' as const, lr: 1e-3, warmupSteps: 4 };
  assert.deepEqual(
    [0, 1, 2, 4, 100].map((t) => learningRate(s, t)),
    [0, 2.5e-4, 5e-4, 1e-3, 1e-3],
  );
});

test('linear decay reaches zero at totalSteps', () => {
  const s = { kind: 'linear' as const, lr: 1, warmupSteps: 2, totalSteps: 12 };
  assert.equal(learningRate(s, 1), 0.5);
  assert.equal(learningRate(s, 2), 1);
  assert.equal(learningRate(s, 7), 0.5);
  assert.equal(learningRate(s, 12), 0);
  assert.equal(learningRate(s, 20), 0);
});

test('cosine decay is half way at the midpoint and ends at minLr', () => {
  const s = { kind: 'cosine' as const, lr: 1, totalSteps: 10, minLr: 0.1 };
  assert.ok(Math.abs(learningRate(s, 5) - 0.55) < 1e-12);
  assert.ok(Math.abs(learningRate(s, 10) - 0.1) < 1e-12);
  assert.equal(learningRate(s, 0), 1);
});
