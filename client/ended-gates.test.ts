import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EndedGates } from './ended-gates.ts';

/** Marks a listing as markGateSkips does: a run not known is read (counted) and remembered. Returns the reads. */
function mark(gates: EndedGates<boolean>, listing: string[]): number {
  let reads = 0;
  for (const key of listing)
    if (gates.get(key) === undefined) {
      reads++;
      gates.set(key, key.endsWith('0'), listing.length);
    }
  return reads;
}

/**
 * Kept first in, first out at 5,000, a listing of 10,000 completed runs listed again in one process (a library caller's;
 * `tempered runs` lists once) read every run's result again each time: each one read pushed out the one asked for next.
 */
test('a listing longer than the runs kept reads each run once, and a shorter one after it brings the memory back down', () => {
  const gates = new EndedGates<boolean>(5000);
  const long = Array.from({ length: 10_000 }, (_, i) => `run-${i}/x`);
  assert.equal(mark(gates, long), 10_000);
  assert.equal(mark(gates, long), 0, 'listed again: every run known');
  assert.equal(gates.size, 10_000);

  const short = Array.from({ length: 20 }, (_, i) => `new-${i}/x`);
  assert.equal(mark(gates, short), 20);
  assert.equal(gates.size, 5000);
  assert.equal(mark(gates, short), 0);
  // The runs kept are those used last: the end of the long listing, not its beginning.
  assert.deepEqual([gates.get('run-9999/x'), gates.get('run-0/x')], [false, undefined]);
});

test('a run asked about is kept over one that was not, though remembered before it', () => {
  const gates = new EndedGates<string>(3);
  for (const k of ['a', 'b', 'c']) gates.set(k, k, 1);
  assert.equal(gates.get('a'), 'a');
  gates.set('d', 'd', 1);
  assert.deepEqual(
    ['a', 'b', 'c', 'd'].map((k) => gates.get(k)),
    ['a', undefined, 'c', 'd'],
  );
});
