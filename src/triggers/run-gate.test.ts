import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decideGate, productionReading, RunIndex, runIndexFileName, type DataFingerprint, type RunRecord } from './run-gate.ts';

const data = (hash: string, labels: Record<string, number> = { ham: 80, spam: 20 }, stageId = 'ingest'): DataFingerprint => ({
  stageId,
  dataHash: hash,
  labels,
});
const lastRun = (specHash: string, d: DataFingerprint[]): RunRecord => ({
  runId: 'run-1',
  specHash,
  data: d,
  time: '2026-01-01T00:00:00.000Z',
});

describe('decideGate: skipIfUnchanged', () => {
  const gate = { skipIfUnchanged: true };

  it('lets the first run through', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d1')] }, undefined);
    assert.deepEqual([d.proceed, d.outcome], [true, 'first-run']);
  });

  it('skips when spec and data match the last success, naming that run', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d1')] }, lastRun('s1', [data('d1')]));
    assert.deepEqual([d.proceed, d.outcome], [false, 'unchanged']);
    assert.match(d.reason, /run-1/);
  });

  it('goes on when the source data changed', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d2')] }, lastRun('s1', [data('d1')]));
    assert.deepEqual([d.proceed, d.outcome], [true, 'changed']);
    assert.match(d.reason, /data/);
  });

  it('goes on when only the spec changed', () => {
    const d = decideGate(gate, { specHash: 's2', data: [data('d1')] }, lastRun('s1', [data('d1')]));
    assert.deepEqual([d.proceed, d.outcome], [true, 'changed']);
    assert.match(d.reason, /spec/);
  });

  it('compares every ingest stage, not just the first', () => {
    const before = [data('a1', {}, 'ingest_a'), data('b1', {}, 'ingest_b')];
    const after = [data('a1', {}, 'ingest_a'), data('b2', {}, 'ingest_b')];
    assert.equal(decideGate(gate, { specHash: 's', data: after }, lastRun('s', before)).outcome, 'changed');
    assert.equal(decideGate(gate, { specHash: 's', data: before }, lastRun('s', before)).outcome, 'unchanged');
  });

  it('always goes on without any gate', () => {
    const d = decideGate({}, { specHash: 's1', data: [data('d1')] }, lastRun('s1', [data('d1')]));
    assert.equal(d.proceed, true);
  });
});

describe('decideGate: metric trigger', () => {
  const gate = { metricBelow: { model: 'spam-clf', metric: 'f1', threshold: 0.9 } };
  const cur = { specHash: 's1', data: [data('d1')] };
  const prev = lastRun('s1', [data('d1')]);

  it('fires when the production metric is below the threshold', () => {
    const d = decideGate(gate, cur, prev, 0.85);
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
    assert.match(d.reason, /spam-clf@production f1 0\.8500 < 0\.9/);
  });

  it('stays quiet when the metric is at or above the threshold, even with new data', () => {
    for (const m of [0.9, 0.95]) {
      const d = decideGate(gate, { specHash: 's1', data: [data('new')] }, prev, m);
      assert.deepEqual([d.proceed, d.outcome], [false, 'not-triggered'], `metric ${m}`);
    }
  });

  it('fires when there is no model yet', () => {
    const d = decideGate(gate, cur, prev, undefined);
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
    assert.match(d.reason, /no such model yet: spam-clf@production/);
  });

  it('says the model lacks the metric, naming the version and the metrics it has, rather than "no such model"', () => {
    const d = decideGate(gate, cur, prev, { version: 3, metrics: ['f1_macro', 'accuracy'] });
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
    assert.equal(d.reason, "spam-clf@production (v3) has no metric 'f1' (it has f1_macro, accuracy)");
    const many = decideGate(gate, cur, prev, { version: 1, metrics: ['a', 'b', 'c', 'd', 'e', 'f', 'g'] });
    assert.match(many.reason, /it has a, b, c, d, e, f, …\)$/);
    assert.equal(decideGate(gate, cur, prev, { version: 3, value: 0.95, metrics: ['f1'] }).outcome, 'not-triggered');
  });

  it("reads a version's metric as a number of its own (productionReading, shared by the gate and the schedule commands)", () => {
    assert.equal(productionReading(undefined, 'f1'), undefined);
    assert.deepEqual(productionReading({ version: 3, metrics: { f1: 0.8, accuracy: 0.9 } }, 'f1'), {
      version: 3,
      value: 0.8,
      metrics: ['f1', 'accuracy'],
    });
    // Not a number, or only on the prototype: the version lacks it.
    assert.equal(productionReading({ version: 3, metrics: { f1: '0.8' } }, 'f1')!.value, undefined);
    assert.deepEqual(productionReading({ version: 2, metrics: {} }, 'constructor'), { version: 2, value: undefined, metrics: [] });
  });

  it('names the alias it looked at', () => {
    const d = decideGate({ metricBelow: { ...gate.metricBelow, alias: 'staging' } }, cur, prev, 0.5);
    assert.match(d.reason, /spam-clf@staging/);
  });
});

