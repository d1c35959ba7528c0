/**
 * The lease on a name in the shared store (src/store/shared-lease.ts), on a shared folder and on a
 * real SeaweedFS bucket: one holder at a time across writers that share nothing else; a dead
 * holder's lease taken over by exactly one writer, as is a released one; a taken-over holder told
 * through its signal, never coming back, and unable to release its successor's lease; a holder whose
 * own thread is blocked (a long onnxruntime run) kept fresh by its keeper thread.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { readText, type ObjectBackend } from '../src/store/object-backend.ts';
import { acquireSharedLease, advanceLease, LeaseRefresher, leasePrefix, type SharedLease } from '../src/store/shared-lease.ts';
import { LockBusyError, type LockOwner } from '../src/util/dir-lock.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

type T = { after: (fn: () => void | Promise<void>) => void };

let s3: TestS3 | undefined;
useTestS3((h) => (s3 = h));

async function keys(remote: ObjectBackend, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for await (const k of remote.list(prefix)) out.push(k);
  return out.sort();
}

/** What the lease's generations say, oldest first. */
async function bodies(remote: ObjectBackend, prefix: string): Promise<{ key: string; what: string; released: boolean }[]> {
  const out = [];
  for (const key of await keys(remote, prefix)) {
    const text = await readText(remote, key);
    if (text === undefined) continue; // replaced by the next generation since the listing
    const o = JSON.parse(text) as { what: string; released?: boolean };
    out.push({ key: key.slice(prefix.length), what: o.what, released: o.released === true });
  }
  return out;
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

/** A clock 2 minutes ahead: to it, every lease written now is stale. */
const later = () => Date.now() + 120_000;
/** Takes the lease on `name` in a child process that then exits without releasing it. */
function leaveLeaseOfExitedProcess(t: T, remote: ObjectBackend, name: string): void {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-child-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'holder.mts');
  writeFileSync(
    file,
    `import { openBackend } from ${JSON.stringify(new URL('../src/store/open-store.ts', import.meta.url).href)};\n` +
      `import { acquireSharedLease } from ${JSON.stringify(new URL('../src/store/shared-lease.ts', import.meta.url).href)};\n` +
      `const reopen = ${JSON.stringify(remote.reopen!())};\n` +
      `await acquireSharedLease(openBackend(reopen.url, reopen.env ? { env: reopen.env } : {}), ${JSON.stringify(name)}, { what: 'exited', inProcess: true });\n` +
      `process.exit(0);\n`,
  );
  const r = spawnSync(process.execPath, ['--import', 'tsx', file], { timeout: 60_000, encoding: 'utf8' });
  assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
}

/** A holder that never refreshes: a process that died without releasing. */
const dead = { inProcess: true, refreshMs: 3_600_000 };

