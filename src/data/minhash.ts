/**
 * MinHash signatures and banded LSH, in 32-bit integer arithmetic on typed arrays.
 *
 * Shingles are hashed once to 32 bits (murmur3-style); each of the `numPerm` permutations is then
 * a cheap seeded bijection of those hashes (see MinHasher.signature).
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

/** 53-bit key from two independent 32-bit hashes: collision odds ~n²/2^54 (≈6e-5 at 1M rows). Dedupe's exact key. */
export function key53(s: string): number {
  return hashString32(s, 0x2545f491) * 2097152 + (hashString32(s, 0x6a09e667) >>> 11);
}

export function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

export type ShingleKind = 'char' | 'word';

/** Scratch buffers reused across calls: shingling allocates nothing per row in the steady state. */
let scratchUnits = new Uint32Array(4096);
let scratchOut = new Uint32Array(4096);

function ensure(n: number): void {
  if (scratchUnits.length < n) scratchUnits = new Uint32Array(n * 2);
  if (scratchOut.length < n) scratchOut = new Uint32Array(n * 2);
}

/** Rolling combination of k unit hashes (order-sensitive). */
function combine(units: Uint32Array, from: number, k: number, seed: number): number {
  let h = seed;
  for (let j = 0; j < k; j++) h = Math.imul(h ^ units[from + j], 0x01000193) ^ (h >>> 15);
  return fmix32(h);
}

/**
 * Hashes of the text's k-shingles: words are runs between ' ' (dedupe's normalized text has
 * single spaces), chars are code points. A text shorter than one shingle yields one shingle of
 * the whole text, so short texts can still match each other; empty text yields none.
 * The result is a view of a scratch buffer, valid only until the next call: hot loops use this;
 * `shingleHashes` returns a copy.
 */
export function shingleHashesScratch(text: string, kind: ShingleKind, k: number): Uint32Array {
  ensure(text.length + 1);
  const units = scratchUnits;
  let m = 0;
  if (kind === 'char') {
    for (let i = 0; i < text.length; i++) {
      let cp = text.charCodeAt(i);
      if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
        const lo = text.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
          i++;
        }
      }
      units[m++] = Math.imul(cp, 0x9e3779b1) ^ cp;
    }
  } else {
    // murmur3-style hash of each word, computed while scanning.
    let h = 0,
      len = 0;
    for (let i = 0; i <= text.length; i++) {
      const c = i < text.length ? text.charCodeAt(i) : 32;
      if (c === 32) {
        if (len > 0) {
          units[m++] = fmix32(h ^ len);
          h = 0;
          len = 0;
        }
        continue;
      }
      let x = Math.imul(c, 0xcc9e2d51);
      x = (x << 15) | (x >>> 17);
      h ^= Math.imul(x, 0x1b873593);
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
      len++;
    }
  }
  if (m === 0) return scratchOut.subarray(0, 0);
  const seed = kind === 'char' ? 0x9747b28c : 0x3c6ef372;
  if (m <= k) {
    scratchOut[0] = combine(units, 0, m, seed);
    return scratchOut.subarray(0, 1);
  }
  const count = m - k + 1;
  for (let i = 0; i < count; i++) scratchOut[i] = combine(units, i, k, seed);
  return scratchOut.subarray(0, count);
}

export function shingleHashes(text: string, kind: ShingleKind, k: number): Uint32Array {
  return shingleHashesScratch(text, kind, k).slice();
}

/**
 * Signature storage: full 32-bit minima, or their low 16 bits (b-bit MinHash). Two different
 * minima agree in 16 bits with probability 2^-16, so the Jaccard estimate rises by at most
 * (1-J)/65536 — far below sampling error — for half the memory.
 */
export type Signatures = Uint32Array | Uint16Array;