describe('decideGate: label drift trigger', () => {
  const gate = { labelDrift: { threshold: 0.1 } };
  const prev = lastRun('s1', [data('d1', { ham: 80, spam: 20 })]);

  it('fires when the label distribution moved past the threshold', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d2', { ham: 40, spam: 60 })] }, prev);
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
    assert.match(d.reason, /Jensen-Shannon distance 0\.\d+ > 0\.1/);
  });

  it('stays quiet on new data from the same distribution', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d2', { ham: 160, spam: 40 })] }, prev);
    assert.deepEqual([d.proceed, d.outcome], [false, 'not-triggered']);
    assert.match(d.reason, /distance 0\.0000 ≤ 0\.1/);
  });

  it('fires when there is no earlier run to compare with', () => {
    const d = decideGate(gate, { specHash: 's1', data: [data('d1')] }, undefined);
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
  });

  it('sums label counts over all ingest stages', () => {
    // Each stage alone shifted, but together they match the earlier total.
    const cur = [data('x', { ham: 80, spam: 0 }, 'a'), data('y', { ham: 0, spam: 20 }, 'b')];
    const d = decideGate(gate, { specHash: 's1', data: cur }, prev);
    assert.equal(d.outcome, 'not-triggered');
  });

  it('lets either trigger fire when both are set, and reports both when quiet', () => {
    const both = { ...gate, metricBelow: { model: 'm', metric: 'acc', threshold: 0.5 } };
    const drifted = { specHash: 's1', data: [data('d2', { ham: 10, spam: 90 })] };
    assert.equal(decideGate(both, drifted, prev, 0.9).outcome, 'triggered');
    const quiet = decideGate(both, { specHash: 's1', data: [data('d1')] }, prev, 0.9);
    assert.equal(quiet.outcome, 'not-triggered');
    assert.match(quiet.reason, /m@production acc/);
    assert.match(quiet.reason, /label distribution stable/);
  });

  it('takes precedence over skipIfUnchanged: a quiet trigger skips even changed data', () => {
    const d = decideGate({ ...gate, skipIfUnchanged: true }, { specHash: 's2', data: [data('d9', { ham: 8, spam: 2 })] }, prev);
    assert.equal(d.outcome, 'not-triggered');
  });
});