for (const b of backends) {
  describe(`shared lease on a ${b.name}`, () => {
    test('a second writer is refused, naming the holder, until the holder releases; a release leaves one tombstone', async (t) => {
      const remote = b.make(t);
      const first = await acquireSharedLease(remote, 'job', { what: 'run a stage train attempt 1' });
      await assert.rejects(
        acquireSharedLease(remote, 'job', { what: 'run b stage train attempt 1' }),
        (e: unknown) => e instanceof LockBusyError && /run a stage train attempt 1/.test(e.message) && /leases\/job\//.test(e.message),
      );
      // Another name is another lease.
      const other = await acquireSharedLease(remote, 'other-job', { what: 'run c' });
      await first.release();
      assert.deepEqual(await bodies(remote, 'leases/job/'), [
        { key: '000000000001.json', what: 'run a stage train attempt 1', released: true },
      ]);
      const second = await acquireSharedLease(remote, 'job', { what: 'run b stage train attempt 2' });
      assert.equal(second.signal.aborted, false);
      assert.deepEqual(await bodies(remote, 'leases/job/'), [
        { key: '000000000002.json', what: 'run b stage train attempt 2', released: false },
      ]);
      await second.release();
      await other.release();
      assert.deepEqual(await keys(remote, 'leases/'), ['leases/job/000000000003.json', 'leases/other-job/000000000001.json']);
    });

    for (const keeper of ['its keeper thread', 'in-process'] as const)
      test(`a holder that stopped refreshing is taken over; it learns so through its signal (${keeper}) and cannot release its successor's lease`, async (t) => {
        const remote = b.make(t);
        // A minute to go stale: a holder slowed down by a loaded machine must not give the lease up for
        // its own silence before its next refresh finds the takeover (that is another test).
        const holder = await acquireSharedLease(remote, 'job', {
          what: 'zombie',
          staleMs: 60_000,
          refreshMs: 200,
          inProcess: keeper === 'in-process',
        });
        await assert.rejects(acquireSharedLease(remote, 'job', { what: 'early', staleMs: 60_000 }), LockBusyError);
        // A taker whose clock reads 2 minutes later sees the lease unrefreshed for longer than its 5 s.
        // (waitMs: a refresh of the holder landing between the taker's look and its put makes it try
        // again, 2 s later. It refreshes nothing itself, so the generations left are exactly what it took.)
        const taker = await acquireSharedLease(remote, 'job', {
          what: 'taker',
          staleMs: 5000,
          now: later,
          waitMs: 30_000,
          inProcess: true,
          refreshMs: 3_600_000,
        });
        await aborted(holder.signal, 30_000);
        assert.match(String(holder.signal.reason), /lost the lease/);
        await holder.release();
        // The taker still holds it: a third writer is refused, naming the taker. (With a minute to go
        // stale: the taker never refreshes, and a slow release must not make its lease stale meanwhile.)
        await assert.rejects(
          acquireSharedLease(remote, 'job', { what: 'third', staleMs: 60_000 }),
          (e: unknown) => e instanceof LockBusyError && /taker/.test(e.message),
        );
        assert.equal(taker.signal.aborted, false);
        const left = await bodies(remote, 'leases/job/');
        assert.deepEqual(
          left.map((g) => [g.what, g.released]),
          [['taker', false]],
          `only the taker's generation is left: ${JSON.stringify(left)}`,
        );
        await taker.release();
      });

    test('a holder taken over while its refresh was due never comes back, even once its taker released', async (t) => {
      const remote = b.make(t);
      const prefix = leasePrefix('job');
      const owner: LockOwner = { token: 'z0mb1e', pid: 1, host: 'elsewhere', what: 'zombie', since: '' };
      // The zombie holds generation 0, and its refresh is due.
      await remote.putBytes(
        `${prefix}000000000000.json`,
        Buffer.from(JSON.stringify({ ...owner, refreshedAt: new Date().toISOString() })),
        {
          ifAbsent: true,
        },
      );
      const taker = await acquireSharedLease(remote, 'job', { what: 'taker', now: later });
      await taker.release();
      // The zombie's refresh now finds a newer generation than its own: it lost, and writes nothing.
      assert.deepEqual(await advanceLease(remote, prefix, 0, owner), { held: false });
      assert.deepEqual(
        (await bodies(remote, prefix)).map((g) => [g.key, g.what, g.released]),
        [['000000000002.json', 'taker', true]],
      );
      // A new writer takes the released lease, and the zombie is still out.
      const next = await acquireSharedLease(remote, 'job', { what: 'next' });
      assert.deepEqual(await advanceLease(remote, prefix, 0, owner), { held: false });
      assert.equal(next.signal.aborted, false);
      await next.release();
    });

    test('a holder whose generation was collected (cut off from the store for the gc horizon) gives way to the new holder on its return', async (t) => {
      const remote = b.make(t);
      const prefix = leasePrefix('job');
      const owner: LockOwner = { token: 'b4ck', pid: 1, host: 'elsewhere', what: 'returning', since: '' };
      // Its generation 7 was collected; a new writer found the prefix empty and holds generation 0.
      const current = await acquireSharedLease(remote, 'job', { what: 'new holder', inProcess: true, refreshMs: 100, staleMs: 5000 });
      assert.deepEqual(await advanceLease(remote, prefix, 7, owner), { held: false });
      await new Promise((r) => setTimeout(r, 400));
      assert.equal(current.signal.aborted, false, 'the new holder keeps the lease');
      await current.release();
      assert.deepEqual(
        (await bodies(remote, prefix)).map((g) => [g.what, g.released]),
        [['new holder', true]],
      );
    });

    test('a refresh whose create was stored but answered with an error takes up its own newer generation', async (t) => {
      const remote = b.make(t);
      const prefix = leasePrefix('job');
      const owner: LockOwner = { token: 'mine', pid: 1, host: 'h', what: 'holder', since: '' };
      const body = (gen: number) => Buffer.from(JSON.stringify({ ...owner, refreshedAt: new Date().toISOString(), gen }));
      await remote.putBytes(`${prefix}000000000000.json`, body(0), { ifAbsent: true });
      // Its refresh to generation 1 reached the store; the answer was a timeout, so it still thinks 0.
      await remote.putBytes(`${prefix}000000000001.json`, body(1), { ifAbsent: true });
      assert.deepEqual(await advanceLease(remote, prefix, 0, owner), { held: true, gen: 2 });
      assert.deepEqual(
        (await keys(remote, prefix)).map((k) => k.slice(prefix.length)),
        ['000000000002.json'],
      );
    });

    test("a look that missed the holder's generation (taken while it moved on) does not take the lease from it", async (t) => {
      const remote = b.make(t);
      const prefix = leasePrefix('job');
      // The live holder has moved from generation 0 to 1 (its first refresh).
      const holder = await acquireSharedLease(remote, 'job', { what: 'holder', ...dead, staleMs: 60_000 });
      const [gen0] = await keys(remote, prefix);
      const body = JSON.parse((await readText(remote, gen0!))!) as object;
      await remote.putBytes(`${prefix}000000000001.json`, Buffer.from(JSON.stringify({ ...body, refreshedAt: new Date().toISOString() })), {
        ifAbsent: true,
      });
      await remote.delete(gen0!);
      // A listing taken between the two (a folder store lists names, then looks each up) saw neither.
      let missed = false;
      const racing: ObjectBackend = Object.assign(Object.create(remote) as ObjectBackend, {
        async *listObjects(p: string) {
          if (!missed && p === prefix) {
            missed = true;
            return;
          }
          yield* remote.listObjects(p);
        },
      });
      await assert.rejects(
        acquireSharedLease(racing, 'job', { what: 'taker', ...dead }),
        (e: unknown) => e instanceof LockBusyError && /holder/.test(e.message) && /000000000001/.test(e.message),
      );
      assert.ok(missed);
      assert.deepEqual(await keys(remote, prefix), [`${prefix}000000000001.json`], "the taker's generation 0 was withdrawn");
      await holder.release();
    });

    test('a holder that cannot reach the store gives the lease up before another writer could find it stale', async (t) => {
      const remote = b.make(t);
      let down = false;
      const flaky: ObjectBackend = Object.assign(Object.create(remote) as ObjectBackend, {
        listObjects(prefix: string) {
          if (down) throw new Error('connect ECONNREFUSED');
          return remote.listObjects(prefix);
        },
      });
      const staleMs = 3000;
      const holder = await acquireSharedLease(flaky, 'job', { what: 'holder', staleMs, refreshMs: 500, inProcess: true });
      await new Promise((r) => setTimeout(r, 1200));
      assert.equal(holder.signal.aborted, false, 'refreshing while the store answers');
      down = true;
      await aborted(holder.signal, 10_000);
      const gaveUp = Date.now();
      assert.match(String(holder.signal.reason), /could not refresh the lease .* another writer may take it over now/);
      // Its last write, by the time it put in it (taken after the request chain began, so no earlier
      // than what the holder counts from): a taker could take the lease stale from staleMs after it.
      down = false;
      const [last] = await bodies(remote, 'leases/job/');
      const written = Date.parse(JSON.parse((await readText(remote, `leases/job/${last!.key}`))!).refreshedAt);
      assert.ok(gaveUp - written < staleMs, `gave up ${gaveUp - written} ms after its last write, within the stale time (${staleMs} ms)`);
      await holder.release();
    });

    test("assertHeld knows of a loss at once, while the holder's own thread was blocked when its keeper thread learned it", async (t) => {
      const remote = b.make(t);
      // A minute to go stale: a keeper slowed down by a loaded machine must not give the lease up for
      // its own silence before its next refresh finds the takeover.
      const holder = await acquireSharedLease(remote, 'job', { what: 'holder', staleMs: 60_000, refreshMs: 100 });
      holder.assertHeld();
      const taker = await acquireSharedLease(remote, 'job', {
        what: 'taker',
        now: later,
        waitMs: 30_000,
        inProcess: true,
        refreshMs: 3_600_000,
      });
      // A long onnxruntime run (this thread takes no message meanwhile): the keeper thread finds the
      // takeover, and assertHeld knows it from the flag alone.
      let known = false;
      for (const deadline = Date.now() + 30_000; !known && Date.now() < deadline; ) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
        try {
          holder.assertHeld();
        } catch (e) {
          assert.match(String(e), /lost the lease/);
          known = true;
        }
      }
      assert.ok(known, 'assertHeld learned of the loss while this thread stayed blocked');
      assert.equal(holder.signal.aborted, true);
      await holder.release();
      await taker.release();
      // Refreshed from the holder's own thread, which was blocked for longer than the lease may go
      // unrefreshed: it gives the lease up before it writes, not at its next tick.
      const own = await acquireSharedLease(remote, 'own', { what: 'own', staleMs: 1500, refreshMs: 100, inProcess: true });
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500);
      assert.throws(() => own.assertHeld(), /could not refresh the lease/);
      await own.release();
    });

    test('a create whose answer was lost, and that the SDK retried into a 412, is its writer’s own', async (t) => {
      const remote = b.make(t);
      // Every create-only put reaches the store, and its answer is lost: the retry finds the key.
      const retried: ObjectBackend = Object.assign(Object.create(remote) as ObjectBackend, {
        async putBytes(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }) {
          await remote.putBytes(key, bytes, opts);
          return opts.ifAbsent ? ('exists' as const) : ('stored' as const);
        },
      });
      const lease = await acquireSharedLease(retried, 'job', { what: 'holder', inProcess: true, refreshMs: 3_600_000 });
      assert.equal(lease.signal.aborted, false);
      await assert.rejects(acquireSharedLease(remote, 'job', { what: 'other' }), /held by holder/);
      await lease.release();
      assert.deepEqual(
        (await bodies(remote, 'leases/job/')).map((g) => [g.key, g.released]),
        [['000000000001.json', true]],
        'its release, a create too, was its own as well',
      );
    });

    test("a live holder keeps its lease past the stale time, its keeper thread refreshing it while the holder's own thread is blocked", async (t) => {
      const remote = b.make(t);
      // S3 times are whole seconds, and a keeper thread may take a second or more to start on a
      // loaded machine, and a refresh (three requests to a store on the same 2 cores) as long again:
      // with 4 s, a CI run beside other heavy jobs saw the keeper give the lease up. So 8 s.
      const holder = await acquireSharedLease(remote, 'job', { what: 'holder', staleMs: 8000, refreshMs: 300 });
      // Its keeper thread is refreshing (a generation above the first exists) before this thread blocks.
      for (const deadline = Date.now() + 30_000; !(await keys(remote, 'leases/job/')).some((k) => k > 'leases/job/000000000000.json'); ) {
        assert.ok(Date.now() < deadline, 'the keeper thread refreshed the lease within 30 s');
        await new Promise((r) => setTimeout(r, 50));
      }
      // A synchronous onnxruntime run longer than the stale time: no timer of this thread fires meanwhile.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 9000);
      await assert.rejects(acquireSharedLease(remote, 'job', { what: 'taker', staleMs: 8000 }), LockBusyError);
      assert.equal(holder.signal.aborted, false);
      await holder.release();
    });

    for (const before of ['dead', 'released'] as const)
      test(`of writers racing for a ${before} lease, exactly one wins`, async (t) => {
        const remote = b.make(t);
        // Dead: its process is gone, so a writer on this machine takes it at once. The racers read the
        // real clock, so each other's new leases are live to them: a racer that looks after another
        // has taken it finds it held. (With a clock ahead, as before, a late racer took over the
        // winner's lease, which is right for its clock and made this test flaky under load.)
        if (before === 'dead') leaveLeaseOfExitedProcess(t, remote, 'job');
        else await (await acquireSharedLease(remote, 'job', { what: 'first', inProcess: true })).release();
        const results = await Promise.allSettled(
          Array.from({ length: 6 }, (_, i) => acquireSharedLease(remote, 'job', { what: `racer ${i}`, inProcess: true })),
        );
        const won = results.filter((r): r is PromiseFulfilledResult<SharedLease> => r.status === 'fulfilled');
        assert.equal(won.length, 1, 'one racer holds the lease');
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof LockBusyError, String(r.reason));
        await won[0]!.value.release();
      });

    test('a damaged lease object, stray keys and a huge generation number neither crash a writer nor count as a holder once stale', async (t) => {
      const remote = b.make(t);
      await remote.putBytes('leases/job/000000000003.json', Buffer.from('not json {'), { ifAbsent: false });
      await remote.putBytes('leases/job/readme.txt', Buffer.from('stray'), { ifAbsent: false });
      // Fresh, a lease nobody can be named for still blocks: it may be a writer of a later release.
      await assert.rejects(
        acquireSharedLease(remote, 'job', { what: 'w' }),
        (e: unknown) => e instanceof LockBusyError && /another writer/.test(e.message),
      );
      const lease = await acquireSharedLease(remote, 'job', { what: 'w', now: later });
      assert.deepEqual(await keys(remote, 'leases/job/'), ['leases/job/000000000004.json', 'leases/job/readme.txt']);
      await lease.release();
      assert.deepEqual(
        await keys(remote, 'leases/job/'),
        ['leases/job/000000000005.json', 'leases/job/readme.txt'],
        'the stray key is not the lease’s to delete',
      );
      // A generation past twelve digits is still seen, so the next one is still created above it.
      await remote.putBytes('leases/huge/999999999999.json', Buffer.from('{}'), { ifAbsent: false });
      const huge = await acquireSharedLease(remote, 'huge', { what: 'h', now: later, staleMs: 5000, refreshMs: 100 });
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(huge.signal.aborted, false, 'it refreshes its own generation past twelve digits');
      await assert.rejects(acquireSharedLease(remote, 'huge', { what: 'second' }), /by h /);
      await huge.release();
    });
  });
}

