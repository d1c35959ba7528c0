/**
 * gc aborts the unfinished uploads (and a shared folder's stray temp files) under tempered's own prefixes only
 * (garbage.ts UPLOAD_PREFIXES, from key-layout.ts): every key the store's writers put must lie under one of them, or a
 * writer killed mid-upload under a new prefix leaves its parts billed for good. Each kind of write, for real, on a
 * shared folder.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArtifactStore, objectKey } from './artifact-store.ts';
import { FolderBackend } from './folder-backend.ts';
import { UPLOAD_PREFIXES } from './garbage.ts';
import { storeInstanceId } from './instance-id.ts';
import { ObjectStoreRecords } from './shared-records.ts';
import { checkpointLeaseName, claimSharedCheckpoint, finishSharedCheckpoint, pushCheckpoint } from './shared-checkpoints.ts';
import { acquireSharedLease } from './shared-lease.ts';

test('every key the store writes lies under a prefix whose unfinished uploads gc aborts, and each prefix is written', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-layout-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const remote = new FolderBackend(join(dir, 'shared'));
  // Every put of a stored object marks it stored again: the `touched/` mark.
  const store = new ArtifactStore(join(dir, 'home'), { remote, freshenAfterMs: 0 });
  const ref = await store.putBytes('an artifact', { mediaType: 'text/plain' });
  await store.putBytes('an artifact', { mediaType: 'text/plain' });
  const damaged = await store.putBytes('a damaged artifact', { mediaType: 'text/plain' });
  await remote.quarantine(objectKey(damaged.sha256));
  await new ObjectStoreRecords(remote).put('ab'.repeat(32), JSON.stringify({ outputs: { out: ref } }));
  await storeInstanceId(remote);
  const name = 'f'.repeat(64);
  const lease = await acquireSharedLease(remote, checkpointLeaseName(name), { what: 'layout test', inProcess: true });
  const hold = await claimSharedCheckpoint(store, name, 'layout test');
  const ck = join(dir, 'ck', 'step-00000001');
  mkdirSync(ck, { recursive: true });
  writeFileSync(join(ck, 'manifest.json'), '{"step":1}');
  await pushCheckpoint(store, name, ck, undefined, () => lease.assertHeld(), hold);
  const written: string[] = [];
  for await (const key of remote.list('')) written.push(key);
  await finishSharedCheckpoint(store, name, { steps: 1 }, undefined, hold);
  await lease.release();
  for await (const key of remote.list('')) written.push(key);

  const outside = written.filter((k) => !UPLOAD_PREFIXES.some((p) => k.startsWith(p)));
  assert.deepEqual(outside, [], 'keys under no prefix gc knows as tempered’s');
  const unused = UPLOAD_PREFIXES.filter((p) => !written.some((k) => k.startsWith(p)));
  assert.deepEqual(unused, [], 'prefixes no write of this test reached: add the writer here');
});
