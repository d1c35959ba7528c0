import assert from 'node:assert/strict';
import { test } from 'node:test';
import { firstUnfit } from './token-ids.ts';

const rows = { vocab: 10, types: 2, positions: 8 };
const fits = () => ({ inputIds: [1, 2, 3], tokenTypeIds: [0, 0, 0] });

// Checking a large table is synchronous tokenizing: in one loop it held the event loop for the whole table (a worker
// running stages inline missed its heartbeats). Work queued before the check must get its turn while it goes on.
test('firstUnfit gives the event loop turns while it checks many texts, and still finds the first unfit one', async () => {
  const texts = Array.from({ length: 5000 }, (_, i) => `t${i}`);
  let checked = 0;
  let seenAt: number | undefined;
  setImmediate(() => (seenAt = checked));
  const found = await firstUnfit(
    texts,
    (t) => {
      checked++;
      return t === 't4321' ? { inputIds: [1, 12], tokenTypeIds: [0, 0] } : fits();
    },
    rows,
  );
  assert.equal(found?.index, 4321);
  assert.equal(found?.unfit.what, 'id');
  assert.ok(seenAt !== undefined && seenAt < 4322, `the queued callback ran after ${seenAt} of 4322 texts`);
  assert.equal(await firstUnfit(texts.slice(0, 10), fits, rows), undefined);
});
