/**
 * The lease on a name in the shared store (src/store/shared-lease.ts), on a shared folder and on a
 * real SeaweedFS bucket: one holder at a time across writers that share nothing else, a dead
 * holder's lease taken over by exactly one writer, a taken-over holder told through its signal and
 * unable to delete its successor's lease, nothing left behind once released.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderBackend } from '../src/store/folder-backend.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { acquireSharedLease } from '../src/store/shared-lease.ts';
import { LockBusyError } from '../src/util/dir-lock.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

type T = { after: (fn: () => void | Promise<void>) => void };

let s3: TestS3 | undefined;
useTestS3((h) => (s3 = h));

async function keys(remote: ObjectBackend, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const k of remote.list(prefix)) out.push(k);
  return out.sort();
}

const backends: { name: string; make: (t: T) => ObjectBackend }[] = [
  {
    name: 'shared folder',
    make: (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      return new FolderBackend(dir);
    },
  },
  { name: 'S3 (SeaweedFS)', make: () => s3!.backend() },
];

/** Waits until `signal` aborts, or fails after `ms`. */
async function aborted(signal: AbortSignal, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!signal.aborted) {
    if (Date.now() > deadline) assert.fail(`the signal did not abort within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const b of backends) {
  describe(`shared lease on a ${b.name}`, () => {
    test('a second writer is refused, naming the holder, until the holder releases; nothing is left after', async (t) => {
      const remote = b.make(t);
      const first = await acquireSharedLease(remote, 'job', { what: 'run a stage train attempt 1' });
      await assert.rejects(
        acquireSharedLease(remote, 'job', { what: 'run b stage train attempt 1' }),
        (e: unknown) => e instanceof LockBusyError && /run a stage train attempt 1/.test(e.message) && /leases\/job\//.test(e.message),
      );
      // Another name is another lease.
      const other = await acquireSharedLease(remote, 'other-job', { what: 'run c' });
      await first.release();
      const second = await acquireSharedLease(remote, 'job', { what: 'run b stage train attempt 2' });
      assert.equal(second.signal.aborted, false);
      await second.release();
      await other.release();
      assert.deepEqual(await keys(remote, 'leases/'), [], 'a released lease is deleted');
    });

    test("a holder that stopped refreshing is taken over; it learns so through its signal and cannot release its successor's lease", async (t) => {
      const remote = b.make(t);
      // The holder refreshes every 200 ms; the lease is presumed dead 2 s after its last write.
      const zombie = await acquireSharedLease(remote, 'job', { what: 'zombie', staleMs: 2000, refreshMs: 200 });
      await assert.rejects(acquireSharedLease(remote, 'job', { what: 'early', staleMs: 2000 }), LockBusyError);
      // A taker whose clock reads 10 s later sees the lease unrefreshed for longer than 2 s.
      const later = () => Date.now() + 10_000;
      const taker = await acquireSharedLease(remote, 'job', { what: 'taker', staleMs: 2000, refreshMs: 200, now: later });
      await aborted(zombie.signal, 5000);
      assert.match(String(zombie.signal.reason), /lost the lease/);
      await zombie.release();
      // The taker still holds it: a third writer is refused, naming the taker.
      await assert.rejects(
        acquireSharedLease(remote, 'job', { what: 'third', staleMs: 2000 }),
        (e: unknown) => e instanceof LockBusyError && /taker/.test(e.message),
      );
      assert.equal(taker.signal.aborted, false);
      assert.equal((await keys(remote, 'leases/job/')).length, 1, "the zombie's generation is deleted by the taker");
      await taker.release();
      assert.deepEqual(await keys(remote, 'leases/'), []);
    });

    test('a live holder keeps its lease past the stale time by refreshing it', async (t) => {
      const remote = b.make(t);
      // S3 times are whole seconds, so the stale time is a few of them.
      const holder = await acquireSharedLease(remote, 'job', { what: 'holder', staleMs: 2500, refreshMs: 300 });
      await new Promise((r) => setTimeout(r, 4000));
      await assert.rejects(acquireSharedLease(remote, 'job', { what: 'taker', staleMs: 2500 }), LockBusyError);
      assert.equal(holder.signal.aborted, false);
      await holder.release();
    });

    test('of writers racing for a dead lease, exactly one wins', async (t) => {
      const remote = b.make(t);
      const dead = await acquireSharedLease(remote, 'job', { what: 'dead', refreshMs: 3_600_000 });
      const later = () => Date.now() + 120_000;
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => acquireSharedLease(remote, 'job', { what: `racer ${i}`, now: later })),
      );
      const won = results.filter((r) => r.status === 'fulfilled');
      assert.equal(won.length, 1, 'one racer holds the lease');
      for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof LockBusyError, String(r.reason));
      await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof acquireSharedLease>>>).value.release();
      await dead.release();
      assert.deepEqual(await keys(remote, 'leases/'), []);
    });

    test('a damaged lease object and stray keys under the prefix neither crash a writer nor count as a holder once stale', async (t) => {
      const remote = b.make(t);
      await remote.putBytes('leases/job/000000000003.json', Buffer.from('not json {'), { ifAbsent: false });
      await remote.putBytes('leases/job/readme.txt', Buffer.from('stray'), { ifAbsent: false });
      // Fresh, a lease nobody can be named for still blocks: it may be a writer of a later release.
      await assert.rejects(
        acquireSharedLease(remote, 'job', { what: 'w' }),
        (e: unknown) => e instanceof LockBusyError && /another writer/.test(e.message),
      );
      const lease = await acquireSharedLease(remote, 'job', { what: 'w', now: () => Date.now() + 120_000 });
      assert.deepEqual(await keys(remote, 'leases/job/'), ['leases/job/000000000004.json', 'leases/job/readme.txt']);
      await lease.release();
      assert.deepEqual(await keys(remote, 'leases/job/'), ['leases/job/readme.txt'], 'the stray key is not the lease’s to delete');
    });
  });
}

test('on a store that lists no write times, a lease ages by the time its holder wrote in it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const folder = new FolderBackend(dir);
  // The same folder, listed the way a store without Last-Modified lists it.
  const timeless: ObjectBackend = Object.assign(Object.create(folder) as FolderBackend, {
    async *listObjects(prefix: string) {
      for await (const o of folder.listObjects(prefix)) yield { key: o.key, bytes: o.bytes };
    },
  });
  const holder = await acquireSharedLease(timeless, 'job', { what: 'holder', refreshMs: 3_600_000 });
  await assert.rejects(acquireSharedLease(timeless, 'job', { what: 'early' }), LockBusyError);
  const taker = await acquireSharedLease(timeless, 'job', { what: 'taker', now: () => Date.now() + 120_000 });
  await taker.release();
  await holder.release();
  // With no time at all (a damaged lease), it is stale: nothing could ever say it is fresh.
  await folder.putBytes('leases/job/000000000009.json', Buffer.from('{'), { ifAbsent: false });
  const next = await acquireSharedLease(timeless, 'job', { what: 'next' });
  await next.release();
});

test('a name that is not a plain key segment gets its own lease under its hash', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const remote = new FolderBackend(dir);
  const a = await acquireSharedLease(remote, '../../etc', { what: 'a' });
  const [key] = await keys(remote, 'leases/');
  assert.match(key!, /^leases\/[0-9a-f]{64}\/000000000000\.json$/);
  await a.release();
});
