import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { formatFromExtension, globToRegExp, resolveSources } from './sources.ts';

test('glob syntax: * stays in a folder, ** crosses folders, ? [] {} as usual', () => {
  const m = (g: string, p: string) => globToRegExp(g).test(p);
  assert.ok(m('/d/*.jsonl', '/d/a.jsonl'));
  assert.ok(!m('/d/*.jsonl', '/d/sub/a.jsonl'));
  assert.ok(m('/d/**/*.jsonl', '/d/a.jsonl'));
  assert.ok(m('/d/**/*.jsonl', '/d/x/y/a.jsonl'));
  assert.ok(m('/d/part-?.csv', '/d/part-1.csv') && !m('/d/part-?.csv', '/d/part-10.csv'));
  assert.ok(m('/d/[ab].tsv', '/d/b.tsv') && !m('/d/[!ab].tsv', '/d/b.tsv'));
  assert.ok(m('/d/*.{csv,tsv}', '/d/x.tsv') && !m('/d/*.{csv,tsv}', '/d/x.json'));
  assert.ok(!m('/d/a.csv', '/d/aXcsv'), 'dots are literal');
});

test('formats from extensions', () => {
  assert.equal(formatFromExtension('x/TRAIN.JSONL'), 'jsonl');
  assert.equal(formatFromExtension('a.ndjson'), 'jsonl');
  assert.equal(formatFromExtension('a.tab'), 'tsv');
  assert.equal(formatFromExtension('a.feather'), 'arrow');
  assert.equal(formatFromExtension('a.txt'), undefined);
});

test('sources are sorted by code units, hidden files skipped, display paths relative to baseDir', () => {
  const dir = mkdtempSync(join(tmpdir(), 'sources-'));
  mkdirSync(join(dir, 'd', 'B'), { recursive: true });
  for (const f of ['d/b.jsonl', 'd/B/a.csv', 'd/a.jsonl', 'd/.hidden.jsonl', 'd/readme.md']) writeFileSync(join(dir, f), '');
  assert.deepEqual(resolveSources('d', dir, undefined).map((s) => `${s.display}:${s.format}`), ['d/B/a.csv:csv', 'd/a.jsonl:jsonl', 'd/b.jsonl:jsonl']);
  // With an explicit format every file counts, whatever its extension.
  assert.equal(resolveSources('d', dir, 'jsonl').length, 4);
  assert.deepEqual(resolveSources(join(dir, 'd', 'a.jsonl'), '/', undefined).map((s) => s.display), [join(dir, 'd', 'a.jsonl').slice(1)]);
  assert.throws(() => resolveSources('d/*.parquet', dir, undefined), (e: unknown) => e instanceof InputError && e.where === 'path');
  assert.throws(() => resolveSources('d/{a,b', dir, undefined), InputError);
});
