import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GenerationGate, MAX_RETRY_AFTER_S, retryAfterSpread } from './gate.ts';

test("a refused generation's Retry-After is when the ones waiting now will have started, at the mean hold time", async () => {
  let clock = 0;
  const gate = new GenerationGate(1, 2, () => clock);
  // Before any generation has ended, the one running has taken at least as long as it has run: 1 s at least.
  const first = await gate.tryEnter()!;
  const queued = [gate.tryEnter()!, gate.tryEnter()!];
  assert.equal(gate.tryEnter(), null);
  assert.equal(gate.estimatedWaitSeconds(), 0);
  clock = 2500;
  assert.equal(gate.estimatedWaitSeconds(), 5);
  // One generation held its slot 4 s; two wait for the one slot: 8 s.
  clock = 4000;
  first();
  const second = await queued[0]!;
  const refill = gate.tryEnter()!;
  assert.equal(gate.queued, 2);
  assert.equal(gate.estimatedWaitSeconds(), 8);
  // Recent holds count for more (a quarter each): a 0.4 s generation brings the mean to 3.1 s; two waiting, 7 s.
  clock = 4400;
  second();
  const third = await queued[1]!;
  const refill2 = gate.tryEnter()!;
  assert.equal(gate.estimatedWaitSeconds(), 7);
  // Never more than 30 s (the openai SDK sleeps whatever Retry-After says).
  clock = 404_400;
  third();
  assert.ok(gate.estimatedWaitSeconds() > 30);
  // Spread over the cap's range, 15–30 s, never past it.
  const capped = gate.retryAfterSeconds('req_a');
  assert.ok(capped >= 15 && capped <= 30, `${capped} s`);
  // Two slots halve the wait.
  const two = new GenerationGate(2, 4, () => clock);
  const a = await two.tryEnter()!;
  clock += 3000;
  a();
  void [two.tryEnter(), two.tryEnter(), two.tryEnter(), two.tryEnter()];
  assert.equal(two.queued, 2);
  assert.equal(two.estimatedWaitSeconds(), 3);
  for (const p of [refill, refill2]) void p.then((leave) => leave());
});

test('clients refused at one moment are told to come back at different seconds, the same id always the same', () => {
  // [estimate, lowest, highest]: up to half as much again, over 3 values at least, within 1–30 s.
  const cases: [number, number, number][] = [
    [0, 1, 3],
    [1, 1, 3],
    [4, 4, 6],
    [8, 8, 12],
    [29, 15, 30],
    [400, 15, 30],
  ];
  for (const [estimate, lo, hi] of cases) {
    const seen = new Map<number, number>();
    for (let i = 0; i < 600; i++) {
      const id = `req_${i.toString(16).padStart(32, '0')}`;
      const s = retryAfterSpread(estimate, id);
      assert.equal(retryAfterSpread(estimate, id), s, 'deterministic');
      assert.ok(Number.isInteger(s) && s >= lo && s <= hi && s <= MAX_RETRY_AFTER_S, `${estimate} → ${s}`);
      seen.set(s, (seen.get(s) ?? 0) + 1);
    }
    // Every second of the range is used, none by more than twice its even share: the burst comes back spread out.
    assert.equal(seen.size, hi - lo + 1, `${estimate}: ${[...seen.keys()].sort((a, b) => a - b).join(',')}`);
    for (const [s, count] of seen) assert.ok(count <= (2 * 600) / seen.size, `${estimate}: ${count} of 600 at ${s} s`);
  }
});
