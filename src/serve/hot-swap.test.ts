import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HotSwapModel } from './hot-swap.ts';
import { FakePredictor } from './fake-predictor.testing.ts';

function source() {
  const s = { key: 'm@1', loads: 0, loaded: [] as FakePredictor[], gate: null as Promise<void> | null };
  const resolve = async () => ({
    key: s.key,
    load: async () => {
      s.loads++;
      if (s.gate) await s.gate;
      const p = new FakePredictor(s.key);
      s.loaded.push(p);
      return p;
    },
  });
  return { s, resolve };
}

test('the old predictor closes only after its last lease is released', async () => {
  const { s, resolve } = source();
  const m = new HotSwapModel(resolve, { pollMs: 1e9 });
  await m.start();
  const lease1 = m.acquire();
  const lease2 = m.acquire();
  s.key = 'm@2';
  assert.equal(await m.pollOnce(), true);
  assert.equal(m.current.id, 'm@2');
  assert.equal(lease1.predictor.id, 'm@1');
  const old = s.loaded[0]!;
  assert.equal(old.closed, false);
  lease1.release();
  lease1.release(); // double release must not over-count
  assert.equal(old.closed, false);
  lease2.release();
  await new Promise((r) => setImmediate(r));
  assert.equal(old.closed, true);
  const lease3 = m.acquire();
  assert.equal(lease3.predictor.id, 'm@2');
  lease3.release();
  await m.stop();
});

test('requests keep using the current model while the new one loads', async () => {
  const { s, resolve } = source();
  const m = new HotSwapModel(resolve, { pollMs: 1e9 });
  await m.start();
  let open!: () => void;
  s.gate = new Promise((r) => (open = r));
  s.key = 'm@2';
  const swapping = m.pollOnce();
  const again = m.pollOnce(); // overlapping polls share one check and one load
  await new Promise((r) => setTimeout(r, 10));
  const during = m.acquire();
  assert.equal(during.predictor.id, 'm@1');
  during.release();
  open();
  assert.equal(await swapping, true);
  assert.equal(await again, true);
  assert.equal(s.loads, 2);
  assert.equal(m.swaps, 1);
  await m.stop();
});

test('an unchanged key loads nothing; polling runs on its own timer', async () => {
  const { s, resolve } = source();
  const swaps: string[] = [];
  const m = new HotSwapModel(resolve, { pollMs: 5, onSwap: (a, b) => swaps.push(`${a}->${b}`) });
  await m.start();
  assert.equal(await m.pollOnce(), false);
  assert.equal(s.loads, 1);
  s.key = 'm@2';
  for (let i = 0; i < 2000 && swaps.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.deepEqual(swaps, ['m@1->m@2']);
  await m.stop();
  assert.ok(
    s.loaded.every((p) => p.closed),
    'stop closes every predictor',
  );
});

test('stop waits for outstanding leases before closing', async () => {
  const { s, resolve } = source();
  const m = new HotSwapModel(resolve, { pollMs: 1e9 });
  await m.start();
  const lease = m.acquire();
  let stopped = false;
  const stopping = m.stop().then(() => (stopped = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(stopped, false);
  assert.equal(s.loaded[0]!.closed, false);
  lease.release();
  await stopping;
  assert.equal(s.loaded[0]!.closed, true);
});

test('a failing swap callback (the audit append) neither crashes the server nor serves the unrecorded model; it is retried', async () => {
  const { s, resolve } = source();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    let failuresLeft = 2;
    const errors: string[] = [];
    const swaps: string[] = [];
    const m = new HotSwapModel(resolve, {
      pollMs: 5,
      onSwap: (a, b) => {
        if (failuresLeft-- > 0) throw new Error('audit.db is locked');
        swaps.push(`${a}->${b}`);
      },
      onError: (e, phase) => errors.push(`${phase}: ${(e as Error).message}`),
    });
    await m.start();
    s.key = 'm@2';
    for (let i = 0; i < 200 && errors.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(m.current.id, 'm@1', 'the old model serves while the swap is unrecorded');
    for (let i = 0; i < 400 && swaps.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(swaps, ['m@1->m@2']);
    assert.equal(m.current.id, 'm@2');
    assert.deepEqual(errors, ['notify: audit.db is locked', 'notify: audit.db is locked']);
    assert.equal(s.loads, 2, 'the new model was loaded once and kept while the record was retried');
    await m.stop();
    assert.ok(s.loaded.every((p) => p.closed));
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(unhandled, []);
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});

test('a version whose load failed is loaded again after a doubling wait, not on every poll; a new version is tried at once', async () => {
  // A replica whose new version was corrupt in the store fetched and loaded it on every 2 s poll (the serve journey).
  let clock = 0;
  let resolves = 0;
  let loads = 0;
  let key = 'm@1';
  let broken = new Set<string>();
  const resolve = async () => {
    resolves++;
    const k = key;
    return {
      key: k,
      load: async () => {
        loads++;
        if (broken.has(k)) throw new Error(`corrupt model file of ${k}`);
        return new FakePredictor(k);
      },
    };
  };
  const errors: string[] = [];
  const m = new HotSwapModel(resolve, {
    pollMs: 5,
    maxLoadRetryMs: 20,
    now: () => clock,
    onError: (e, phase, d) => errors.push(`${phase} ${d?.wanted} ${d?.retryInMs}: ${(e as Error).message}`),
  });
  await m.start();
  const polls = async (n: number) => {
    const until = resolves + n;
    while (resolves < until) await new Promise((r) => setTimeout(r, 2));
  };
  broken = new Set(['m@2']);
  key = 'm@2';
  await polls(5);
  assert.equal(loads, 2, 'the first load of m@2 failed, and the clock has not moved: no second');
  assert.equal(m.behind?.phase, 'load');
  assert.ok(m.behind?.retryAt);
  clock = 5;
  await polls(5);
  assert.equal(loads, 3, 'one more try once the first wait (pollMs) is over');
  clock = 14;
  await polls(5);
  assert.equal(loads, 3, 'the second wait is twice as long');
  clock = 15;
  await polls(5);
  assert.equal(loads, 4);
  clock = 15 + 20;
  await polls(5);
  assert.equal(loads, 5, 'the wait is capped at maxLoadRetryMs');
  assert.deepEqual(errors, [
    'load m@2 5: corrupt model file of m@2',
    'load m@2 10: corrupt model file of m@2',
    'load m@2 20: corrupt model file of m@2',
    'load m@2 20: corrupt model file of m@2',
  ]);
  assert.equal(m.current.id, 'm@1');
  // An explicit check loads at once; a newer version is tried at once too, and served.
  assert.equal(await m.pollOnce(), false);
  assert.equal(loads, 6);
  key = 'm@3';
  await polls(3);
  assert.equal(m.current.id, 'm@3');
  assert.equal(m.behind, null);
  await m.stop();
});
