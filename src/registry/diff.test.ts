import { test } from 'node:test';
import assert from 'node:assert/strict';
import { diffModelVersions } from './diff.ts';
import type { DataRef, ModelVersion } from './types.ts';

const sha = (c: string) => c.repeat(64);

function version(n: number, metrics: Record<string, number>, data: DataRef[]): ModelVersion {
  return {
    name: 'spam',
    version: n,
    createdAt: '2026-01-01T00:00:00.000Z',
    createdBy: 'test',
    description: null,
    intendedUse: null,
    limitations: null,
    lineage: { specHash: 's', runId: `r${n}`, stageId: 'register', data },
    params: {},
    metrics,
    artifacts: [{ role: 'model', uri: 'u', sha256: sha(String(n)), bytes: 1 }],
    tags: {},
    aliases: [],
  };
}

test('production.* measured against different versions get no deltas; against the same version they do', () => {
  const v2 = version(2, { f1_macro: 0.9, 'production.f1_macro': 0.8, 'production.rows': 120, 'production.version': 1 }, []);
  const v3 = version(3, { f1_macro: 0.95, 'production.f1_macro': 0.9, 'production.rows': 130, 'production.version': 2 }, []);
  const v4 = version(4, { f1_macro: 0.96, 'production.f1_macro': 0.92, 'production.rows': 130, 'production.version': 2 }, []);
  const d = diffModelVersions(v2, v3);
  assert.deepEqual(d.production, { a: 1, b: 2, comparable: false });
  assert.deepEqual(
    d.metrics.map((m) => [m.name, m.delta === undefined ? '-' : m.delta.toFixed(2)]),
    [
      ['f1_macro', '0.05'],
      ['production.f1_macro', '-'],
      ['production.rows', '-'],
      ['production.version', '-'],
    ],
  );
  const same = diffModelVersions(v3, v4);
  assert.deepEqual(same.production, { a: 2, b: 2, comparable: true });
  assert.equal(same.metrics.find((m) => m.name === 'production.f1_macro')!.delta!.toFixed(2), '0.02');
  // Registered before production.version was recorded: not known to be the same comparison.
  const unknown = version(5, { f1_macro: 0.9, 'production.f1_macro': 0.9 }, []);
  assert.deepEqual(diffModelVersions(unknown, v4).production, { a: null, b: 2, comparable: false });
  assert.equal(diffModelVersions(version(1, { f1_macro: 0.9 }, []), version(6, { f1_macro: 0.9 }, [])).production, undefined);
});

test('a data set of the same name with other bytes is changed (and still in added and removed by hash)', () => {
  const a = version(1, {}, [
    { name: 'train', sha256: sha('1'), rows: 800 },
    { name: 'test', sha256: sha('e'), rows: 200 },
    { name: 'old', sha256: sha('o') },
  ]);
  const b = version(2, {}, [
    { name: 'train', sha256: sha('2'), rows: 900 },
    { name: 'test', sha256: sha('e'), rows: 200 },
    { name: 'new', sha256: sha('n') },
  ]);
  const d = diffModelVersions(a, b).data;
  assert.deepEqual(
    d.changed.map((c) => [c.name, c.a.rows, c.b.rows]),
    [['train', 800, 900]],
  );
  assert.deepEqual(
    [d.added.map((x) => x.name), d.removed.map((x) => x.name), d.unchanged.map((x) => x.name)],
    [['train', 'new'], ['train', 'old'], ['test']],
  );
});
