import assert from 'node:assert/strict';
import { test } from 'node:test';
import { closest, editDistance, nameList } from './suggest.ts';

test('edit distance counts a swap of neighbours as one edit', () => {
  assert.equal(editDistance('trian', 'train'), 1);
  assert.equal(editDistance('split', 'splt'), 1);
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'abc'), 3);
});

test('closest suggests plausible typos only', () => {
  const kinds = ['ingest', 'dedupe', 'split', 'train', 'evaluate'];
  assert.equal(closest('trian', kinds), 'train');
  assert.equal(closest('Ingest', kinds), 'ingest');
  assert.equal(closest('evalute', kinds), 'evaluate');
  assert.equal(closest('quantize', kinds), undefined);
  assert.equal(closest('x', []), undefined);
});

test('long name lists are shortened', () => {
  assert.equal(nameList(['a', 'b']), 'a, b');
  const many = Array.from({ length: 30 }, (_, i) => `s${i}`);
  assert.equal(nameList(many), 's0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11 and 18 more');
});
