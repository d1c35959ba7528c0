import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GenerationGate } from './gate.ts';

test("a refused generation's Retry-After is when the ones waiting now will have started, at the mean hold time", async () => {
  let clock = 0;
  const gate = new GenerationGate(1, 2, () => clock);
  // Before any generation has ended, the one running has taken at least as long as it has run: 1 s at least.
  const first = await gate.tryEnter()!;
  const queued = [gate.tryEnter()!, gate.tryEnter()!];
  assert.equal(gate.tryEnter(), null);
  assert.equal(gate.retryAfterSeconds(), 1);
  clock = 2500;
  assert.equal(gate.retryAfterSeconds(), 5);
  // One generation held its slot 4 s; two wait for the one slot: 8 s.
  clock = 4000;
  first();
  const second = await queued[0]!;
  const refill = gate.tryEnter()!;
  assert.equal(gate.queued, 2);
  assert.equal(gate.retryAfterSeconds(), 8);
  // Recent holds count for more (a quarter each): a 0.4 s generation brings the mean to 3.1 s; two waiting, 7 s.
  clock = 4400;
  second();
  const third = await queued[1]!;
  const refill2 = gate.tryEnter()!;
  assert.equal(gate.retryAfterSeconds(), 7);
  // Never more than 30 s (the openai SDK sleeps whatever Retry-After says).
  clock = 404_400;
  third();
  assert.equal(gate.retryAfterSeconds(), 30);
  // Two slots halve the wait.
  const two = new GenerationGate(2, 4, () => clock);
  const a = await two.tryEnter()!;
  clock += 3000;
  a();
  void [two.tryEnter(), two.tryEnter(), two.tryEnter(), two.tryEnter()];
  assert.equal(two.queued, 2);
  assert.equal(two.retryAfterSeconds(), 3);
  for (const p of [refill, refill2]) void p.then((leave) => leave());
});
