/**
 * split: train/validation/test (or k folds) from one table, seeded and deterministic.
 *
 * Rows are grouped (by `_cluster` from dedupe, or a user column) and a group is never divided, so
 * near duplicates cannot leak across splits. Groups are shuffled with the seed, ordered largest
 * first, and each goes to the split whose per-label shortfall it reduces most. Per-label targets
 * come from controlled rounding, so without groups every split's label counts are within one row
 * of the exact proportion (|count − n_label·rows_split/n| < 1). With groups the result is best
 * effort: deviations are bounded in practice by the largest group's size and are reported as
 * `maxStratifyDeviation`. Rows keep their input order inside each output file.
 */
import { join } from 'node:path';
import { DataType } from 'apache-arrow';
import { InputError } from '../errors.ts';
import { ArrowTableWriter, columnValues, readArrowBatches, readArrowSchema, takeRows } from './arrow-io.ts';
import type { SplitConfig } from './config.ts';
import { checkSplitConfig, SPLITS } from './split-config.ts';
import { Growable } from './growable.ts';
import type { SplitPart, SplitReport } from './report.ts';
import { Rng } from './rng.ts';

export interface SplitOptions {
  outDir: string;
  onProgress?: (p: { rows: number; fraction?: number }) => void;
}

type SplitName = (typeof SPLITS)[number];

