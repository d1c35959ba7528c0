import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  classificationGateShape,
  classificationReport,
  lmGateMetrics,
  lmGateShape,
  reportToGateMetrics,
  LmLossAccumulator,
  lmLossFromTokenLosses,
  tokenNll,
} from './metrics.ts';
import type { ValueShape } from '../spec/types.ts';
import { InputError } from '../errors.ts';

const close = (a: number, b: number, eps = 1e-12) => assert.ok(Math.abs(a - b) <= eps, `${a} != ${b}`);

// Hand-computed: rows are true a,b,c; columns predicted a,b,c → [[2,1,0],[1,1,0],[1,0,0]].
const yTrue = ['a', 'a', 'a', 'b', 'b', 'c'];
const yPred = ['a', 'a', 'b', 'b', 'a', 'a'];

test('classification report matches a hand-computed case with a never-predicted class', () => {
  const r = classificationReport(yTrue, yPred);
  assert.deepEqual(r.labels, ['a', 'b', 'c']);
  assert.deepEqual(r.confusion, [
    [2, 1, 0],
    [1, 1, 0],
    [1, 0, 0],
  ]);
  close(r.accuracy, 0.5);
  close(r.perClass.a!.precision, 0.5);
  close(r.perClass.a!.recall, 2 / 3);
  close(r.perClass.a!.f1, 4 / 7);
  assert.equal(r.perClass.a!.support, 3);
  close(r.perClass.b!.f1, 0.5);
  // c is never predicted: 0/0 precision is defined as 0, as is F1.
  assert.deepEqual(r.perClass.c, { precision: 0, recall: 0, f1: 0, support: 1 });
  close(r.macro.precision, 1 / 3);
  close(r.macro.recall, 7 / 18);
  close(r.macro.f1, 5 / 14);
  close(r.micro.precision, 0.5);
  close(r.micro.recall, 0.5);
  close(r.micro.f1, 0.5);
  close(r.weighted.f1, 19 / 42);
});

test('explicit label order is respected and absent labels count in the macro average', () => {
  const r = classificationReport(yTrue, yPred, { labels: ['c', 'b', 'a', 'd'] });
  assert.deepEqual(r.labels, ['c', 'b', 'a', 'd']);
  assert.deepEqual(r.confusion[2], [0, 1, 2, 0]);
  assert.deepEqual(r.perClass.d, { precision: 0, recall: 0, f1: 0, support: 0 });
  close(r.macro.f1, (4 / 7 + 0.5) / 4);
});

test('perfect predictions score 1 everywhere', () => {
  const r = classificationReport(['x', 'y', 'y'], ['x', 'y', 'y']);
  assert.equal(r.accuracy, 1);
  assert.equal(r.macro.f1, 1);
  assert.equal(r.micro.f1, 1);
});

test('default label order does not depend on example order', () => {
  const a = classificationReport(yTrue, yPred);
  const b = classificationReport([...yTrue].reverse(), [...yPred].reverse());
  assert.deepEqual(a, b);
});

test('bad inputs raise InputError naming the problem', () => {
  assert.throws(
    () => classificationReport(['a'], ['a', 'b']),
    (e: unknown) => e instanceof InputError && /1 labels but yPred has 2/.test(e.message),
  );
  assert.throws(() => classificationReport([], []), InputError);
  assert.throws(
    () => classificationReport(['a', 'z'], ['a', 'a'], { labels: ['a'] }),
    (e: unknown) => e instanceof InputError && /yTrue\[1\]="z"/.test(e.message),
  );
  assert.throws(() => classificationReport(['a'], ['a'], { labels: ['a', 'a'] }), /duplicates/);
});

test('gate metric names are flat and per-class nested', () => {
  const g = reportToGateMetrics(classificationReport(yTrue, yPred));
  close(g.f1_macro as number, 5 / 14);
  close(g.accuracy as number, 0.5);
  close((g.per_class as Record<string, Record<string, number>>).a!.f1!, 4 / 7);
});

