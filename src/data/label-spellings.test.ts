import assert from 'node:assert/strict';
import { test } from 'node:test';
import { declaredSpelling } from './label-spellings.ts';

// With labels that differ in case alone declared, the hint named the first that matched case-folded: "B " was told it
// is "b" written differently, and the labelMap suggested would have moved its rows to the other class.
test('a declared label equal to the row label trimmed is the one meant, before one equal case-folded', () => {
  assert.equal(declaredSpelling('B ', ['b', 'B']), 'B');
  assert.equal(declaredSpelling(' b', ['b', 'B']), 'b');
  assert.equal(declaredSpelling('BILLING', ['billing', 'tech']), 'billing');
  assert.equal(declaredSpelling('1.0', ['1', '2']), '1');
  assert.equal(declaredSpelling('other', ['b', 'B']), undefined);
});
