import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeptOpen } from './kept-open.ts';

describe('KeptOpen', () => {
  it('opens once for many uses, tries again after a failed open, and closes what it opened', async () => {
    let opens = 0;
    let closes = 0;
    let fail = true;
    const kept = new KeptOpen(async () => {
      opens++;
      if (fail) throw new Error('database down');
      return { id: opens, close: async () => void closes++ };
    });
    await assert.rejects(kept.get(), /database down/);
    fail = false;
    const [a, b] = await Promise.all([kept.get(), kept.get()]);
    assert.equal(a, b);
    assert.equal((await kept.get()).id, 2);
    assert.equal(opens, 2, 'the failed open was not kept; the good one was');
    await kept.close();
    assert.equal(closes, 1);
    assert.equal((await kept.get()).id, 3, 'after close, the next use opens again');
    await kept.close();
    await kept.close();
    assert.equal(closes, 2);
  });
});