export class MinHasher {
  readonly seeds: Int32Array;
  readonly mults: Int32Array;
  constructor(
    readonly numPerm: number,
    seed = 0,
  ) {
    if (!Number.isInteger(numPerm) || numPerm < 1) throw new Error(`numPerm must be a positive integer, got ${numPerm}`);
    this.seeds = new Int32Array(numPerm);
    this.mults = new Int32Array(numPerm);
    for (let k = 0; k < numPerm; k++) {
      this.seeds[k] = splitmix32((Math.imul(seed, 0x9e3779b1) + 2 * k) | 0);
      this.mults[k] = splitmix32((Math.imul(seed, 0x9e3779b1) + 2 * k + 1) | 0) | 1; // odd: a bijection
    }
  }

  /**
   * Writes the signature into out[offset .. offset+numPerm). Each slot is the minimum, in signed
   * 32-bit order (any fixed order of a permutation is as good as another), of
   * h_k(x) = xorshift15(M_k · (x XOR s_k)) over the shingle hashes x. Shingle hashes are already
   * fully mixed, so one multiply per permutation suffices; permutations run in the outer loop so
   * the running minimum stays in a register. Empty shingle sets give all 0x7fffffff.
   */
  signature(shingles: Uint32Array, out: Signatures, offset = 0): void {
    const n = this.numPerm,
      seeds = this.seeds,
      mults = this.mults,
      len = shingles.length;
    const sh = new Int32Array(shingles.buffer, shingles.byteOffset, len);
    let k = 0;
    // Four permutations per pass over the shingles: independent minima keep the CPU's pipelines full.
    for (; k + 4 <= n; k += 4) {
      const s0 = seeds[k],
        s1 = seeds[k + 1],
        s2 = seeds[k + 2],
        s3 = seeds[k + 3];
      const m0 = mults[k],
        m1 = mults[k + 1],
        m2 = mults[k + 2],
        m3 = mults[k + 3];
      let a = 0x7fffffff,
        b = 0x7fffffff,
        c = 0x7fffffff,
        d = 0x7fffffff;
      for (let i = 0; i < len; i++) {
        const x = sh[i];
        let h0 = Math.imul(x ^ s0, m0);
        h0 ^= h0 >>> 15;
        a = h0 < a ? h0 : a;
        let h1 = Math.imul(x ^ s1, m1);
        h1 ^= h1 >>> 15;
        b = h1 < b ? h1 : b;
        let h2 = Math.imul(x ^ s2, m2);
        h2 ^= h2 >>> 15;
        c = h2 < c ? h2 : c;
        let h3 = Math.imul(x ^ s3, m3);
        h3 ^= h3 >>> 15;
        d = h3 < d ? h3 : d;
      }
      out[offset + k] = a;
      out[offset + k + 1] = b;
      out[offset + k + 2] = c;
      out[offset + k + 3] = d;
    }
    for (; k < n; k++) {
      const s = seeds[k],
        m = mults[k];
      let min = 0x7fffffff;
      for (let i = 0; i < len; i++) {
        let h = Math.imul(sh[i] ^ s, m);
        h ^= h >>> 15;
        if (h < min) min = h;
      }
      out[offset + k] = min;
    }
  }
}

/** Fraction of equal signature slots: an unbiased estimate of Jaccard similarity. */
export function estimateJaccard(sig: Signatures, a: number, b: number, numPerm: number): number {
  let eq = 0;
  const oa = a * numPerm,
    ob = b * numPerm;
  for (let k = 0; k < numPerm; k++) if (sig[oa + k] === sig[ob + k]) eq++;
  return eq / numPerm;
}

/** Exact Jaccard of two shingle sets (tests and verification of the estimator). */
export function jaccard(a: Uint32Array, b: Uint32Array): number {
  const sa = new Set(a),
    sb = new Set(b);
  let inter = 0;
  for (const x of sa) if (sb.has(x)) inter++;
  const union = sa.size + sb.size - inter;
  return union === 0 ? 1 : inter / union;
}

