import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { forEachInFlight, mapReadAhead } from './in-flight.ts';

/** Counts the calls under way and the most there ever were. */
function gauge() {
  const g = { now: 0, most: 0 };
  return Object.assign(g, {
    async hold<R>(ms: number, v: R): Promise<R> {
      g.most = Math.max(g.most, ++g.now);
      await sleep(ms);
      g.now--;
      return v;
    },
  });
}

test('forEachInFlight: every item once, never more than n at a time', async () => {
  const g = gauge();
  const seen: number[] = [];
  await forEachInFlight(
    Array.from({ length: 20 }, (_, i) => i),
    4,
    async (i) => void seen.push(await g.hold(i % 3, i)),
  );
  assert.deepEqual(
    seen.sort((a, b) => a - b),
    Array.from({ length: 20 }, (_, i) => i),
  );
  assert.equal(g.most, 4);
  const one = gauge();
  await forEachInFlight([1, 2, 3], 1, async (i) => void (await one.hold(1, i)));
  assert.equal(one.most, 1);
});

test('forEachInFlight: after a failure nothing new starts; the calls under way finish, then the first failure is thrown', async () => {
  const started: number[] = [];
  const finished: number[] = [];
  await assert.rejects(
    forEachInFlight(
      Array.from({ length: 50 }, (_, i) => i),
      3,
      async (i) => {
        started.push(i);
        if (i === 4) throw new Error('item 4 failed');
        if (i === 5) throw new Error('item 5 failed too');
        await sleep(5);
        finished.push(i);
      },
    ),
    /item 4 failed/,
  );
  assert.ok(started.length < 10, `started ${started.join(',')}`);
  assert.deepEqual(
    finished.sort((a, b) => a - b),
    started.filter((i) => i !== 4 && i !== 5).sort((a, b) => a - b),
    'every call that started and did not fail finished before the throw',
  );
});

test('mapReadAhead: results in the source order, up to n calls ahead of a slow consumer', async () => {
  const g = gauge();
  async function* source() {
    for (let i = 0; i < 12; i++) yield i;
  }
  const out: number[] = [];
  for await (const v of mapReadAhead(source(), 3, (i) => g.hold(12 - i, i * 10))) {
    out.push(v);
    await sleep(2);
  }
  assert.deepEqual(
    out,
    Array.from({ length: 12 }, (_, i) => i * 10),
  );
  assert.equal(g.most, 3);
});

test('mapReadAhead: a failed call is thrown in its turn, and stopping early closes the source', async () => {
  let closed = false;
  async function* source() {
    try {
      for (let i = 0; ; i++) yield i;
    } finally {
      closed = true;
    }
  }
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const v of mapReadAhead(source(), 4, async (i) => {
      if (i === 2) throw new Error('read 2 failed');
      return i;
    }))
      got.push(v);
  }, /read 2 failed/);
  assert.deepEqual(got, [0, 1]);
  assert.equal(closed, true);
});
