import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { ArrowTableWriter, columnValues, readArrowBatches } from './arrow-io.ts';
import { Rng } from './rng.ts';
import { apportion, labelTargets, split } from './split.ts';
import { formatDataReport } from './report.ts';

async function column(path: string, name: string): Promise<unknown[]> {
  const out: unknown[] = [];
  for await (const b of readArrowBatches(path)) out.push(...columnValues(b, name));
  return out;
}

/** n rows, imbalanced labels a/b/c (70/20/10%), groups of 1–8 rows with mostly one label. */
function makeTable(n: number, seed: number, withGroups: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'split-'));
  const path = join(dir, 'in.arrow');
  const rng = new Rng(seed);
  const w = new ArrowTableWriter(path, withGroups ? { text: 'utf8', label: 'utf8', grp: 'utf8' } : { text: 'utf8', label: 'utf8' }, 100);
  let g = 0,
    left = 0,
    groupLabel = 'a';
  for (let i = 0; i < n; i++) {
    if (left === 0) {
      g++;
      left = 1 + rng.int(8);
      const x = rng.next();
      groupLabel = x < 0.7 ? 'a' : x < 0.9 ? 'b' : 'c';
    }
    left--;
    const x = rng.next();
    const label = withGroups ? (rng.next() < 0.9 ? groupLabel : 'a') : x < 0.7 ? 'a' : x < 0.9 ? 'b' : 'c';
    w.push(withGroups ? { text: `row ${i}`, label, grp: `g${g}` } : { text: `row ${i}`, label });
  }
  w.close();
  return path;
}

test('apportion and controlled rounding keep every margin exact', () => {
  assert.deepEqual(apportion(10, [0.8, 0.1, 0.1]), [8, 1, 1]);
  assert.deepEqual(apportion(7, [1, 1, 1]), [3, 2, 2]);
  const rng = new Rng(1);
  for (let t = 0; t < 200; t++) {
    const labels = Array.from({ length: 1 + rng.int(5) }, () => rng.int(50));
    const n = labels.reduce((a, b) => a + b, 0);
    const sizes = apportion(n, [rng.next(), rng.next(), rng.next()]);
    const tg = labelTargets(labels, sizes);
    tg.forEach((row, s) =>
      assert.equal(
        row.reduce((a, b) => a + b, 0),
        sizes[s],
      ),
    );
    labels.forEach((c, l) => {
      assert.equal(
        tg.reduce((a, row) => a + row[l], 0),
        c,
      );
      tg.forEach((row, s) => assert.ok(Math.abs(row[l] - (c * sizes[s]) / n) < 1 + 1e-9, `cell ${s},${l}`));
    });
  }
});

test('stratified split: sizes exact and every label within one row of its share, over seeds', async () => {
  const path = makeTable(1003, 4, false);
  const labels = (await column(path, 'label')) as string[];
  const totals: Record<string, number> = {};
  for (const l of labels) totals[l] = (totals[l] ?? 0) + 1;
  for (const seed of [0, 1, 2, 3, 4]) {
    const outDir = mkdtempSync(join(tmpdir(), 'split-out-'));
    const r = await split(path, { seed, ratios: { train: 0.7, validation: 0.15, test: 0.15 } }, { outDir });
    assert.deepEqual(Object.keys(r.files), ['train', 'validation', 'test']);
    const sizes = { train: 702, validation: 151, test: 150 };
    for (const [name, file] of Object.entries(r.files)) {
      const got = (await column(file, 'label')) as string[];
      assert.equal(got.length, sizes[name as keyof typeof sizes], name);
      for (const [l, c] of Object.entries(totals)) {
        const n = got.filter((x) => x === l).length;
        assert.ok(Math.abs(n - (c * got.length) / 1003) < 1, `seed ${seed} ${name} label ${l}: ${n} vs ${(c * got.length) / 1003}`);
        assert.equal(r.splits[name].labels[l], n);
      }
    }
    assert.ok(r.maxStratifyDeviation < 1);
    assert.equal(r.leakage, 0);
  }
});

test('group-aware: no group straddles splits across seeds; all rows accounted for', async () => {
  const path = makeTable(2000, 8, true);
  for (const seed of [0, 1, 2, 3, 4, 5]) {
    const outDir = mkdtempSync(join(tmpdir(), 'split-out-'));
    const r = await split(path, { seed, groupBy: 'grp' }, { outDir });
    assert.equal(r.leakage, 0);
    const where = new Map<string, string>();
    let total = 0;
    for (const [name, file] of Object.entries(r.files)) {
      const groups = (await column(file, 'grp')) as string[];
      total += groups.length;
      for (const g of groups) {
        const prev = where.get(g);
        assert.ok(prev === undefined || prev === name, `seed ${seed}: group ${g} in ${prev} and ${name}`);
        where.set(g, name);
      }
    }
    assert.equal(total, 2000);
    // Best effort sizes: within the largest group (8 rows) of the target.
    assert.ok(Math.abs(r.splits.train.rows - 1600) <= 8, `train ${r.splits.train.rows}`);
    // Documented bound: label deviation within the largest group size.
    assert.ok(r.maxStratifyDeviation <= 8, `deviation ${r.maxStratifyDeviation}`);
  }
});

