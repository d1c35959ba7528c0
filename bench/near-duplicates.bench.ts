/**
 * Opt-in benchmark (not part of npm test): the near-duplicate contamination check (src/eval/contamination.ts) where
 * training rows share LSH buckets without matching, the case its comparison budget (NEAR_COMPARISONS) is for.
 *
 *   node --import tsx bench/near-duplicates.bench.ts [rows=20000,100000] [probes=2000]
 *
 * Training rows are 30 words in common and 10 of their own; each probe is a training row with one of its own words
 * changed (Jaccard 35/41 ≈ 0.85, a near duplicate). The reference beside the check's count is what MinHash itself
 * can find: the probes whose estimated similarity to their own training row reaches the threshold, computed directly
 * with the same hash functions. Prints found / findable, the checks cut at the budget, and the time per training row
 * indexed and per probe looked up.
 */
import { resolveNear } from '../src/data/dedupe-config.ts';
import { estimateJaccard, MinHasher, shingleHashes } from '../src/data/minhash.ts';
import { NEAR_COMPARISONS, SeenInputs } from '../src/eval/contamination.ts';

const sizes = (process.argv[2] ?? '20000,100000').split(',').map(Number);
const probes = Number(process.argv[3] ?? 2000);
const near = resolveNear(undefined)!;
const hasher = new MinHasher(near.numPerm, near.seed);
const pair = new Uint16Array(2 * near.numPerm);
/** Estimated Jaccard of two texts as the check estimates it (16-bit signatures of word shingles). */
function estimate(a: string, b: string): number {
  hasher.signature(shingleHashes(a, near.shingle, near.size), pair, 0);
  hasher.signature(shingleHashes(b, near.shingle, near.size), pair, near.numPerm);
  return estimateJaccard(pair, 0, 1, near.numPerm);
}

const common = Array.from({ length: 30 }, (_, j) => `common${j}`).join(' ');
console.log(
  `budget ${NEAR_COMPARISONS} comparisons a probe; threshold ${near.threshold}, ${near.numPerm} permutations, ${near.size}-word shingles`,
);
for (const n of sizes) {
  let x = 12345;
  const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0);
  const rows: string[] = [];
  const seen = new SeenInputs();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    rows.push(`${common} ${Array.from({ length: 10 }, () => `w${next() % 50_000}`).join(' ')}`);
    seen.add([rows[i]!]);
  }
  const indexMs = performance.now() - t0;
  const probeTexts = Array.from({ length: probes }, (_, p) => {
    const words = rows[(p * 7919) % n]!.split(' ');
    words[30 + (p % 10)] = `changed${p}`;
    return words.join(' ');
  });
  const t1 = performance.now();
  const found = probeTexts.filter((t) => seen.seenAs([t]) === 'near').length;
  const lookupMs = performance.now() - t1;
  const findable = probeTexts.filter((t, p) => estimate(t, rows[(p * 7919) % n]!) >= near.threshold).length;
  console.log(
    `${n} training rows: found ${found} of ${findable} findable (${((100 * found) / findable).toFixed(1)} %), ${seen.nearChecksCut} checks cut; ` +
      `${((1000 * indexMs) / n).toFixed(1)} µs a training row indexed, ${(lookupMs / probes).toFixed(3)} ms a probe`,
  );
}