/**
 * Bands × rows minimising the weighted false-positive and false-negative areas under the
 * S-curve 1-(1-s^r)^b around the threshold (midpoint-rule integration). Dedupe verifies every
 * candidate against the threshold, so a false positive costs only a comparison while a false
 * negative is a missed duplicate: its default weights favour recall.
 */
export function optimalBands(threshold: number, numPerm: number, fpWeight = 0.5, fnWeight = 0.5): { bands: number; rows: number } {
  const prob = (s: number, b: number, r: number) => 1 - (1 - s ** r) ** b;
  const integrate = (f: (s: number) => number, lo: number, hi: number) => {
    const steps = 200,
      dx = (hi - lo) / steps;
    let sum = 0;
    for (let i = 0; i < steps; i++) sum += f(lo + (i + 0.5) * dx) * dx;
    return sum;
  };
  let best = { bands: 1, rows: numPerm },
    bestErr = Infinity;
  for (let b = 1; b <= numPerm; b++) {
    for (let r = 1; b * r <= numPerm; r++) {
      const fp = integrate((s) => prob(s, b, r), 0, threshold);
      const fn = integrate((s) => 1 - prob(s, b, r), threshold, 1);
      const err = fpWeight * fp + fnWeight * fn;
      if (err < bestErr - 1e-12) {
        bestErr = err;
        best = { bands: b, rows: r };
      }
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
      if (++this.count * 2 > this.keys.length) {
        this.grow();
        i = this.slot(key);
      }
      this.keys[i] = key;
    }
    this.heads[i] = row;
  }

  private grow(): void {
    const oldKeys = this.keys,
      oldHeads = this.heads;
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

  constructor(
    readonly bands: number,
    readonly rows: number,
    readonly numPerm: number,
  ) {
    if (bands * rows > numPerm) throw new Error(`bands × rows (${bands}×${rows}) exceeds numPerm ${numPerm}`);
    this.tables = Array.from({ length: bands }, () => new BandTable());
  }

  bandKey(sig: Signatures, id: number, band: number): number {
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
  insert(sig: Signatures, id: number, visit: (other: number) => boolean): void {
    this.room(id);
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
  /**
   * Indexes `id` in every band, asking nothing of the ids already there: for an index that is only looked up later
   * (`find`, whose budget bounds what a long bucket costs).
   */
  add(sig: Signatures, id: number): void {
    this.room(id);
    for (let b = 0; b < this.bands; b++) {
      const key = this.bandKey(sig, id, b);
      const table = this.tables[b];
      this.next[id * this.bands + b] = table.get(key);
      table.set(key, id);
    }
  }

  /**
   * Looks for an indexed id sharing a bucket with the signature at `id` (not indexed itself) for which `match(other)`
   * holds, asking about each id once and about at most `budget` ids: 'found', 'none', or 'cut' when the budget ran out
   * first, which leaves the question open. The bands' buckets are walked in turn, one id from each, so one long bucket
   * of rows that share it without matching does not use up the budget before a short one with the match is asked.
   */
  find(sig: Signatures, id: number, match: (other: number) => boolean, budget: number): 'found' | 'none' | 'cut' {
    const asked = new Set<number>();
    const at = new Int32Array(this.bands);
    for (let b = 0; b < this.bands; b++) at[b] = this.tables[b].get(this.bandKey(sig, id, b));
    for (let open = true; open; ) {
      open = false;
      for (let b = 0; b < this.bands; b++) {
        const o = at[b];
        if (o === -1) continue;
        open = true;
        at[b] = this.next[o * this.bands + b];
        if (asked.has(o)) continue;
        if (asked.size >= budget) return 'cut';
        asked.add(o);
        if (match(o)) return 'found';
      }
    }
    return 'none';
  }

  private room(id: number): void {
    const need = (id + 1) * this.bands;
    if (need > this.next.length) {
      let cap = this.next.length * 2;
      while (cap < need) cap *= 2;
      const n = new Int32Array(cap);
      n.set(this.next);
      this.next = n;
    }
  }
}