test('on a store that lists no write times, a lease ages by the time its holder wrote in it, and a time far ahead is none', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const folder = new FolderBackend(dir);
  // The same folder, listed the way a store without Last-Modified lists it.
  const timeless: ObjectBackend = Object.assign(Object.create(folder) as FolderBackend, {
    async *listObjects(prefix: string) {
      for await (const o of folder.listObjects(prefix)) yield { key: o.key, bytes: o.bytes };
    },
  });
  const holder = await acquireSharedLease(timeless, 'job', { what: 'holder', ...dead });
  await assert.rejects(acquireSharedLease(timeless, 'job', { what: 'early' }), LockBusyError);
  const taker = await acquireSharedLease(timeless, 'job', { what: 'taker', now: later, inProcess: true });
  await taker.release();
  await holder.release();
  // A holder's clock (or a hostile lease) far ahead would never go stale: it is no time at all.
  const ahead = new Date(Date.now() + 86_400_000).toISOString();
  await folder.putBytes('leases/job/000000000009.json', Buffer.from(JSON.stringify({ token: 't', what: 'ahead', refreshedAt: ahead })), {
    ifAbsent: false,
  });
  const next = await acquireSharedLease(timeless, 'job', { what: 'next', inProcess: true });
  await next.release();
});

test('a keeper that starts late (its lease already older than it may go unrefreshed) refreshes first, and gives the lease up only if that fails', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const remote = new FolderBackend(dir);
  const prefix = leasePrefix('job');
  const owner: LockOwner = { token: 'late', pid: 1, host: 'h', what: 'late keeper', since: '' };
  await remote.putBytes(`${prefix}000000000000.json`, Buffer.from(JSON.stringify({ ...owner, refreshedAt: new Date().toISOString() })), {
    ifAbsent: true,
  });
  const lost: string[] = [];
  // Written 2.5 s before this keeper's first tick, with 3 s to go stale: a judgement first would give it up.
  const refresher = new LeaseRefresher(
    remote,
    prefix,
    0,
    owner,
    { refreshMs: 300, staleMs: 3000 },
    { lost: (r) => lost.push(r) },
    Date.now() - 2500,
  );
  await new Promise((r) => setTimeout(r, 900));
  assert.deepEqual(lost, []);
  assert.ok(
    (await keys(remote, prefix)).every((k) => k > `${prefix}000000000000.json`),
    'refreshed',
  );
  assert.equal(await refresher.release(), true);
});