describe('RunIndex', () => {
  const spam = { pipeline: 'spam' };
  it('round-trips the last run per pipeline, replacing it atomically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const idx = new RunIndex(join(dir, 'runs'));
      assert.equal(idx.last(spam), undefined);
      const r1 = lastRun('s1', [data('d1')]);
      idx.record(spam, r1);
      assert.deepEqual(idx.last(spam), r1);
      const r2 = { ...lastRun('s2', [data('d2')]), runId: 'run-2' };
      idx.record(spam, r2);
      assert.deepEqual(new RunIndex(join(dir, 'runs')).last(spam), r2, 'a fresh index sees the newest record');
      assert.equal(idx.last({ pipeline: 'other' }), undefined, 'pipelines do not share records');
      assert.deepEqual(readdirSync(join(dir, 'runs')), ['pipeline%3aspam.json'], 'no temp file left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps names that are not file-safe inside its folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const idx = new RunIndex(dir);
      idx.record({ pipeline: '../escape/me' }, lastRun('s', []));
      assert.deepEqual(readdirSync(dir), ['pipeline%3a..%2fescape%2fme.json']);
      assert.equal(idx.last({ pipeline: '../escape/me' })?.specHash, 's');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps schedules and pipelines apart, and names that differ in one character or in case', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const idx = new RunIndex(dir);
      const owners = [
        { pipeline: 'spam' },
        { schedule: 'spam' },
        { schedule: 'x.y' },
        { schedule: 'x_y' },
        { schedule: 'X_y' },
        { schedule: 'x__y' },
      ];
      owners.forEach((o, i) => idx.record(o, { ...lastRun('s', []), runId: `r${i}` }));
      owners.forEach((o, i) => assert.equal(idx.last(o)?.runId, `r${i}`, JSON.stringify(o)));
      const files = readdirSync(dir);
      assert.equal(new Set(files.map((f) => f.toLowerCase())).size, owners.length, `file names apart even ignoring case: ${files}`);
      for (const f of files) assert.match(f, /^[a-z0-9.%_-]+\.json$/);
      assert.equal(runIndexFileName(`schedule:${'A'.repeat(100)}`).length <= 200, true);
      assert.notEqual(runIndexFileName(`pipeline:${'a'.repeat(300)}`), runIndexFileName(`pipeline:${'a'.repeat(301)}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a record of the old naming only when its run id shows whose it is, and forgets both', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const old = (file: string, runId: string) => writeFileSync(join(dir, file), JSON.stringify({ ...lastRun('s', []), runId }));
      // Before namespaces: schedule `x.y` wrote x_y.json, and so would schedule `x_y`.
      old('x_y.json', 'x.y-2026-11-29T03:00:00Z');
      const idx = new RunIndex(dir);
      assert.equal(idx.last({ schedule: 'x.y' })?.runId, 'x.y-2026-11-29T03:00:00Z');
      assert.equal(idx.last({ schedule: 'x_y' }), undefined, 'written by another schedule');
      // A schedule named like its pipeline shared the pipeline's file with manual runs.
      old('spam.json', 'spam-20261129030000-abcdef');
      assert.equal(idx.last({ pipeline: 'spam' })?.runId, 'spam-20261129030000-abcdef');
      assert.equal(idx.last({ schedule: 'spam' }), undefined, 'a manual run is not the schedule');
      old('spam.json', 'spam-2026-11-29T03:00:00Z');
      assert.equal(idx.last({ schedule: 'spam' })?.runId, 'spam-2026-11-29T03:00:00Z');
      assert.equal(idx.last({ pipeline: 'spam' }), undefined, 'a scheduled run is not a manual run of the pipeline');
      // A new record wins over the old one.
      idx.record({ schedule: 'spam' }, { ...lastRun('s', []), runId: 'spam-2026-11-30T03:00:00Z' });
      assert.equal(idx.last({ schedule: 'spam' })?.runId, 'spam-2026-11-30T03:00:00Z');
      assert.equal(idx.forget({ schedule: 'spam' }), true);
      assert.equal(idx.last({ schedule: 'spam' }), undefined, 'the old-named record went too');
      assert.equal(idx.forget({ schedule: 'spam' }), false);
      assert.equal(idx.last({ schedule: 'x.y' })?.runId, 'x.y-2026-11-29T03:00:00Z', 'others kept');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('decideGate: labels named like Object properties', () => {
  const gate = { labelDrift: { threshold: 0.1 } };
  const parsed = (json: string) => JSON.parse(json) as Record<string, number>;
  it('counts constructor and __proto__ like any other label', () => {
    const same = decideGate(
      gate,
      { specHash: 's', data: [data('h2', parsed('{"constructor": 10, "ham": 10}'))] },
      lastRun('s', [data('h1', parsed('{"constructor": 10, "ham": 10}'))]),
    );
    assert.equal(same.proceed, false, same.reason);
    const moved = decideGate(
      gate,
      { specHash: 's', data: [data('h2', parsed('{"__proto__": 10}'))] },
      lastRun('s', [data('h1', parsed('{"ham": 10}'))]),
    );
    assert.equal(moved.proceed, true, moved.reason);
    assert.match(moved.reason, /distance 1\.0000/);
  });
});