test('same seed gives byte-identical files; another seed a different split', async () => {
  const path = makeTable(500, 2, true);
  const runs = [];
  for (const seed of [7, 7, 8]) {
    const outDir = mkdtempSync(join(tmpdir(), 'split-out-'));
    runs.push(await split(path, { seed, groupBy: 'grp' }, { outDir }));
  }
  for (const s of ['train', 'validation', 'test']) assert.ok(readFileSync(runs[0].files[s]).equals(readFileSync(runs[1].files[s])), s);
  assert.ok(!readFileSync(runs[0].files.test).equals(readFileSync(runs[2].files.test)));
});

test('counts, zero-sized splits and kfold', async () => {
  const path = makeTable(300, 3, true);
  const outDir = mkdtempSync(join(tmpdir(), 'split-out-'));
  const c = await split(path, { counts: { validation: 30, test: 0 }, groupBy: false }, { outDir });
  assert.deepEqual([c.splits.train.rows, c.splits.validation.rows, c.splits.test.rows], [270, 30, 0]);
  assert.deepEqual(await column(c.files.test, 'text'), []);

  const kDir = mkdtempSync(join(tmpdir(), 'split-k-'));
  const k = await split(path, { kfold: 3, ratios: { test: 0.1 }, groupBy: 'grp', seed: 1 }, { outDir: kDir });
  assert.deepEqual(Object.keys(k.files), [
    'fold-0-train',
    'fold-0-validation',
    'fold-1-train',
    'fold-1-validation',
    'fold-2-train',
    'fold-2-validation',
    'test',
  ]);
  assert.equal(k.leakage, 0);
  const test = new Set(await column(k.files.test, 'text'));
  const inValidation = new Map<unknown, number>();
  for (let f = 0; f < 3; f++) {
    const tr = new Set(await column(k.files[`fold-${f}-train`], 'text'));
    const va = await column(k.files[`fold-${f}-validation`], 'text');
    const trGroups = new Set(await column(k.files[`fold-${f}-train`], 'grp'));
    for (const g of await column(k.files[`fold-${f}-validation`], 'grp'))
      assert.ok(!trGroups.has(g), `fold ${f}: group ${g} in train and validation`);
    assert.equal(tr.size + va.length + test.size, 300);
    for (const t of va) {
      assert.ok(!tr.has(t) && !test.has(t));
      inValidation.set(t, (inValidation.get(t) ?? 0) + 1);
    }
  }
  assert.equal(inValidation.size + test.size, 300);
  assert.ok(
    [...inValidation.values()].every((v) => v === 1),
    'each non-test row is validated exactly once',
  );
});

test('bad config names the field and leaves no files', async () => {
  const path = makeTable(50, 1, false);
  const outDir = mkdtempSync(join(tmpdir(), 'split-out-'));
  const bad: [object, string][] = [
    [{ ratios: { train: 0.5, validation: 0.1 } }, 'ratios'],
    [{ ratios: { train: 0.9, dev: 0.1 } }, 'ratios.dev'],
    [{ counts: { train: 40, validation: 20 } }, 'counts'],
    [{ counts: { validation: 1.5 } }, 'counts.validation'],
    [{ stratify: 'nope' }, 'stratify'],
    [{ groupBy: 'nope' }, 'groupBy'],
    [{ kfold: 1 }, 'kfold'],
    [{ kfold: 3, ratios: { train: 0.9, test: 0.1 } }, 'ratios'],
    [{ seed: 1.5 }, 'seed'],
  ];
  for (const [cfg, where] of bad) {
    await assert.rejects(split(path, cfg, { outDir }), (e: unknown) => e instanceof InputError && e.where === where, JSON.stringify(cfg));
  }
  assert.deepEqual(readdirSync(outDir), []);
});

test('a class a split holds no row of is a warning in the report, naming the split, the class and its rows', async () => {
  // 100 "ham" and 2 "spam": stratified 80/10/10, the two spam rows cannot reach all three splits.
  const dir = mkdtempSync(join(tmpdir(), 'split-'));
  const path = join(dir, 'in.arrow');
  const w = new ArrowTableWriter(path, { text: 'utf8', label: 'utf8' });
  for (let i = 0; i < 102; i++) w.push({ text: `row ${i}`, label: i < 100 ? 'ham' : 'spam' });
  w.close();
  const r = await split(path, { seed: 1 }, { outDir: join(dir, 'out') });
  const empty = ['train', 'validation', 'test'].filter((s) => r.splits[s].labels.spam === 0);
  assert.equal(empty.length, 1, JSON.stringify(r.splits));
  assert.deepEqual(r.warnings, [
    `${empty[0]} has no row of label "spam" (2 of 102 rows): its metrics there say nothing about it; more data of it, or larger ${empty[0]} ratios or counts, would give it some`,
  ]);
  assert.match(formatDataReport(r), new RegExp(`\nwarning: ${empty[0]} has no row of label "spam"`));
  // Every class in every split: no warning.
  const full = await split(makeTable(500, 3, false), { seed: 1 }, { outDir: join(dir, 'out2') });
  assert.equal(full.warnings, undefined);
});
