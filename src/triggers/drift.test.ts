import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { jensenShannon } from './drift.ts';

/** Reference divergence written independently: natural logs, then converted to bits. */
function referenceDistance(p: number[], q: number[]): number {
  const kl = (a: number[], b: number[]) => a.reduce((s, ai, i) => (ai > 0 ? s + ai * Math.log(ai / b[i]!) : s), 0);
  const m = p.map((pi, i) => (pi + q[i]!) / 2);
  return Math.sqrt((kl(p, m) / 2 + kl(q, m) / 2) / Math.LN2);
}

describe('jensenShannon', () => {
  it('is 0 for identical distributions, whatever the totals', () => {
    assert.equal(jensenShannon({ ham: 30, spam: 10 }, { ham: 30, spam: 10 }), 0);
    // Same proportions at a different scale are the same distribution.
    assert.ok(jensenShannon({ ham: 3, spam: 1 }, { ham: 300, spam: 100 }) < 1e-12);
  });

  it('is 1 for disjoint label sets', () => {
    assert.ok(Math.abs(jensenShannon({ a: 5 }, { b: 7 }) - 1) < 1e-12);
    assert.ok(Math.abs(jensenShannon({ a: 1, b: 1 }, { c: 2, d: 9 }) - 1) < 1e-12);
  });

  it('is symmetric', () => {
    const a = { x: 10, y: 3, z: 1 };
    const b = { x: 2, y: 8 };
    assert.equal(jensenShannon(a, b), jensenShannon(b, a));
  });

  it('treats a label missing on one side as a zero count and stays finite', () => {
    const d = jensenShannon({ ham: 50, spam: 50 }, { ham: 100 });
    assert.ok(Number.isFinite(d) && d > 0 && d < 1, `got ${d}`);
    assert.ok(Math.abs(d - referenceDistance([0.5, 0.5], [1, 0])) < 1e-12);
    // An explicit zero and an absent key mean the same thing.
    assert.equal(jensenShannon({ ham: 100, spam: 0 }, { ham: 50, spam: 50 }), d);
  });

  it('matches an independent computation on a partial shift', () => {
    const d = jensenShannon({ a: 70, b: 20, c: 10 }, { a: 40, b: 40, c: 20 });
    assert.ok(Math.abs(d - referenceDistance([0.7, 0.2, 0.1], [0.4, 0.4, 0.2])) < 1e-12);
    assert.ok(d > 0.1 && d < 0.5, `a moderate shift should give a moderate distance, got ${d}`);
  });

  it('grows as the distributions move apart', () => {
    const base = { ham: 80, spam: 20 };
    const ds = [80, 60, 40, 20, 0].map((h) => jensenShannon(base, { ham: h, spam: 100 - h }));
    for (let i = 1; i < ds.length; i++) assert.ok(ds[i]! > ds[i - 1]!, `distances should increase: ${ds.join(', ')}`);
  });

  it('is 0 when both sides are empty', () => {
    assert.equal(jensenShannon({}, {}), 0);
  });
});