test('a wait for a held lease ends when its signal aborts, with the busy error', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const remote = new FolderBackend(dir);
  const holder = await acquireSharedLease(remote, 'job', { what: 'holder' });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 100);
  const started = Date.now();
  await assert.rejects(acquireSharedLease(remote, 'job', { what: 'waiter', waitMs: 60_000, signal: ac.signal }), LockBusyError);
  assert.ok(Date.now() - started < 1500, `the wait ended ${Date.now() - started} ms after it began`);
  await holder.release();
});

test('a holder waitFor accepts is waited for past waitMs, until it lets go; any other is refused once waitMs has passed', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const remote = new FolderBackend(dir);
  // Another run's training of the same work holds the lease for its whole training: a wait bounded by waitMs (a dead
  // holder's stale time) failed the attempt, and the stage's retries ran out while it trained.
  const holder = await acquireSharedLease(remote, 'job', { what: 'run nightly-1 stage train attempt 1' });
  const otherRun = (o: LockOwner | undefined) => o?.what.startsWith('run nightly-1 ') === true;
  await assert.rejects(acquireSharedLease(remote, 'job', { what: 'refused', waitFor: (o) => !otherRun(o) }), LockBusyError);
  const told: string[] = [];
  const waiting = acquireSharedLease(remote, 'job', {
    what: 'run nightly-2 stage train attempt 1',
    waitFor: otherRun,
    onWait: (b) => void told.push(b.message),
  });
  let settled = false;
  waiting.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled && told.length === 0) await new Promise((r) => setTimeout(r, 20));
  assert.match(told[0] ?? '', /held by run nightly-1 stage train attempt 1/);
  await holder.release();
  const lease = await waiting;
  assert.deepEqual(
    (await bodies(remote, leasePrefix('job'))).filter((b) => !b.released).map((b) => b.what),
    ['run nightly-2 stage train attempt 1'],
  );
  await lease.release();
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

