import { test } from 'node:test';
import assert from 'node:assert/strict';
import Ajv2020 from 'ajv/dist/2020.js';
import { dedupeWithSchema, ingestWithSchema, splitWithSchema } from './schemas.ts';

function compile(schema: object) {
  const ajv = new Ajv2020.default({ strict: true, allErrors: true });
  return ajv.compile(schema);
}

test('schemas compile under draft 2020-12 strict mode', () => {
  for (const s of [ingestWithSchema, dedupeWithSchema, splitWithSchema]) compile(s);
});

test('ingest schema accepts what ingest accepts and rejects unknown or mistyped fields', () => {
  const v = compile(ingestWithSchema);
  for (const ok of [
    { path: 'a.jsonl', task: 'classification' },
    {
      path: 'd/**/*.csv',
      task: 'pairs',
      format: 'csv',
      delimiter: ';',
      quote: false,
      header: false,
      columns: ['a', 'b', 'c'],
      fields: { text_a: 'a', text_b: 'b', label: 'c' },
      labels: ['x', 'y'],
      maxLength: 512,
      onBadRow: 'quarantine',
      maxBadFraction: 0.2,
    },
    { path: 's.jsonl', task: 'instruction', promptTemplate: '{instruction}[[\n\n{input}]]', fields: { response: 'output' } },
    { path: 'https://example.org/train.jsonl', sha256: 'a'.repeat(64), task: 'classification' },
  ])
    assert.ok(v(ok), JSON.stringify(v.errors));
  for (const bad of [
    { task: 'classification' },
    { path: 'a', task: 'regression' },
    { path: 'a', task: 'classification', delimiter: '::' },
    { path: 'a', task: 'classification', onBadRow: 'skip' },
    { path: 'a', task: 'classification', maxBadFraction: 2 },
    { path: 'a', task: 'classification', fields: { txt: 'x' } },
    { path: 'a', task: 'classification', extra: 1 },
    { path: 'https://example.org/x.jsonl', task: 'classification', sha256: 'abc' },
  ])
    assert.ok(!v(bad), JSON.stringify(bad));
});

test('dedupe and split schemas', () => {
  const d = compile(dedupeWithSchema);
  assert.ok(d({}));
  assert.ok(d({ near: false, normalize: { nfkc: false }, conflicts: 'majority' }));
  assert.ok(d({ near: { shingle: 'char', size: 5, numPerm: 64, bands: 16, rows: 4, threshold: 0.7, seed: 3 } }));
  assert.ok(!d({ near: { threshold: 0 } }));
  assert.ok(!d({ near: true }));
  assert.ok(!d({ conflicts: 'vote' }));
  const s = compile(splitWithSchema);
  assert.ok(s({}));
  assert.ok(s({ ratios: { train: 0.9, test: 0.1 }, seed: 2, stratify: false, groupBy: 'user' }));
  assert.ok(s({ kfold: 5, counts: { test: 100 } }));
  assert.ok(!s({ ratios: { train: 1 }, counts: { test: 1 } }));
  assert.ok(!s({ ratios: { dev: 0.1 } }));
  assert.ok(!s({ kfold: 1 }));
});