test('LM loss from logits shifts by one and scores response tokens only', () => {
  // vocab 2; row0 uniform → −log(1/2); row1 = [ln 3, 0] → target 1 has p = 1/4.
  const logits = new Float32Array([0, 0, Math.log(3), 0, 5, -5]);
  const acc = new LmLossAccumulator();
  acc.addLogits(logits, 2, new Int32Array([0, 1, 1]), new Uint8Array([0, 1, 1]));
  const r = acc.result();
  assert.equal(r.tokens, 2);
  close(r.loss, (Math.log(2) + Math.log(4)) / 2, 1e-6);
  close(r.perplexity, 2 ** 1.5, 1e-5);
  // The prompt token (mask 0) is skipped: only position 2 is scored.
  const acc2 = new LmLossAccumulator();
  acc2.addLogits(logits, 2, new Int32Array([0, 1, 1]), new Uint8Array([1, 0, 1]));
  close(acc2.result().loss, Math.log(4), 1e-6);
});

test('token NLL is stable for large logits', () => {
  const l = new Float32Array([1000, 0, -1000]);
  const v = tokenNll(l, 0, 3, 0);
  assert.ok(Number.isFinite(v) && v >= 0 && v < 1e-6);
  close(tokenNll(l, 0, 3, 1), 1000, 1e-3);
});

test('LM loss across batches is token-weighted', () => {
  const acc = new LmLossAccumulator();
  acc.addTokenLosses(new Float32Array([1, 1, 1]));
  acc.addTokenLosses(new Float32Array([4, 9]), new Uint8Array([1, 0]));
  const r = acc.result();
  assert.equal(r.tokens, 4);
  close(r.loss, 7 / 4);
  close(lmLossFromTokenLosses(new Float64Array([0, 2])).perplexity, Math.E);
  assert.throws(() => lmLossFromTokenLosses(new Float32Array([1]), new Uint8Array([0])), /no response tokens/);
  assert.throws(() => lmLossFromTokenLosses(new Float32Array([NaN])), InputError);
  assert.throws(() => new LmLossAccumulator().addLogits(new Float32Array(4), 2, [0, 5], [0, 1]), /outside the vocabulary/);
});

test('batched logits give the same loss as sequence-by-sequence accumulation', () => {
  const B = 3,
    T = 4,
    V = 5;
  const logits = Float32Array.from({ length: B * T * V }, (_, i) => Math.sin(i * 1.7) * 3);
  const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7) % V);
  // Sequence 2 is padded after two tokens: its padding has mask 0.
  const mask = new Uint8Array([0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 0, 0]);
  const batched = new LmLossAccumulator();
  batched.addBatchLogits(logits, [B, T, V], ids, mask);
  const seq = new LmLossAccumulator();
  for (let b = 0; b < B; b++)
    seq.addLogits(logits.slice(b * T * V, (b + 1) * T * V), V, ids.slice(b * T, (b + 1) * T), mask.slice(b * T, (b + 1) * T));
  assert.deepEqual(batched.result(), seq.result());
  assert.equal(batched.result().tokens, 6);
  // And one token checked by hand: batch 0, position 1 is predicted from row 0.
  const one = new LmLossAccumulator();
  one.addLogits(logits.slice(0, 2 * V), V, [ids[0]!, ids[1]!], [0, 1]);
  const row = Array.from(logits.slice(0, V));
  const lse = Math.log(row.reduce((a, x) => a + Math.exp(x), 0));
  close(one.result().loss, lse - row[ids[1]!]!, 1e-6);
  assert.throws(() => batched.addBatchLogits(logits, [B, T, V + 1], ids, mask), /expected 3×4×6/);
  assert.throws(() => batched.addBatchLogits(logits, [B, T, V], ids.slice(1), mask), /must both have 3×4/);
});

test('the gate shapes list exactly the names evaluation produces', () => {
  const leaves = (v: unknown, prefix = ''): string[] =>
    v !== null && typeof v === 'object' ? Object.entries(v).flatMap(([k, x]) => leaves(x, prefix ? `${prefix}.${k}` : k)) : [prefix];
  const shapeLeaves = (s: ValueShape, prefix = ''): string[] =>
    s.type === 'object' ? Object.entries(s.fields).flatMap(([k, x]) => shapeLeaves(x, prefix ? `${prefix}.${k}` : k)) : [prefix];
  const metrics = reportToGateMetrics(classificationReport(['ham', 'spam', 'ham'], ['ham', 'ham', 'spam'], { labels: ['ham', 'spam'] }));
  assert.deepEqual(shapeLeaves(classificationGateShape(['ham', 'spam'])).sort(), leaves(metrics).sort());
  const lm = lmLossFromTokenLosses(Float64Array.from([1, 2]));
  assert.deepEqual(shapeLeaves(lmGateShape()).sort(), Object.keys(lmGateMetrics(lm, 2)).sort());
});
