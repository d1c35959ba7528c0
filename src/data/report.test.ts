import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatDataReport, lengthStats, type DataReport } from './report.ts';

test('lengthStats uses nearest-rank percentiles over the histogram', () => {
  const h = new Map<number, number>();
  for (let len = 1; len <= 100; len++) h.set(len, 1);
  assert.deepEqual(lengthStats(h), { p50: 50, p90: 90, p99: 99, max: 100 });
  assert.deepEqual(lengthStats(new Map([[7, 3]])), { p50: 7, p90: 7, p99: 7, max: 7 });
  assert.deepEqual(lengthStats(new Map()), { p50: 0, p90: 0, p99: 0, max: 0 });
});

test('reports survive JSON and render as readable tables', () => {
  const reports: DataReport[] = [
    {
      kind: 'ingest',
      task: 'classification',
      rowsIn: 10,
      rowsOut: 8,
      linesIn: 14,
      badLines: 5,
      badRows: { 'empty-text': 2 },
      labels: { ham: 5, spam: 3 },
      sourceFiles: [{ path: 'a.jsonl', sha256: 'ab'.repeat(32), bytes: 99 }],
      dataHash: 'cd'.repeat(32),
      textLength: { p50: 4, p90: 9, p99: 9, max: 9 },
      schema: { text: 'Utf8' },
    },
    {
      kind: 'dedupe',
      rowsIn: 8,
      rowsOut: 6,
      exactRemoved: 1,
      nearRemoved: 1,
      conflictsRemoved: 0,
      clusters: 2,
      largestCluster: 2,
      conflicts: [{ cluster: 3, reason: 'near', labels: { ham: 1, spam: 1 }, kept: 'ham' }],
      conflictCount: 1,
      nearCandidates: 4,
      nearVerified: 1,
      templateShingles: 17,
    },
    {
      kind: 'split',
      rowsIn: 6,
      seed: 1,
      splits: {
        train: { rows: 4, labels: { ham: 3, spam: 1 } },
        validation: { rows: 1, labels: { ham: 1 } },
        test: { rows: 1, labels: { spam: 1 } },
      },
      leakage: 0,
      groupBy: '_cluster',
      stratify: 'label',
      maxStratifyDeviation: 0.5,
    },
  ];
  for (const r of reports) assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
  const [ing, dd, sp] = reports.map(formatDataReport);
  assert.match(ing, /10 rows in, 8 kept, 2 quarantined/);
  assert.match(ing, /bad: empty-text\s+2\s+20\.0%/);
  assert.match(ing, /labels: ham 5, spam 3/);
  assert.match(ing, /physical lines: 14 in, 5 in bad rows \(35\.7%\)/);
  assert.match(dd, /exact duplicates removed\s+1\s+12\.5%/);
  assert.match(dd, /cluster 3 \(near\): ham 1, spam 1 → ham/);
  assert.match(dd, /compared without the prompt template's own text \(17 shingles\)/);
  assert.match(sp, /^train\s+4\s+66\.7%\s+3\s+1$/m);
  assert.match(sp, /^validation\s+1\s+16\.7%\s+1\s+0$/m);
  assert.match(sp, /leakage: 0 group\(s\) across splits \(ok\)/);
});

test('a report of more than 30 labels lists the 30 most common, in the ingest line and the split table, with the rest summed', () => {
  const labels = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`l${String(i).padStart(2, '0')}`, i < 5 ? 10 : 1]));
  const ingest: DataReport = {
    kind: 'ingest',
    task: 'classification',
    rowsIn: 85,
    rowsOut: 85,
    linesIn: 85,
    badLines: 0,
    badRows: {},
    labels,
    sourceFiles: [],
    dataHash: 'cd'.repeat(32),
    textLength: { p50: 4, p90: 9, p99: 9, max: 9 },
    schema: { text: 'Utf8' },
  };
  const line = formatDataReport(ingest)
    .split('\n')
    .find((l) => l.startsWith('labels: '))!;
  assert.match(line, /^labels: l00 10, l01 10, l02 10, l03 10, l04 10, l05 1, .*, l29 1, and 10 more labels \(10 rows\)$/);
  const split: DataReport = {
    kind: 'split',
    rowsIn: 85,
    seed: 1,
    splits: { train: { rows: 85, labels }, test: { rows: 0, labels: {} } },
    leakage: 0,
    groupBy: '_cluster',
    stratify: 'label',
    maxStratifyDeviation: 0,
  };
  const [header, train] = formatDataReport(split).split('\n').slice(1, 3);
  assert.match(header, /^split\s+rows\s+share\s+l00\s.*\sl29\s+10 more labels$/);
  assert.match(train, /^train\s+85\s+100\.0%\s+10\s.*\s1\s+10$/);
  assert.equal(header.trim().split(/\s+/).length, 3 + 30 + 3);
});
