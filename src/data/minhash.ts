/**
 * MinHash signatures and banded LSH, in 32-bit integer arithmetic on typed arrays.
 *
 * Each of the `numPerm` hash functions is h_k(x) = fmix32(x XOR s_k), the murmur3 finalizer over a
 * per-permutation seed: a full-avalanche bijection on 32 bits, so each behaves as an independent
 * random permutation of shingle hashes (the min-wise property MinHash needs) at ~6 integer ops.
 */
import { splitmix32 } from './rng.ts';

/** 32-bit hash of a string's UTF-16 code units (murmur3-style body and finalizer). */
export function hashString32(s: string, seed = 0): number {
  let h = seed | 0;
  for (let i = 0; i < s.length; i++) {
    let k = Math.imul(s.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  h ^= s.length;
  return fmix32(h);
}

export function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export type ShingleKind = 'char' | 'word';

/**
 * Hashes of the text's k-shingles. A text shorter than one shingle yields one shingle of the
 * whole text, so short texts can still match each other. Empty text yields none.
 */
export function shingleHashes(text: string, kind: ShingleKind, k: number): Uint32Array {
  if (text.length === 0) return new Uint32Array(0);
  if (kind === 'char') {
    const cps = Array.from(text);
    if (cps.length <= k) return Uint32Array.of(hashString32(text));
    const out = new Uint32Array(cps.length - k + 1);
    for (let i = 0; i < out.length; i++) {
      let h = 0x9747b28c;
      for (let j = 0; j < k; j++) {
        const cp = cps[i + j].codePointAt(0)!;
        h = Math.imul(h ^ cp, 0x01000193);
      }
      out[i] = fmix32(h);
    }
    return out;
  }
  const words = text.split(' ').filter((w) => w.length > 0);
  if (words.length === 0) return new Uint32Array(0);
  const wh = words.map((w) => hashString32(w));
  if (wh.length <= k) {
    let h = 0x3c6ef372;
    for (const x of wh) h = Math.imul(h ^ x, 0x01000193) ^ (h >>> 15);
    return Uint32Array.of(fmix32(h));
  }
  const out = new Uint32Array(wh.length - k + 1);
  for (let i = 0; i < out.length; i++) {
    let h = 0x3c6ef372;
    for (let j = 0; j < k; j++) h = Math.imul(h ^ wh[i + j], 0x01000193) ^ (h >>> 15);
    out[i] = fmix32(h);
  }
  return out;
}

export class MinHasher {
  readonly seeds: Uint32Array;
  constructor(readonly numPerm: number, seed = 0) {
    if (!Number.isInteger(numPerm) || numPerm < 1) throw new Error(`numPerm must be a positive integer, got ${numPerm}`);
    this.seeds = new Uint32Array(numPerm);
    for (let k = 0; k < numPerm; k++) this.seeds[k] = splitmix32((seed * 0x9e3779b1 + k) | 0);
  }

  /** Writes the signature into out[offset .. offset+numPerm). Empty shingle sets give all 0xFFFFFFFF. */
  signature(shingles: Uint32Array, out: Uint32Array, offset = 0): void {
    const n = this.numPerm, seeds = this.seeds;
    out.fill(0xffffffff, offset, offset + n);
    for (let i = 0; i < shingles.length; i++) {
      const x = shingles[i];
      for (let k = 0; k < n; k++) {
        let h = x ^ seeds[k];
        h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
        h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
        h = (h ^ (h >>> 16)) >>> 0;
        if (h < out[offset + k]) out[offset + k] = h;
      }
    }
  }
}

/** Fraction of equal signature slots: an unbiased estimate of Jaccard similarity. */
export function estimateJaccard(sig: Uint32Array, a: number, b: number, numPerm: number): number {
  let eq = 0;
  const oa = a * numPerm, ob = b * numPerm;
  for (let k = 0; k < numPerm; k++) if (sig[oa + k] === sig[ob + k]) eq++;
  return eq / numPerm;
}

/** Exact Jaccard of two shingle sets (tests and verification of the estimator). */
export function jaccard(a: Uint32Array, b: Uint32Array): number {
  const sa = new Set(a), sb = new Set(b);
  let inter = 0;
  for (const x of sa) if (sb.has(x)) inter++;
  const union = sa.size + sb.size - inter;
  return union === 0 ? 1 : inter / union;
}

/**
 * Bands × rows minimising equal-weighted false-positive and false-negative areas under the
 * S-curve 1-(1-s^r)^b around the threshold (midpoint-rule integration).
 */
export function optimalBands(threshold: number, numPerm: number): { bands: number; rows: number } {
  const prob = (s: number, b: number, r: number) => 1 - (1 - s ** r) ** b;
  const integrate = (f: (s: number) => number, lo: number, hi: number) => {
    const steps = 200, dx = (hi - lo) / steps;
    let sum = 0;
    for (let i = 0; i < steps; i++) sum += f(lo + (i + 0.5) * dx) * dx;
    return sum;
  };
  let best = { bands: 1, rows: numPerm }, bestErr = Infinity;
  for (let b = 1; b <= numPerm; b++) {
    for (let r = 1; b * r <= numPerm; r++) {
      const fp = integrate((s) => prob(s, b, r), 0, threshold);
      const fn = integrate((s) => 1 - prob(s, b, r), threshold, 1);
      const err = 0.5 * fp + 0.5 * fn;
      if (err < bestErr - 1e-12) { bestErr = err; best = { bands: b, rows: r }; }
    }
  }
  return best;
}

/** Open-addressing map uint32 band key → most recent row in that bucket's chain. */
class BandTable {
  private keys = new Uint32Array(1024);
  private heads = new Int32Array(1024).fill(-1);
  private count = 0;

  private slot(key: number): number {
    const mask = this.keys.length - 1;
    let i = fmix32(key) & mask;
    while (this.heads[i] !== -1 && this.keys[i] !== key) i = (i + 1) & mask;
    return i;
  }

  get(key: number): number {
    return this.heads[this.slot(key)];
  }

  set(key: number, row: number): void {
    let i = this.slot(key);
    if (this.heads[i] === -1) {
      if (++this.count * 2 > this.keys.length) { this.grow(); i = this.slot(key); }
      this.keys[i] = key;
    }
    this.heads[i] = row;
  }

  private grow(): void {
    const oldKeys = this.keys, oldHeads = this.heads;
    this.keys = new Uint32Array(oldKeys.length * 2);
    this.heads = new Int32Array(oldKeys.length * 2).fill(-1);
    for (let i = 0; i < oldKeys.length; i++) {
      if (oldHeads[i] === -1) continue;
      const j = this.slot(oldKeys[i]);
      this.keys[j] = oldKeys[i];
      this.heads[j] = oldHeads[i];
    }
  }
}

/**
 * Banded LSH over signatures held by the caller. Buckets are chains of signature ids; `query`
 * visits each earlier id sharing a band bucket with the new one.
 */
export class LshIndex {
  private readonly tables: BandTable[];
  /** next[id * bands + band]: previous id in the same bucket, or -1. */
  private next = new Int32Array(1024);

  constructor(readonly bands: number, readonly rows: number, readonly numPerm: number) {
    if (bands * rows > numPerm) throw new Error(`bands × rows (${bands}×${rows}) exceeds numPerm ${numPerm}`);
    this.tables = Array.from({ length: bands }, () => new BandTable());
  }

  bandKey(sig: Uint32Array, id: number, band: number): number {
    let h = band * 0x9e3779b1;
    const o = id * this.numPerm + band * this.rows;
    for (let j = 0; j < this.rows; j++) h = Math.imul(h ^ sig[o + j], 0x01000193) ^ (h >>> 13);
    return fmix32(h);
  }

  /**
   * Calls `visit(other)` for earlier ids sharing a bucket with `id`, band by band; `visit` returns
   * true when `id` is already represented by `other` (same cluster) so `id` need not join that
   * bucket's chain. Then inserts `id` where needed.
   */
  insert(sig: Uint32Array, id: number, visit: (other: number) => boolean): void {
    const need = (id + 1) * this.bands;
    if (need > this.next.length) {
      let cap = this.next.length * 2;
      while (cap < need) cap *= 2;
      const n = new Int32Array(cap);
      n.set(this.next);
      this.next = n;
    }
    for (let b = 0; b < this.bands; b++) {
      const key = this.bandKey(sig, id, b);
      const table = this.tables[b];
      const head = table.get(key);
      let represented = false;
      for (let o = head; o !== -1; o = this.next[o * this.bands + b]) {
        if (visit(o)) represented = true;
      }
      if (!represented) {
        this.next[id * this.bands + b] = head;
        table.set(key, id);
      }
    }
  }
}
