import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LshIndex, MinHasher, estimateJaccard, jaccard, optimalBands, shingleHashes } from './minhash.ts';
import { Rng } from './rng.ts';

function words(rng: Rng, n: number): string[] {
  return Array.from({ length: n }, () => 'w' + rng.int(5000));
}

test('estimated Jaccard tracks exact Jaccard within sampling error', () => {
  const rng = new Rng(3);
  const h = new MinHasher(256, 11);
  const sig = new Uint32Array(2 * 256);
  let worst = 0;
  for (let t = 0; t < 40; t++) {
    const a = words(rng, 60);
    const b = a.map((w) => (rng.next() < t / 40 ? 'x' + rng.int(5000) : w));
    const sa = shingleHashes(a.join(' '), 'word', 2),
      sb = shingleHashes(b.join(' '), 'word', 2);
    h.signature(sa, sig, 0);
    h.signature(sb, sig, 256);
    const err = Math.abs(estimateJaccard(sig, 0, 1, 256) - jaccard(sa, sb));
    worst = Math.max(worst, err);
  }
  // Standard error at 256 permutations is at most 0.5/sqrt(256) = 0.031; allow ~3.5 sigma.
  assert.ok(worst < 0.11, `worst error ${worst}`);
});

test('signatures depend on the seed and are deterministic', () => {
  const s = shingleHashes('the quick brown fox jumps over the lazy dog', 'char', 4);
  const out = (seed: number) => {
    const o = new Uint32Array(64);
    new MinHasher(64, seed).signature(s, o);
    return Array.from(o);
  };
  assert.deepEqual(out(1), out(1));
  assert.notDeepEqual(out(1), out(2));
});

test('shingles: short texts give one shingle, empty gives none, char shingles use code points', () => {
  assert.equal(shingleHashes('', 'word', 3).length, 0);
  assert.equal(shingleHashes('a b', 'word', 3).length, 1);
  assert.equal(shingleHashes('a b c d', 'word', 3).length, 2);
  assert.equal(shingleHashes('😀😀😀', 'char', 2).length, 2);
  assert.deepEqual(shingleHashes('ab ab', 'char', 2)[0], shingleHashes('ab ab', 'char', 2)[3]);
});

test('optimal bands behave like an S-curve around the threshold', () => {
  for (const t of [0.5, 0.7, 0.8, 0.9]) {
    const { bands, rows } = optimalBands(t, 128);
    assert.ok(bands * rows <= 128);
    const p = (s: number) => 1 - (1 - s ** rows) ** bands;
    assert.ok(p(t + 0.1) > 0.8, `t=${t} b=${bands} r=${rows}: p(t+.1)=${p(t + 0.1)}`);
    assert.ok(p(t - 0.3) < 0.2, `t=${t} b=${bands} r=${rows}: p(t-.3)=${p(t - 0.3)}`);
  }
});

test('LSH finds planted near duplicates and few unrelated pairs', () => {
  const rng = new Rng(5);
  const numPerm = 128,
    { bands, rows } = optimalBands(0.8, numPerm);
  const h = new MinHasher(numPerm, 0),
    lsh = new LshIndex(bands, rows, numPerm);
  const n = 400;
  const sig = new Uint32Array(n * numPerm);
  const texts: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 2 === 1) {
      // partner of i-1 with one word changed in 100: Jaccard of 3-shingles ~0.94
      const w = texts[i - 1].split(' ');
      w[rng.int(w.length)] = 'changed';
      texts.push(w.join(' '));
    } else texts.push(words(rng, 100).join(' '));
  }
  const found = new Set<string>();
  let unrelated = 0;
  for (let i = 0; i < n; i++) {
    h.signature(shingleHashes(texts[i], 'word', 3), sig, i * numPerm);
    lsh.insert(sig, i, (o) => {
      if (o === i - 1 && i % 2 === 1) found.add(`${o}-${i}`);
      else unrelated++;
      return false;
    });
  }
  assert.ok(found.size >= 198, `found ${found.size} of 200`);
  assert.ok(unrelated < 5, `unrelated candidates ${unrelated}`);
});

test('numPerm need not be a multiple of the unroll width', () => {
  const s = shingleHashes('one two three four five six seven', 'word', 2);
  const a = new Uint32Array(7),
    b = new Uint32Array(8);
  new MinHasher(7, 3).signature(s, a);
  new MinHasher(8, 3).signature(s, b);
  // Same seed: the first 7 permutations are the same functions.
  assert.deepEqual(Array.from(a), Array.from(b.subarray(0, 7)));
  assert.ok(a.every((v) => v !== 0x7fffffff));
});

test('16-bit signature storage estimates like 32-bit storage', () => {
  const rng = new Rng(12);
  const h = new MinHasher(128, 2);
  const s32 = new Uint32Array(256),
    s16 = new Uint16Array(256);
  let maxDiff = 0;
  for (let t = 0; t < 50; t++) {
    const a = words(rng, 50),
      b = a.map((w) => (rng.next() < 0.3 ? 'z' + rng.int(9999) : w));
    const sa = shingleHashes(a.join(' '), 'word', 2),
      sb = shingleHashes(b.join(' '), 'word', 2);
    h.signature(sa, s32, 0);
    h.signature(sb, s32, 128);
    h.signature(sa, s16, 0);
    h.signature(sb, s16, 128);
    maxDiff = Math.max(maxDiff, estimateJaccard(s16, 0, 1, 128) - estimateJaccard(s32, 0, 1, 128));
  }
  // Only accidental 16-bit agreements can differ (expected ~0.001 slots per pair).
  assert.ok(maxDiff >= 0 && maxDiff <= 1 / 128, `max difference ${maxDiff}`);
});
