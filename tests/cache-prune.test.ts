/**
 * A worker's cache of the shared store stays within its limit (ArtifactStore.pruneCache,
 * src/store/cache-pruner.ts), on a real SeaweedFS bucket: least recently used copies go first, a
 * recently used one stays, an object the bucket lost is stored again before its copy goes, and a
 * pruned copy comes back verified when read.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore, objectKey } from '../src/store/artifact-store.ts';
import { cacheLimitBytes, startCachePruner } from '../src/store/cache-pruner.ts';
import { InputError } from '../src/errors.ts';
import type { ArtifactRef } from '../src/types.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { runCliInProcess } from './helpers/cli.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

let s3: TestS3;
useTestS3((h) => (s3 = h));

type T = { after: (fn: () => void) => void };
const HOUR = 3600_000;

/** A store with five 1000-byte objects, used 5, 4, 3, 2 and 1 hours ago. */
async function fiveObjects(t: T, remote = true) {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-prune-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const url = s3.freshUrl();
  const store = new ArtifactStore(join(dir, 'store'), { remote: remote ? s3.backend(url) : undefined });
  const refs: ArtifactRef[] = [];
  for (let i = 0; i < 5; i++) {
    const ref = await store.putBytes(Buffer.alloc(1000, i), { mediaType: 'application/octet-stream' });
    const when = new Date(Date.now() - (5 - i) * HOUR);
    utimesSync(local(store, ref), when, when);
    refs.push(ref);
  }
  return { dir, url, store, refs };
}

const local = (store: ArtifactStore, ref: ArtifactRef) => join(store.root, 'sha256', ref.sha256.slice(0, 2), ref.sha256);

