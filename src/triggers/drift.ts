/** Distances between label distributions, for drift triggers. */

function normalise(counts: Record<string, number>, keys: string[]): number[] {
  // Own properties only: a label named `constructor` must not read Object's constructor.
  const count = (k: string) => (Object.hasOwn(counts, k) ? counts[k]! : 0);
  const total = keys.reduce((n, k) => n + count(k), 0);
  return keys.map((k) => (total > 0 ? count(k) / total : 0));
}

/**
 * Jensen–Shannon distance (square root of the divergence, base 2): 0 for equal distributions, 1 for
 * disjoint ones; symmetric and finite even when a label is missing on one side.
 */
export function jensenShannon(a: Record<string, number>, b: Record<string, number>): number {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  const p = normalise(a, keys);
  const q = normalise(b, keys);
  let div = 0;
  for (let i = 0; i < keys.length; i++) {
    const m = (p[i]! + q[i]!) / 2;
    if (p[i]! > 0) div += 0.5 * p[i]! * Math.log2(p[i]! / m);
    if (q[i]! > 0) div += 0.5 * q[i]! * Math.log2(q[i]! / m);
  }
  return Math.sqrt(Math.max(0, div));
}
