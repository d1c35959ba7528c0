/**
 * Property tests of canonical JSON (fast-check, seeded so a failure replays): hash chains and
 * cache keys rest on "same value, same bytes" and on "what is hashed is what is stored".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { canonicalJson, hashJson } from './canonical-json.ts';
import { InputError } from '../errors.ts';

const SEED = 20261203;
const run = (p: fc.IProperty<any> | fc.IAsyncProperty<any>, numRuns = 300) => fc.assert(p as fc.IProperty<any>, { seed: SEED, numRuns });

/** The same value with every object's keys in another order. */
function shuffled(v: unknown, rnd: () => number): unknown {
  if (Array.isArray(v)) return v.map((x) => shuffled(x, rnd));
  if (v && typeof v === 'object') {
    const entries = Object.entries(v).sort(() => rnd() - 0.5);
    return Object.fromEntries(entries.map(([k, x]) => [k, shuffled(x, rnd)]));
  }
  return v;
}

test('any JSON value: key order does not matter, output parses back to the value and is stable', () => {
  run(
    fc.property(fc.jsonValue(), fc.integer(), (v, s) => {
      let x = s;
      const rnd = () => (x = (x * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
      const out = canonicalJson(v);
      assert.equal(canonicalJson(shuffled(v, rnd)), out);
      assert.equal(canonicalJson(JSON.parse(out)), out, 'canonical of the parsed output is the output');
      assert.ok(!/\n|\s(?=(?:[^"\\]|\\.)*$)/.test(out.replace(/"(?:[^"\\]|\\.)*"/g, '""')), 'no whitespace outside strings');
      assert.equal(hashJson(v), hashJson(JSON.parse(out)));
    }),
  );
});

test('any string, lone surrogates included: the output is well-formed and survives UTF-8 unchanged', () => {
  run(
    fc.property(fc.string({ unit: 'binary' }), fc.dictionary(fc.string({ unit: 'binary' }), fc.string({ unit: 'binary' })), (s, d) => {
      for (const out of [canonicalJson(s), canonicalJson(d)]) {
        assert.equal(Buffer.from(out, 'utf8').toString('utf8'), out, 'stored as UTF-8 (SQLite, files), read back the same');
        assert.deepEqual(JSON.parse(out), JSON.parse(Buffer.from(out, 'utf8').toString('utf8')));
      }
      assert.equal(JSON.parse(canonicalJson(s)), s, 'the exact string, lone surrogates and all, comes back');
    }),
  );
});

test('keys that name Object.prototype machinery are plain keys', () => {
  run(
    fc.property(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty'), fc.jsonValue(), (k, v) => {
      const obj = JSON.parse(`{${JSON.stringify(k)}: ${JSON.stringify(v)}, "z": 1}`) as Record<string, unknown>;
      const out = canonicalJson(obj);
      assert.deepEqual(Object.keys(JSON.parse(out)), [k, 'z'].sort());
      assert.equal(({} as Record<string, unknown>).polluted, undefined);
    }),
  );
});

test('anything at all: a JSON string or an InputError naming the place, never another crash or invalid JSON', () => {
  const anything = fc.anything({
    withBigInt: true,
    withBoxedValues: true,
    withDate: true,
    withMap: true,
    withSet: true,
    withNullPrototype: true,
    withObjectString: true,
    withSparseArray: true,
    withTypedArray: true,
    withUnicodeString: true,
  });
  run(
    fc.property(anything, (v) => {
      let out: string;
      try {
        out = canonicalJson(v);
      } catch (e) {
        assert.ok(e instanceof InputError, `threw ${(e as Error)?.name}: ${(e as Error)?.message}`);
        assert.match((e as InputError).message, /^value/);
        return;
      }
      assert.doesNotThrow(() => JSON.parse(out), `invalid JSON: ${out}`);
    }),
    1000,
  );
});
