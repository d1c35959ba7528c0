import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson, sha256Hex } from './canonical-json.ts';
import { InputError } from '../errors.ts';

test('canonical JSON sorts keys at every depth and drops undefined properties', () => {
  assert.equal(
    canonicalJson({ b: 1, a: { d: [3, { z: null, y: 'x' }], c: true }, u: undefined }),
    '{"a":{"c":true,"d":[3,{"y":"x","z":null}]},"b":1}',
  );
  assert.equal(canonicalJson({ b: 1, a: 2 }), canonicalJson({ a: 2, b: 1 }));
  assert.equal(canonicalJson(new Date('2026-01-01T00:00:00Z')), '"2026-01-01T00:00:00.000Z"');
  assert.equal(canonicalJson('é\u2028"'), JSON.stringify('é\u2028"'));
  assert.equal(canonicalJson(Object.create(null)), '{}');
});

test('values JSON cannot carry faithfully are refused with their path', () => {
  const cases: [unknown, RegExp][] = [
    [{ a: NaN }, /^value\.a: NaN/],
    [{ a: [1, Infinity] }, /value\.a\[1\]: Infinity/],
    [{ a: [undefined] }, /value\.a\[0\]: undefined/],
    [{ m: new Map() }, /value\.m: a Map object/],
    [{ f: () => 1 }, /value\.f: a function/],
    [{ n: 1n }, /value\.n: a bigint/],
    // Found by the property test: map() skipped the holes and join wrote `[,1]`, which is not JSON.
    [{ s: [, 1] }, /value\.s\[0\]: a hole in a sparse array/],
    [{ d: new Date(NaN) }, /value\.d: an invalid Date/],
  ];
  for (const [v, re] of cases)
    assert.throws(
      () => canonicalJson(v),
      (e: unknown) => e instanceof InputError && re.test(e.message),
      String(re),
    );
});

test('sha256Hex matches the known digest of "abc"', () => {
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
});
