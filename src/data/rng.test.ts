import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng, seedToInt } from './rng.ts';

test('same seed gives the same sequence; different seeds differ', () => {
  const a = new Rng(42),
    b = new Rng(42),
    c = new Rng(43);
  const sa = Array.from({ length: 100 }, () => a.nextU32());
  const sb = Array.from({ length: 100 }, () => b.nextU32());
  const sc = Array.from({ length: 100 }, () => c.nextU32());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  assert.notEqual(seedToInt('train'), seedToInt('split'));
});

test('state round-trips so a checkpoint resumes the exact sequence', () => {
  const a = new Rng('resume');
  for (let i = 0; i < 17; i++) a.nextU32();
  const b = Rng.fromState(a.state());
  for (let i = 0; i < 50; i++) assert.equal(a.next(), b.next());
});

test('int(n) is roughly uniform and next() stays in [0,1)', () => {
  const r = new Rng(7);
  const n = 10,
    draws = 100_000,
    counts = new Array(n).fill(0);
  for (let i = 0; i < draws; i++) counts[r.int(n)]++;
  // chi-square with 9 dof: 99.9th percentile is 27.9
  const e = draws / n;
  const chi = counts.reduce((s, c) => s + (c - e) ** 2 / e, 0);
  assert.ok(chi < 27.9, `chi-square ${chi}`);
  let mean = 0;
  for (let i = 0; i < draws; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
    mean += x / draws;
  }
  assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
});

test('shuffle is a seeded permutation', () => {
  const a = new Rng(1).shuffle([...Array(50).keys()]);
  const b = new Rng(1).shuffle([...Array(50).keys()]);
  assert.deepEqual(a, b);
  assert.deepEqual(
    [...a].sort((x, y) => (x as number) - (y as number)),
    [...Array(50).keys()],
  );
  assert.notDeepEqual(a, [...Array(50).keys()]);
});