describe('pruning a worker cache', () => {
  test('least recently used copies go first, down to the limit; the bucket keeps them all and a read brings one back', async (t) => {
    const { store, refs, url } = await fiveObjects(t);
    const r = await store.pruneCache({ maxBytes: 2500, minIdleMs: 30 * 60_000 });
    assert.deepEqual(r, { removed: 3, freedBytes: 3000, keptBytes: 2000, quarantined: 0 });
    assert.deepEqual(
      refs.map((ref) => existsSync(local(store, ref))),
      [false, false, false, true, true],
    );
    const bucket = s3.backend(url);
    for (const ref of refs) assert.equal((await bucket.head(objectKey(ref.sha256)))?.bytes, 1000);
    // A pruned copy is fetched again, verified, and counts as just used.
    const path = await store.verify(refs[0]!);
    assert.equal(statSync(path).size, 1000);
    assert.ok(Date.now() - statSync(path).atimeMs < 60_000);
  });

  test('reading a copy marks it used, so the copies in use stay and idle ones go', async (t) => {
    const { store, refs } = await fiveObjects(t);
    await store.verify(refs[0]!);
    await store.pruneCache({ maxBytes: 2500, minIdleMs: 30 * 60_000 });
    assert.deepEqual(
      refs.map((ref) => existsSync(local(store, ref))),
      [true, false, false, false, true],
    );
  });

  test('a copy used within the idle time stays even above the limit', async (t) => {
    const { store, refs } = await fiveObjects(t);
    const r = await store.pruneCache({ maxBytes: 0, minIdleMs: 2.5 * HOUR });
    assert.equal(r.removed, 3);
    assert.equal(r.keptBytes, 2000, 'the two used in the last 2.5 hours are kept');
  });

  test('an object the bucket lost is stored again before its copy goes; a damaged last copy is quarantined, not uploaded', async (t) => {
    const { store, refs, url } = await fiveObjects(t);
    const bucket = s3.backend(url);
    await bucket.delete(objectKey(refs[0]!.sha256));
    await bucket.delete(objectKey(refs[1]!.sha256));
    const damaged = local(store, refs[1]!);
    const { atime, mtime } = statSync(damaged);
    chmodSync(damaged, 0o644);
    writeFileSync(damaged, Buffer.alloc(1000, 9));
    utimesSync(damaged, atime, mtime);
    await store.pruneCache({ maxBytes: 0, minIdleMs: 0 });
    assert.equal((await bucket.head(objectKey(refs[0]!.sha256)))?.bytes, 1000, 'the lost object is in the bucket again');
    assert.equal(await bucket.head(objectKey(refs[1]!.sha256)), undefined, 'damaged bytes are not uploaded under the name');
    assert.equal(existsSync(join(store.root, 'quarantine')), true);
    for (const ref of refs) assert.equal(existsSync(local(store, ref)), false);
    assert.deepEqual(readFileSync(await store.verify(refs[0]!)), Buffer.alloc(1000, 0), 'the copy stored again comes back whole');
  });

  test("a stage's store hands out hard links to its inputs: pruning the cached copy leaves the stage its file", async (t) => {
    const { dir, store, refs } = await fiveObjects(t);
    const stageStore = store.pinningInto(join(dir, 'stage-scratch', '.inputs'));
    const path = await stageStore.verify(refs[0]!);
    assert.equal(path, join(dir, 'stage-scratch', '.inputs', refs[0]!.sha256));
    assert.equal(await stageStore.localPath(refs[0]!.uri), path, 'one link per object');
    // Hours later the copy is idle again and goes; the stage still reads the bytes it was given.
    const when = new Date(Date.now() - 6 * HOUR);
    utimesSync(local(store, refs[0]!), when, when);
    await store.pruneCache({ maxBytes: 0, minIdleMs: HOUR });
    assert.equal(existsSync(local(store, refs[0]!)), false);
    assert.deepEqual(readFileSync(path), Buffer.alloc(1000, 0));
    // Without a shared store nothing is pruned, so nothing is linked.
    const plain = new ArtifactStore(join(dir, 'plain'));
    assert.equal(plain.pinningInto(join(dir, 'x')), plain);
  });

  test('a copy read while the pruner waits on the store stays: it is looked at again before it goes', async (t) => {
    const { store, refs, url } = await fiveObjects(t);
    const bucket = s3.backend(url);
    const head = bucket.head.bind(bucket);
    const failing = Object.create(bucket) as typeof bucket;
    let handedOut: string | undefined;
    failing.head = async (key: string) => {
      if (key === objectKey(refs[0]!.sha256)) handedOut = await store.verify(refs[0]!);
      return head(key);
    };
    const racing = new ArtifactStore(store.root, { remote: failing });
    const r = await racing.pruneCache({ maxBytes: 0, minIdleMs: HOUR / 2 });
    assert.equal(handedOut, local(store, refs[0]!));
    assert.equal(existsSync(handedOut!), true, 'the copy a reader was just given is kept');
    assert.equal(r.removed, 4);
  });

  test('without a shared store the folder is the store: nothing is deleted', async (t) => {
    const { store, refs } = await fiveObjects(t, false);
    assert.deepEqual(await store.pruneCache({ maxBytes: 0, minIdleMs: 0 }), { removed: 0, freedBytes: 0, keptBytes: 5000, quarantined: 0 });
    for (const ref of refs) assert.ok(existsSync(local(store, ref)));
  });

  test('the pruner runs at once and then on its interval, reports what it freed, and stop waits for it', async (t) => {
    const { store, refs } = await fiveObjects(t);
    const logs: string[] = [];
    // Rounds are waited for by what they do, not by the clock: a slow machine only waits longer.
    const until = async (done: () => boolean) => {
      while (!done()) await new Promise((r) => setTimeout(r, 10));
    };
    const pruner = startCachePruner(store, 4500, (m) => logs.push(m), { everyMs: 20, minIdleMs: 0 });
    await until(() => logs.length >= 1);
    // Another object arrives; the next round prunes it back under the limit.
    const when = new Date(Date.now() - HOUR);
    utimesSync(local(store, refs[4]!), when, when);
    await store.putBytes(Buffer.alloc(1000, 7), { mediaType: 'application/octet-stream' });
    await until(() => logs.length >= 2);
    await pruner.stop();
    assert.match(logs[0]!, /^cache: removed 1 local copies \(0\.00 GB\) of objects in s3:\/\/.*; 0\.00 GB kept, limit 0\.00 GB$/);
    assert.equal(existsSync(local(store, refs[0]!)), false);
    assert.equal(existsSync(local(store, refs[1]!)), false, 'the second round took the next least recently used');
  });

  test('TEMPERED_CACHE_MAX_GB sets the limit; unset, half the disk; anything else is an input error naming it', () => {
    assert.equal(cacheLimitBytes(tmpdir(), { TEMPERED_CACHE_MAX_GB: '2.5' }), 2_500_000_000);
    assert.ok(cacheLimitBytes(tmpdir(), {}) > 0);
    for (const bad of ['0', '-1', 'lots', 'Infinity'])
      assert.throws(
        () => cacheLimitBytes(tmpdir(), { TEMPERED_CACHE_MAX_GB: bad }),
        (e: unknown) => e instanceof InputError && /TEMPERED_CACHE_MAX_GB/.test(e.message),
      );
  });

  test('tempered cache prune does one round by hand; without a shared store it refuses, naming why', async (t) => {
    const home = mkdtempSync(join(tmpdir(), 'tempered-prune-cli-'));
    t.after(() => rmSync(home, { recursive: true, force: true }));
    const shared = join(home, 'shared');
    const store = new ArtifactStore(join(home, 'store'), { remote: new FolderBackend(shared) });
    const old = new Date(Date.now() - HOUR / 2);
    for (let i = 0; i < 3; i++) {
      const ref = await store.putBytes(Buffer.alloc(100, i), { mediaType: 'application/octet-stream' });
      utimesSync(local(store, ref), old, old);
    }
    const env = { TEMPERED_HOME: home, TEMPERED_STORE: shared };
    const kept = await runCliInProcess(['cache', 'prune', '--max-gb', '0', '--json'], env);
    assert.equal(kept.code, 0, kept.stderr);
    assert.equal((JSON.parse(kept.stdout) as { removed: number }).removed, 0, 'used within the default hour: kept');
    const r = await runCliInProcess(['cache', 'prune', '--max-gb', '0', '--idle-minutes', '10', '--json'], env);
    assert.deepEqual(JSON.parse(r.stdout), { removed: 3, freedBytes: 300, keptBytes: 0, quarantined: 0, maxBytes: 0 });
    const bad = await runCliInProcess(['cache', 'prune', '--max-gb', 'lots'], env);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--max-gb takes a number/);
    const none = await runCliInProcess(['cache', 'prune'], { TEMPERED_HOME: home, TEMPERED_STORE: '' });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /TEMPERED_STORE is not set, so .* is the store itself/);
  });
});