/** Largest-remainder apportionment of `total` by `weights` (ties to the earlier index). */
export function apportion(total: number, weights: number[]): number[] {
  const sum = weights.reduce((a, b) => a + b, 0);
  if (sum === 0) return weights.map(() => 0);
  const exact = weights.map((w) => (total * w) / sum);
  const out = exact.map(Math.floor);
  let left = total - out.reduce((a, b) => a + b, 0);
  const order = exact.map((e, i) => ({ i, frac: e - Math.floor(e) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (let k = 0; left > 0; k++, left--) out[order[k % order.length].i]++;
  return out;
}

/**
 * Per-split, per-label targets whose row sums are the label totals and column sums the split
 * sizes, each cell the floor or ceiling of its exact share (controlled rounding, greedy by
 * largest remaining split demand, which is feasible by the Gale–Ryser condition).
 */
export function labelTargets(labelTotals: number[], sizes: number[]): number[][] {
  const n = labelTotals.reduce((a, b) => a + b, 0);
  const t = sizes.map(() => labelTotals.map(() => 0));
  const need = [...sizes];
  const extras: { l: number; r: number; fracs: number[] }[] = [];
  labelTotals.forEach((c, l) => {
    let floors = 0;
    const fracs = sizes.map((s, si) => {
      const exact = n === 0 ? 0 : (c * s) / n;
      t[si][l] = Math.floor(exact + 1e-9);
      floors += t[si][l];
      need[si] -= t[si][l];
      return exact - t[si][l];
    });
    extras.push({ l, r: c - floors, fracs });
  });
  // Labels with the most extras first, as Gale–Ryser's greedy construction wants.
  extras.sort((a, b) => b.r - a.r || a.l - b.l);
  for (const { l, r, fracs } of extras) {
    const order = sizes
      .map((_, si) => si)
      .sort((a, b) => need[b] - need[a] || (fracs[b] > 1e-9 ? 1 : 0) - (fracs[a] > 1e-9 ? 1 : 0) || a - b);
    for (let k = 0; k < r; k++) {
      t[order[k]][l]++;
      need[order[k]]--;
    }
  }
  return t;
}

interface Resolved {
  seed: number;
  stratify: string | null;
  groupBy: string | null;
  kfold: number | null;
}

/** Rows per split for n rows. */
function splitSizes(cfg: SplitConfig, n: number): Record<SplitName, number> {
  const [broken] = checkSplitConfig(cfg);
  if (broken) throw broken;
  if (cfg.kfold !== undefined) {
    const o = (cfg.counts ?? cfg.ratios ?? {}) as Record<string, number | undefined>;
    const test = cfg.counts ? (o.test ?? 0) : Math.round((o.test ?? 0) * n);
    if (test > n) throw new InputError(`counts.test ${test} exceeds the ${n} rows`, { where: 'counts.test' });
    return { train: n - test, validation: 0, test };
  }
  if (cfg.counts) {
    const c = cfg.counts;
    const fixed = (c.validation ?? 0) + (c.test ?? 0);
    const train = c.train ?? n - fixed;
    if (train < 0 || fixed + train > n)
      throw new InputError(`counts add up to ${fixed + Math.max(train, 0)} but the table has ${n} rows`, { where: 'counts' });
    if (fixed + train < n)
      throw new InputError(`counts add up to ${fixed + train} of ${n} rows; every row must go somewhere`, {
        where: 'counts',
        hint: 'omit counts.train to give it the remainder',
      });
    return { train, validation: c.validation ?? 0, test: c.test ?? 0 };
  }
  const r = cfg.ratios ?? { train: 0.8, validation: 0.1, test: 0.1 };
  const w = SPLITS.map((s) => r[s] ?? 0);
  const [train, validation, test] = apportion(n, w);
  return { train, validation, test };
}

/**
 * Label composition of groups, compact for the common case: most groups hold one label, so a
 * group keeps a single label id and only mixed groups get a map (label → rows).
 */
export interface GroupLabels {
  size: Int32Array;
  /** Label id of a single-label group; -1 for mixed groups (see `mixed`). */
  label: Int32Array;
  mixed: Map<number, Map<number, number>>;
}

function forEachLabel(groups: GroupLabels, g: number, fn: (label: number, count: number) => void): void {
  const l = groups.label[g];
  if (l >= 0) fn(l, groups.size[g]);
  else for (const [label, count] of groups.mixed.get(g)!) fn(label, count);
}

/** Assigns each group (by index into `groups`) to one of `sizes.length` bins; returns the bin per group. */
function assignGroups(groups: GroupLabels, labelTotals: number[], sizes: number[], rng: Rng): Int8Array {
  const targets = labelTargets(labelTotals, sizes);
  const assignedRows = sizes.map(() => 0);
  const assignedLabels = sizes.map(() => labelTotals.map(() => 0));
  const G = groups.size.length;
  const order = new Uint32Array(G);
  for (let g = 0; g < G; g++) order[g] = g;
  rng.shuffle(order);
  // Largest groups first leave the singletons to even things out at the end. A stable counting
  // sort by size keeps the shuffled order among equal sizes.
  let maxSize = 0;
  for (let g = 0; g < G; g++) maxSize = Math.max(maxSize, groups.size[g]);
  const starts = new Int32Array(maxSize + 2);
  for (let g = 0; g < G; g++) starts[maxSize - groups.size[g] + 1]++;
  for (let i = 1; i < starts.length; i++) starts[i] += starts[i - 1];
  const sorted = new Uint32Array(G);
  for (const g of order) sorted[starts[maxSize - groups.size[g]]++] = g;

  const bin = new Int8Array(G).fill(-1);
  for (const g of sorted) {
    let best = -1,
      bestKey = -Infinity;
    const size = groups.size[g];
    for (let s = 0; s < sizes.length; s++) {
      if (sizes[s] === 0) continue;
      let score = 0;
      forEachLabel(groups, g, (l, c) => {
        score += Math.min(c, targets[s][l] - assignedLabels[s][l]);
      });
      const room = sizes[s] - assignedRows[s];
      // Prefer a split with room for the whole group, then the largest label shortfall, then the most room.
      const key = (room >= size ? 1 : 0) * 1e12 + score * 1e6 + room;
      if (key > bestKey) {
        best = s;
        bestKey = key;
      }
    }
    bin[g] = best;
    assignedRows[best] += size;
    forEachLabel(groups, g, (l, c) => {
      assignedLabels[best][l] += c;
    });
  }
  return bin;
}

function resolve(cfg: SplitConfig, names: Map<string, DataType>): Resolved {
  const seed = cfg.seed ?? 0;
  if (!Number.isInteger(seed)) throw new InputError(`seed must be an integer, got ${seed}`, { where: 'seed' });
  const stratify: string | null = cfg.stratify === false ? null : (cfg.stratify ?? (names.has('label') ? 'label' : null));
  if (stratify !== null && !names.has(stratify))
    throw new InputError(`stratify column ${JSON.stringify(stratify)} is not in the table`, { where: 'stratify' });
  const groupBy: string | null = cfg.groupBy === false ? null : (cfg.groupBy ?? (names.has('_cluster') ? '_cluster' : null));
  if (groupBy !== null && !names.has(groupBy))
    throw new InputError(`groupBy column ${JSON.stringify(groupBy)} is not in the table`, { where: 'groupBy' });
  if (cfg.kfold !== undefined && (!Number.isInteger(cfg.kfold) || cfg.kfold < 2 || cfg.kfold > 100)) {
    throw new InputError(`kfold must be an integer in [2, 100], got ${cfg.kfold}`, { where: 'kfold' });
  }
  return { seed, stratify, groupBy, kfold: cfg.kfold ?? null };
}

export async function split(
  inPath: string,
  cfg: SplitConfig,
  opts: SplitOptions,
): Promise<SplitReport & { files: Record<string, string> }> {
  const schema = await readArrowSchema(inPath);
  const types = new Map(schema.fields.map((f) => [f.name, f.type]));
  const r = resolve(cfg, types);

  // ---- pass 1: label and group id per row ----
  const labelOf = new Growable<Int32Array>(Int32Array);
  const groupOf = new Growable<Int32Array>(Int32Array);
  const labelIds = new Map<string, number>();
  const groupIds = new Map<unknown, number>();
  const labelNames: string[] = [];
  let n = 0;
  for await (const batch of readArrowBatches(inPath)) {
    const labels = r.stratify ? columnValues(batch, r.stratify) : null;
    const groups = r.groupBy ? columnValues(batch, r.groupBy) : null;
    for (let i = 0; i < batch.numRows; i++, n++) {
      if (labels) {
        const key = String(labels[i]);
        let id = labelIds.get(key);
        if (id === undefined) {
          id = labelNames.length;
          labelIds.set(key, id);
          labelNames.push(key);
        }
        labelOf.push(id);
      } else labelOf.push(0);
      if (groups) {
        const key = groups[i];
        let id = groupIds.get(key);
        if (id === undefined) {
          id = groupIds.size;
          groupIds.set(key, id);
        }
        groupOf.push(id);
      } else groupOf.push(n);
    }
  }
  if (n === 0) throw new InputError(`${inPath} has no rows to split`, { where: 'input' });
  if (!r.stratify) labelNames.push('');
  const G = r.groupBy ? groupIds.size : n;
  groupIds.clear();
  const sizes = splitSizes(cfg, n);

  const groups: GroupLabels = { size: new Int32Array(G), label: new Int32Array(G).fill(-2), mixed: new Map() };
  const labelTotals = labelNames.map(() => 0);
  for (let i = 0; i < n; i++) {
    const g = groupOf.data[i],
      l = labelOf.data[i];
    labelTotals[l]++;
    const cur = groups.label[g];
    if (cur === -2) groups.label[g] = l;
    else if (cur !== l) {
      let m = groups.mixed.get(g);
      if (!m) {
        m = new Map([[cur, groups.size[g]]]);
        groups.mixed.set(g, m);
        groups.label[g] = -1;
      }
      m.set(l, (m.get(l) ?? 0) + 1);
    }
    groups.size[g]++;
  }

  const rng = new Rng(r.seed);
  const mainBin = assignGroups(
    groups,
    labelTotals,
    SPLITS.map((s) => sizes[s]),
    rng,
  );
  /** Output name per (row bucket): main splits, or fold files. */
  const names: string[] = [];
  let foldOf: Int8Array | null = null;
  if (r.kfold) {
    // Folds over the non-test groups: equal sizes, stratified by the same greedy.
    const pool: number[] = [];
    for (let g = 0; g < G; g++) if (mainBin[g] === 0) pool.push(g);
    const poolGroups: GroupLabels = { size: new Int32Array(pool.length), label: new Int32Array(pool.length), mixed: new Map() };
    const poolTotals = labelNames.map(() => 0);
    pool.forEach((g, i) => {
      poolGroups.size[i] = groups.size[g];
      poolGroups.label[i] = groups.label[g];
      const m = groups.mixed.get(g);
      if (m) poolGroups.mixed.set(i, m);
      forEachLabel(groups, g, (l, c) => {
        poolTotals[l] += c;
      });
    });
    const total = poolTotals.reduce((a, b) => a + b, 0);
    if (pool.length < r.kfold)
      throw new InputError(`kfold ${r.kfold} needs at least ${r.kfold} groups outside test, found ${pool.length}`, { where: 'kfold' });
    const foldBins = assignGroups(poolGroups, poolTotals, apportion(total, Array(r.kfold).fill(1)), rng);
    foldOf = new Int8Array(G).fill(-1);
    pool.forEach((g, i) => {
      foldOf![g] = foldBins[i];
    });
    for (let f = 0; f < r.kfold; f++) names.push(`fold-${f}-train`, `fold-${f}-validation`);
    names.push('test');
  } else names.push(...SPLITS);
  // Every split gets a file, empty ones included, so the stage's outputs do not depend on the data.

  /** Output indices of a row's group. */
  const targetsOf = (g: number): number[] => {
    if (!foldOf) return [names.indexOf(SPLITS[mainBin[g]])];
    if (mainBin[g] === 2) return [names.indexOf('test')];
    const out: number[] = [];
    for (let f = 0; f < r.kfold!; f++) out.push(names.indexOf(foldOf[g] === f ? `fold-${f}-validation` : `fold-${f}-train`));
    return out;
  };

  // ---- pass 2: write ----
  const files: Record<string, string> = {};
  const writers = names.map((name) => {
    files[name] = join(opts.outDir, `${name}.arrow`);
    return null as ArrowTableWriter | null;
  });
  /** The file each row was written to (for folds: its validation file), for the leakage check. */
  const rowPart = new Int8Array(n).fill(-1);
  const parts: Record<string, SplitPart> = Object.fromEntries(names.map((nm) => [nm, { rows: 0, labels: {} }]));
  const partLabels = names.map(() => labelNames.map(() => 0));
  try {
    names.forEach((name, k) => {
      writers[k] = new ArrowTableWriter(files[name], schema);
    });
    let base = 0;
    for await (const batch of readArrowBatches(inPath)) {
      const picks: number[][] = names.map(() => []);
      for (let i = 0; i < batch.numRows; i++) {
        const row = base + i;
        for (const k of targetsOf(groupOf.data[row])) {
          picks[k].push(i);
          partLabels[k][labelOf.data[row]]++;
          if (!names[k].endsWith('-train')) rowPart[row] = k;
        }
      }
      picks.forEach((idx, k) => {
        if (idx.length > 0) writers[k]!.writeRecordBatch(takeRows(batch, idx, writers[k]!.schema));
      });
      base += batch.numRows;
      opts.onProgress?.({ rows: base, fraction: base / n });
    }
    for (const w of writers) w!.close();
  } catch (e) {
    for (const w of writers) w?.abort();
    throw e;
  }

  // ---- report: counts, leakage and stratification, recomputed from what was written ----
  let maxDev = 0;
  names.forEach((name, k) => {
    const rows = partLabels[k].reduce((a, b) => a + b, 0);
    parts[name].rows = rows;
    if (r.stratify)
      labelNames.forEach((l, li) => {
        parts[name].labels[l] = partLabels[k][li];
      });
  });
  const devAgainst = (k: number, totals: number[], total: number) => {
    const rows = parts[names[k]].rows;
    totals.forEach((c, l) => {
      maxDev = Math.max(maxDev, Math.abs(partLabels[k][l] - (c * rows) / total));
    });
  };
  if (r.stratify) {
    if (!foldOf) names.forEach((_, k) => devAgainst(k, labelTotals, n));
    else {
      const poolTotals = labelNames.map(
        (_, l) => partLabels[names.indexOf('fold-0-train')][l] + partLabels[names.indexOf('fold-0-validation')][l],
      );
      const poolN = poolTotals.reduce((a, b) => a + b, 0);
      names.forEach((nm, k) => {
        if (nm.endsWith('-validation')) devAgainst(k, poolTotals, poolN);
      });
    }
  }
  // Leakage, from what was written: groups whose rows went to more than one split (or, with
  // folds, to more than one validation fold, i.e. train and validation of the same fold).
  const seen = new Int32Array(G).fill(-1);
  let leakage = 0;
  const leaked = new Uint8Array(G);
  for (let i = 0; i < n; i++) {
    const g = groupOf.data[i],
      p = rowPart[i];
    if (seen[g] === -1) seen[g] = p;
    else if (seen[g] !== p && !leaked[g]) {
      leaked[g] = 1;
      leakage++;
    }
  }

  // A class a split holds no row of: a test split without it measures nothing about it, a train split cannot teach it.
  // Stratification gives each class its share, but a class with fewer rows than splits (or whole groups) still misses one.
  const warnings: string[] = [];
  if (r.stratify)
    for (const name of names) {
      if (parts[name].rows === 0) continue;
      const missing = labelNames.filter((l, li) => labelTotals[li] > 0 && partLabels[names.indexOf(name)][li] === 0);
      if (missing.length === 0) continue;
      const listed = missing
        .slice(0, 10)
        .map((l) => `${JSON.stringify(l)} (${labelTotals[labelNames.indexOf(l)]} of ${n} rows)`)
        .join(', ');
      const more = missing.length > 10 ? ` and ${missing.length - 10} more` : '';
      const effect = name.endsWith('train') ? 'the model cannot learn it' : 'its metrics there say nothing about it';
      warnings.push(
        `${name} has no row of ${r.stratify} ${listed}${more}: ${effect}; more data of it, or larger ${name.endsWith('train') ? 'train' : name.replace(/^fold-\d+-/, '')} ratios or counts, would give it some`,
      );
    }

  return {
    kind: 'split',
    rowsIn: n,
    seed: r.seed,
    splits: parts,
    leakage,
    groupBy: r.groupBy,
    stratify: r.stratify,
    maxStratifyDeviation: Math.round(maxDev * 1000) / 1000,
    ...(warnings.length > 0 ? { warnings } : {}),
    files,
  };
}
