import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decideGate, RunIndex, type DataFingerprint, type RunRecord } from './run-gate.ts';

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

  it('fires when there is no model (or no such metric) yet', () => {
    const d = decideGate(gate, cur, prev, undefined);
    assert.deepEqual([d.proceed, d.outcome], [true, 'triggered']);
    assert.match(d.reason, /no such model/);
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
  it('round-trips the last run per pipeline, replacing it atomically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const idx = new RunIndex(join(dir, 'runs'));
      assert.equal(idx.last('spam'), undefined);
      const r1 = lastRun('s1', [data('d1')]);
      idx.record('spam', r1);
      assert.deepEqual(idx.last('spam'), r1);
      const r2 = { ...lastRun('s2', [data('d2')]), runId: 'run-2' };
      idx.record('spam', r2);
      assert.deepEqual(new RunIndex(join(dir, 'runs')).last('spam'), r2, 'a fresh index sees the newest record');
      assert.equal(idx.last('other'), undefined, 'pipelines do not share records');
      assert.deepEqual(readdirSync(join(dir, 'runs')), ['spam.json'], 'no temp file left behind');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps pipeline names that are not file-safe inside its folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'run-index-'));
    try {
      const idx = new RunIndex(dir);
      idx.record('../escape/me', lastRun('s', []));
      assert.deepEqual(readdirSync(dir), ['___escape_me.json']);
      assert.equal(idx.last('../escape/me')?.specHash, 's');
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