test('the keeper thread never keeps a process alive: one that ends without releasing exits, and a release in its last moments completes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = (name: string, release: boolean) =>
    `import { FolderBackend } from ${JSON.stringify(new URL('../src/store/folder-backend.ts', import.meta.url).href)};\n` +
    `import { acquireSharedLease } from ${JSON.stringify(new URL('../src/store/shared-lease.ts', import.meta.url).href)};\n` +
    `const l = await acquireSharedLease(new FolderBackend(${JSON.stringify(join(dir, 'store'))}), ${JSON.stringify(name)}, { what: 'child' });\n` +
    (release ? 'void l.release();\n' : '');
  for (const [name, release] of [
    ['left', false],
    ['released', true],
  ] as const) {
    const file = join(dir, `${name}.mts`);
    writeFileSync(file, script(name, release));
    const r = spawnSync(process.execPath, ['--import', 'tsx', file], { timeout: 30_000, encoding: 'utf8' });
    assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  }
  const remote = new FolderBackend(join(dir, 'store'));
  assert.deepEqual(
    (await bodies(remote, 'leases/left/')).map((g) => g.released),
    [false],
    'left to go stale',
  );
  assert.deepEqual(
    (await bodies(remote, 'leases/released/')).map((g) => g.released),
    [true],
    'released before the exit',
  );
});

test('a keeper thread that cannot run hands the lease to the holder’s own thread, which keeps refreshing it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-lease-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // A thread inherits --input-type, which Node refuses outside --eval: the keeper thread dies at start.
  const code =
    `const { FolderBackend } = await import(${JSON.stringify(new URL('../src/store/folder-backend.ts', import.meta.url).href)});` +
    `const { acquireSharedLease } = await import(${JSON.stringify(new URL('../src/store/shared-lease.ts', import.meta.url).href)});` +
    `const l = await acquireSharedLease(new FolderBackend(${JSON.stringify(dir)}), 'job', { what: 'child', refreshMs: 100, log: (m) => console.log(m) });` +
    `await new Promise((r) => setTimeout(r, 1500)); await l.release();`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { timeout: 30_000, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /keeper thread of .* stopped; refreshing the lease from this thread/);
  const [last] = await bodies(new FolderBackend(dir), 'leases/job/');
  assert.ok(last!.released, 'released');
  assert.ok(Number(last!.key.slice(0, 12)) >= 5, `refreshed several times before its release (generation ${last!.key})`);
});
