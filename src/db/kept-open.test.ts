import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeptOpen, useOpen } from './kept-open.ts';

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

  it('an open that fails after a close and a newer open forgets only itself: the newer handle is the one kept and closed', async () => {
    let n = 0;
    const closed: number[] = [];
    let failFirst!: (e: Error) => void;
    const kept = new KeptOpen(() => {
      const id = ++n;
      if (id === 1) return new Promise<{ id: number; close(): Promise<void> }>((_, reject) => (failFirst = reject));
      return Promise.resolve({ id, close: async () => void closed.push(id) });
    });
    const first = kept.get().catch(() => 'failed');
    const closing = kept.close();
    const second = await kept.get();
    failFirst(new Error('database down'));
    assert.equal(await first, 'failed');
    await closing;
    assert.equal(await kept.get(), second, 'the late failure did not drop the newer handle');
    await kept.close();
    assert.deepEqual(closed, [2]);
  });

  it('useOpen opens a named database for one use and closes it, even when the use fails; a kept one stays open', async () => {
    const log: string[] = [];
    const open = async (where: string) => {
      log.push(`open ${where}`);
      return { where, close: async () => void log.push(`close ${where}`) };
    };
    assert.equal(await useOpen('a.db', open, async (db) => db.where), 'a.db');
    await assert.rejects(
      useOpen('b.db', open, async () => {
        throw new Error('refused');
      }),
      /refused/,
    );
    const kept = new KeptOpen(() => open('kept.db'));
    await useOpen(kept, open, async () => undefined);
    await useOpen(kept, open, async () => undefined);
    assert.deepEqual(log, ['open a.db', 'close a.db', 'open b.db', 'close b.db', 'open kept.db']);
    await kept.close();
    assert.equal(log.at(-1), 'close kept.db');
  });
});
