/**
 * The shared checkpoint pointer is moved by compare-and-swap (src/store/shared-checkpoints.ts, ObjectBackend.swapBytes),
 * on a shared folder and on a real SeaweedFS bucket: a writer whose lease was taken over while it was paused between
 * its lease check and its pointer write (GC, SIGSTOP) writes nothing and deletes nothing once it runs again, and the
 * new holder's pointer stays. The two writers are interleaved by a gate in that very gap, not by timing.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, promises as fsp, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { FolderBackend } from '../src/store/folder-backend.ts';
import { deleteFile, fileTag, swapFile } from '../src/store/folder-swap.ts';
import type { ObjectBackend } from '../src/store/object-backend.ts';
import { S3Backend } from '../src/store/s3-backend.ts';
import { newOwner } from '../src/util/dir-lock.ts';
import {
  claimSharedCheckpoint,
  finishSharedCheckpoint,
  PointerMovedError,
  pullCheckpoint,
  pushCheckpoint,
  readSharedFinished,
} from '../src/store/shared-checkpoints.ts';
import { collectGarbage } from '../src/store/garbage.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import { useTestS3, type TestS3 } from './helpers/seaweedfs.ts';

type T = { after: (fn: () => void | Promise<void>) => void };

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
let s3: TestS3 | undefined;
const NAME = 'c'.repeat(64);
const DAY = 86_400_000;

function checkpoint(parent: string, step: number): string {
  const dir = join(parent, `step-${String(step).padStart(8, '0')}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ step }));
  writeFileSync(join(dir, 'params.bin'), Buffer.alloc(2048 + step, step));
  return dir;
}

async function keys(remote: ObjectBackend, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const k of remote.list(prefix)) out.push(k);
  return out.sort();
}

/** A promise that waits for `open()`, and one that says it is being waited on. */
function gate() {
  let open!: () => void;
  let reached!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const waiting = new Promise<void>((r) => (reached = r));
  return {
    open,
    waiting,
    pass: async () => {
      reached();
      await opened;
    },
  };
}

const backends: { name: string; make: (dir: string) => ObjectBackend }[] = [
  { name: 'shared folder', make: (dir) => new FolderBackend(join(dir, 'shared')) },
  { name: 'S3 (SeaweedFS)', make: () => s3!.backend() },
];

useTestS3((h) => (s3 = h));

for (const b of backends) {
  describe(`the checkpoint pointer's compare-and-swap on a ${b.name}`, () => {
    function setup(t: T) {
      const dir = mkdtempSync(join(tmpdir(), 'tempered-race-'));
      t.after(() => rmSync(dir, { recursive: true, force: true }));
      const remote = b.make(dir);
      const home = (n: string) => new ArtifactStore(join(dir, n, 'store'), { remote });
      /** Attempt 1 (home 'stale'), which later loses its lease: it claims the pointer and shares step 1; 'holder' takes over. */
      const staleThenHolder = async () => {
        const stale = home('stale');
        const staleHold = await claimSharedCheckpoint(stale, NAME, 'attempt 1');
        await pushCheckpoint(stale, NAME, checkpoint(join(dir, 'stale', 'ck'), 1), undefined, undefined, staleHold);
        return { stale, staleHold, holder: home('holder') };
      };
      return { dir, remote, home, staleThenHolder };
    }

    test('swapBytes: create-only, then only from the version last seen; a stale or missing version is a conflict', async (t) => {
      const { remote } = setup(t);
      const first = await remote.swapBytes('checkpoints/k.json', Buffer.from('{"v":1}'), undefined);
      assert.notEqual(first, 'conflict');
      assert.equal(await remote.swapBytes('checkpoints/k.json', Buffer.from('{"v":9}'), undefined), 'conflict', 'exists already');
      const read = await remote.readTagged('checkpoints/k.json');
      assert.equal(read?.bytes.toString(), '{"v":1}');
      assert.equal(read?.etag, (first as { etag: string }).etag, "a read's tag is the put's");
      const second = await remote.swapBytes('checkpoints/k.json', Buffer.from('{"v":2}'), read!.etag);
      assert.notEqual(second, 'conflict');
      // The writer that still holds version 1's tag: refused, and the object is the second writer's.
      assert.equal(await remote.swapBytes('checkpoints/k.json', Buffer.from('{"v":3}'), read!.etag), 'conflict');
      assert.equal((await remote.readTagged('checkpoints/k.json'))?.bytes.toString(), '{"v":2}');
      assert.equal(await remote.swapBytes('checkpoints/gone.json', Buffer.from('x'), read!.etag), 'conflict', 'no such key');
      assert.equal(await remote.readTagged('checkpoints/gone.json'), undefined);
      assert.deepEqual(await keys(remote, 'checkpoints/'), ['checkpoints/k.json'], 'no lock or temp file listed');
    });

    test('a writer paused between its lease check and its pointer write moves nothing once the new holder claimed the pointer', async (t) => {
      const { dir, remote, home, staleThenHolder } = setup(t);
      const { stale, staleHold, holder } = await staleThenHolder();
      // Attempt 1 uploads step 2's files, passes its lease check, and pauses right there (its lease is lost meanwhile).
      const paused = gate();
      const logs: string[] = [];
      const late = pushCheckpoint(stale, NAME, checkpoint(join(dir, 'stale', 'ck'), 2), (m) => logs.push(m), paused.pass, staleHold);
      late.catch(() => {});
      await paused.waiting;
      // Attempt 2 takes the training over: it claims the pointer, resumes from step 1 and shares step 3.
      const hold = await claimSharedCheckpoint(holder, NAME, 'attempt 2');
      const there = join(dir, 'holder', 'ck');
      assert.equal(await pullCheckpoint(holder, NAME, there, undefined, hold), 1);
      await pushCheckpoint(holder, NAME, checkpoint(there, 3), undefined, undefined, hold);
      paused.open();
      await assert.rejects(late, (e: Error) => e instanceof PointerMovedError && /moved by another writer/.test(e.message));
      // The pointer is the holder's, and every file it names is there: another host resumes from step 3.
      assert.equal(await pullCheckpoint(home('next'), NAME, join(dir, 'next', 'ck')), 3);
      assert.deepEqual(
        (await keys(remote, `checkpoint-files/${NAME}/step-00000003.`)).map((k) => k.split('/').at(-1)),
        ['manifest.json', 'params.bin'],
      );
      // The holder goes on writing; the stale writer's finish is refused too and deletes nothing.
      await pushCheckpoint(holder, NAME, checkpoint(there, 4), undefined, undefined, hold);
      await assert.rejects(finishSharedCheckpoint(stale, NAME, { steps: 2 }, undefined, staleHold), PointerMovedError);
      assert.equal(await readSharedFinished(home('next2'), NAME), undefined);
      assert.equal(await pullCheckpoint(home('next2'), NAME, join(dir, 'next2', 'ck')), 4);
      await finishSharedCheckpoint(holder, NAME, { steps: 4 }, undefined, hold);
      assert.deepEqual(await readSharedFinished(home('next3'), NAME), { steps: 4 });
      assert.deepEqual(await keys(remote, `checkpoint-files/${NAME}/`), []);
    });

    test('a stale writer that uploads the step the new holder shared (other bytes) replaces none of its files', async (t) => {
      const { dir, remote, home, staleThenHolder } = setup(t);
      const { stale, staleHold, holder } = await staleThenHolder();
      const hold = await claimSharedCheckpoint(holder, NAME, 'attempt 2');
      await pushCheckpoint(holder, NAME, checkpoint(join(dir, 'holder', 'ck'), 2), undefined, undefined, hold);
      // Attempt 1, not yet told of the takeover, shares its own step 2: other bytes (another host's threads).
      const mine = checkpoint(join(dir, 'stale', 'ck'), 2);
      writeFileSync(join(mine, 'params.bin'), Buffer.alloc(2050, 99));
      await assert.rejects(pushCheckpoint(stale, NAME, mine, undefined, undefined, staleHold), PointerMovedError);
      const there = join(dir, 'next', 'ck');
      assert.equal(await pullCheckpoint(home('next'), NAME, there), 2, "the holder's step 2, whole");
      assert.deepEqual(readFileSync(join(there, 'step-00000002', 'params.bin')), Buffer.alloc(2050, 2));
      // The stale upload is litter the holder's next push deletes.
      await pushCheckpoint(holder, NAME, checkpoint(join(dir, 'holder', 'ck'), 3), undefined, undefined, hold);
      assert.deepEqual(
        (await keys(remote, `checkpoint-files/${NAME}/`)).map((k) => k.split('/')[2]!.replace(/\.[0-9a-f]{16}$/, '')),
        ['step-00000003', 'step-00000003'],
      );
    });

    test('a pointer write whose answer was lost, and that the SDK retried into a conflict, is its writer’s own', async (t) => {
      const { dir, remote } = setup(t);
      // Every swap reaches the store, and its answer is lost: the retry finds the version changed (by this very write).
      const lost: ObjectBackend = Object.assign(Object.create(remote) as ObjectBackend, {
        async swapBytes(key: string, bytes: Uint8Array, expect: string | undefined) {
          await remote.swapBytes(key, bytes, expect);
          return 'conflict' as const;
        },
      });
      const writer = new ArtifactStore(join(dir, 'w', 'store'), { remote: lost });
      const hold = await claimSharedCheckpoint(writer, NAME, 'attempt 1');
      await pushCheckpoint(writer, NAME, checkpoint(join(dir, 'w', 'ck'), 1), undefined, undefined, hold);
      await pushCheckpoint(writer, NAME, checkpoint(join(dir, 'w', 'ck'), 2), undefined, undefined, hold);
      const reader = new ArtifactStore(join(dir, 'r', 'store'), { remote });
      assert.equal(await pullCheckpoint(reader, NAME, join(dir, 'r', 'ck')), 2);
      await finishSharedCheckpoint(writer, NAME, { steps: 2 }, undefined, hold);
      assert.deepEqual(await readSharedFinished(reader, NAME), { steps: 2 });
      // Another writer's change is still a conflict: the write was not its own.
      const other = await claimSharedCheckpoint(new ArtifactStore(join(dir, 'o', 'store'), { remote }), NAME, 'attempt 2');
      assert.ok(other);
      await assert.rejects(finishSharedCheckpoint(writer, NAME, { steps: 3 }, undefined, hold), PointerMovedError);
    });

    test('a claim that lands while gc deletes the abandoned checkpoint keeps the pointer and its files: gc deletes nothing of it', async (t) => {
      const { dir, remote, home, staleThenHolder } = setup(t);
      const { holder } = await staleThenHolder();
      // gc, a horizon later, has judged it abandoned (again, just before deleting) and pauses right before the pointer goes.
      const gcStore = home('gc');
      const paused = gate();
      const collecting = collectGarbage({
        store: gcStore,
        cache: new StageCache(join(dir, 'gc', 'cache'), gcStore),
        roots: [],
        olderThanMs: 30 * DAY,
        now: Date.now() + 31 * DAY,
        collect: true,
        beforePointerDelete: paused.pass,
      });
      collecting.catch(() => {});
      await paused.waiting;
      // The work runs again: it claims the pointer, to resume from step 1.
      const hold = await claimSharedCheckpoint(holder, NAME, 'attempt 2');
      paused.open();
      const report = await collecting;
      assert.deepEqual(report.checkpoints, { abandoned: 1, abandonedBytes: report.checkpoints.abandonedBytes, deleted: 0 });
      // The claim stands, and the checkpoint it resumes from is whole.
      assert.equal((await remote.readTagged(`checkpoints/${NAME}.json`))?.etag, hold?.etag);
      assert.equal(await pullCheckpoint(holder, NAME, join(dir, 'holder', 'ck'), undefined, hold), 1);
      await pushCheckpoint(holder, NAME, checkpoint(join(dir, 'holder', 'ck'), 2), undefined, undefined, hold);
      assert.equal(await pullCheckpoint(home('next'), NAME, join(dir, 'next', 'ck')), 2);
    });

    test('a claim keeps the pointer as it was (a finished record, a checkpoint) and a pointer that was none names no checkpoint', async (t) => {
      const { dir, home } = setup(t);
      const empty = await claimSharedCheckpoint(home('a'), NAME, 'attempt 1');
      assert.equal(empty?.before, undefined);
      const logs: string[] = [];
      assert.equal(await pullCheckpoint(home('b'), NAME, join(dir, 'b', 'ck'), (m) => logs.push(m)), undefined);
      assert.deepEqual(logs, [], 'a bare claim is no damaged pointer');
      await finishSharedCheckpoint(home('a'), NAME, { steps: 7 }, undefined, empty);
      const again = await claimSharedCheckpoint(home('c'), NAME, 'run 2');
      assert.deepEqual(await readSharedFinished(home('d'), NAME), { steps: 7 }, 'still the finished record');
      await pushCheckpoint(home('c'), NAME, checkpoint(join(dir, 'c', 'ck'), 1), undefined, undefined, again);
      assert.equal(await pullCheckpoint(home('e'), NAME, join(dir, 'e', 'ck')), 1);
      await claimSharedCheckpoint(home('f'), NAME, 'run 3');
      assert.equal(await pullCheckpoint(home('g'), NAME, join(dir, 'g', 'ck')), 1, 'a claimed checkpoint resumes');
    });
  });
}

test('SeaweedFS itself refuses a PutObject whose If-Match is not the object’s ETag (412)', async () => {
  const backend = s3!.backend();
  await backend.swapBytes('checkpoints/raw.json', Buffer.from('one'), undefined);
  const { client, sdk } = await backend.connect();
  const { bucket, prefix } = (backend as S3Backend).location;
  const put = (IfMatch: string) =>
    client.send(new sdk.PutObjectCommand({ Bucket: bucket, Key: `${prefix}/checkpoints/raw.json`, Body: 'two', IfMatch }));
  await assert.rejects(put('"0123456789abcdef0123456789abcdef"'), (e: { $metadata?: { httpStatusCode?: number } }) => {
    assert.equal(e.$metadata?.httpStatusCode, 412);
    return true;
  });
  assert.equal((await backend.readTagged('checkpoints/raw.json'))?.bytes.toString(), 'one');
  await put((await backend.readTagged('checkpoints/raw.json'))!.etag);
  assert.equal((await backend.readTagged('checkpoints/raw.json'))?.bytes.toString(), 'two');
});

test('SeaweedFS itself refuses a DeleteObject whose If-Match is not the object’s ETag (412), and deletes on the right one', async () => {
  const backend = s3!.backend();
  await backend.swapBytes('checkpoints/raw.json', Buffer.from('one'), undefined);
  const { client, sdk } = await backend.connect();
  const { bucket, prefix } = (backend as S3Backend).location;
  const del = (IfMatch: string) =>
    client.send(new sdk.DeleteObjectCommand({ Bucket: bucket, Key: `${prefix}/checkpoints/raw.json`, IfMatch }));
  await assert.rejects(del('"0123456789abcdef0123456789abcdef"'), (e: { $metadata?: { httpStatusCode?: number } }) => {
    assert.equal(e.$metadata?.httpStatusCode, 412);
    return true;
  });
  assert.equal((await backend.readTagged('checkpoints/raw.json'))?.bytes.toString(), 'one');
  await del((await backend.readTagged('checkpoints/raw.json'))!.etag);
  assert.equal(await backend.readTagged('checkpoints/raw.json'), undefined);
});

describe('the shared folder’s swap lock', () => {
  function folder(t: T) {
    const dir = mkdtempSync(join(tmpdir(), 'tempered-swap-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    return join(dir, 'pointer.json');
  }

  test('a swapper paused under its lock, which another swapper takes over, writes nothing when it runs again', async (t) => {
    const file = folder(t);
    writeFileSync(file, 'v1');
    const paused = gate();
    const stale = swapFile(file, Buffer.from('stale'), fileTag(Buffer.from('v1')), { beforeRename: paused.pass });
    await paused.waiting;
    // It checked the version and holds the lock; a swapper that finds the lock stale (here: at once) takes it over.
    assert.notEqual(await swapFile(file, Buffer.from('new'), fileTag(Buffer.from('v1')), { staleMs: 0 }), 'conflict');
    paused.open();
    assert.equal(await stale, 'conflict', 'its rename from the lock folder it lost finds nothing; it looks again');
    assert.equal(readFileSync(file, 'utf8'), 'new');
    assert.deepEqual(readdirSync(dirname(file)), ['pointer.json'], 'no lock or temp left');
  });

  test('a deleter paused under its lock, which another swapper takes over, deletes nothing when it runs again', async (t) => {
    const file = folder(t);
    writeFileSync(file, 'v1');
    const v1 = fileTag(Buffer.from('v1'));
    const paused = gate();
    const stale = deleteFile(file, v1, { beforeRename: paused.pass });
    await paused.waiting;
    // It found v1 under its lock; a swapper that finds the lock stale (here: at once) takes it over and writes.
    assert.notEqual(await swapFile(file, Buffer.from('new'), v1, { staleMs: 0 }), 'conflict');
    paused.open();
    assert.equal(await stale, 'conflict', 'its rename into the lock folder it lost finds no folder; it looks again');
    assert.equal(readFileSync(file, 'utf8'), 'new');
    assert.deepEqual(readdirSync(dirname(file)), ['pointer.json'], 'no lock or temp left');
    assert.equal(await deleteFile(file, fileTag(Buffer.from('new'))), 'deleted');
    assert.deepEqual(readdirSync(dirname(file)), [], 'the file went with the lock');
  });

  test('a swapper paused just after it took the lock writes nothing through the lock of the swapper that took it over', async (t) => {
    const file = folder(t);
    writeFileSync(file, 'v1');
    const v1 = fileTag(Buffer.from('v1'));
    const first = gate();
    let settled = false;
    const stale = swapFile(file, Buffer.from('stale'), v1, { locked: first.pass }).finally(() => (settled = true));
    await first.waiting;
    // Its lock is taken over (found stale: here at once) by a swapper that has checked v1 too and holds the new lock,
    // paused before its rename.
    const second = gate();
    const taker = swapFile(file, Buffer.from('new'), v1, { staleMs: 0, beforeRename: second.pass });
    await second.waiting;
    first.open();
    // The first goes on while the new lock is held, until it has either swapped or is waiting to take the lock again
    // (its next try's folder, `<file>.tempered-swap.<token>.new`, is there).
    while (!settled && !readdirSync(dirname(file)).some((n) => /\.tempered-swap\.[0-9a-f]+\.new$/.test(n)))
      await new Promise((r) => setImmediate(r));
    second.open();
    assert.notEqual(await taker, 'conflict');
    assert.equal(await stale, 'conflict', 'its version check was under the lock it lost: it looks again and finds "new"');
    assert.equal(readFileSync(file, 'utf8'), 'new', 'the stale bytes never landed');
    assert.deepEqual(readdirSync(dirname(file)), ['pointer.json'], 'no lock or temp left');
  });

  test('a swap that takes over no lock lists no folder: what crashed swappers left beside another lock, or its own, stays', async (t) => {
    const file = folder(t);
    writeFileSync(file, 'v1');
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => dead.once('exit', r));
    // A folder a crashed swapper built for this pointer's lock, and one for another pointer's in the same folder.
    const mine = `${file}.tempered-swap.0123456789abcdef.new`;
    const theirs = join(dirname(file), 'other.json.tempered-swap.0123456789abcdef.new');
    for (const f of [mine, theirs]) {
      mkdirSync(f);
      writeFileSync(`${f}/owner`, JSON.stringify({ ...newOwner('swap', Date.now()), pid: dead.pid, pidStart: undefined }));
    }
    // The folder holds one pointer per training, read over NFS: the readdir calls the swaps make, counted as they run.
    const listed: string[] = [];
    const readdir = fsp.readdir;
    fsp.readdir = ((path: string, ...rest: never[]) => {
      listed.push(String(path));
      return (readdir as (...a: unknown[]) => unknown)(path, ...rest);
    }) as typeof fsp.readdir;
    try {
      let tag = fileTag(Buffer.from('v1'));
      for (let i = 0; i < 3; i++) {
        const r = await swapFile(file, Buffer.from(`v${i + 2}`), tag);
        assert.notEqual(r, 'conflict');
        tag = (r as { etag: string }).etag;
      }
    } finally {
      fsp.readdir = readdir;
    }
    assert.deepEqual(listed, [], 'no folder listed');
    assert.equal(readFileSync(file, 'utf8'), 'v4');
    // (store gc collects them once older than its horizon: tests/store-gc-uploads.test.ts.)
    assert.deepEqual(readdirSync(dirname(file)).sort(), [basename(theirs), 'pointer.json', basename(mine)].sort());
  });

  test('what crashed swappers left beside the lock (a folder built for it, an aside not yet deleted) goes with the next takeover of a dead holder’s lock', async (t) => {
    const file = folder(t);
    writeFileSync(file, 'v1');
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => dead.once('exit', r));
    // A holder killed with the lock (a host that died, with the swappers that waited on it).
    mkdirSync(`${file}.tempered-swap`);
    writeFileSync(`${file}.tempered-swap/owner`, JSON.stringify({ ...newOwner('swap', Date.now()), pid: dead.pid, pidStart: undefined }));
    // A swapper killed while it waited for the lock: its folder, with its owner and its new bytes.
    const built = `${file}.tempered-swap.0123456789abcdef.new`;
    mkdirSync(built);
    writeFileSync(`${built}/owner`, JSON.stringify({ ...newOwner('swap', Date.now()), pid: dead.pid, pidStart: undefined }));
    writeFileSync(`${built}/0123456789abcdef.new`, 'lost');
    // A taker killed between its rename of a lock aside and its delete of it.
    const aside = `${file}.tempered-swap.0a1b2c3d4e5f.stale`;
    mkdirSync(aside);
    writeFileSync(`${aside}/owner`, JSON.stringify(newOwner('swap', Date.now())));
    // (An aside is judged by its age alone: here any age is old enough.)
    assert.notEqual(await swapFile(file, Buffer.from('v2'), fileTag(Buffer.from('v1')), { staleMs: 0 }), 'conflict');
    assert.deepEqual(readdirSync(dirname(file)), ['pointer.json']);
  });

  test('a lock left by a dead process is taken over at once; swaps of several processes lose no update', async (t) => {
    const file = folder(t);
    // A lock whose holder's pid is gone (a crash between mkdir and rename).
    const dead = spawn(process.execPath, ['-e', '']);
    await new Promise((r) => dead.once('exit', r));
    mkdirSync(`${file}.tempered-swap`);
    writeFileSync(`${file}.tempered-swap/owner`, JSON.stringify({ ...newOwner('swap', Date.now()), pid: dead.pid, pidStart: undefined }));
    assert.notEqual(await swapFile(file, Buffer.from('0'), undefined), 'conflict');
    // Four processes each add 1, 15 times, by read and compare-and-swap: every increment lands.
    const script = `
      import { readFileSync } from 'node:fs';
      import { fileTag, swapFile } from ${JSON.stringify(join(ROOT, 'src/store/folder-swap.ts'))};
      const file = ${JSON.stringify(file)};
      for (let i = 0; i < 15; i++)
        for (;;) {
          const now = readFileSync(file);
          if ((await swapFile(file, Buffer.from(String(Number(now) + 1)), fileTag(now))) !== 'conflict') break;
        }
    `;
    const runs = Array.from({ length: 4 }, () => {
      const child = spawn('nice', [process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {
        cwd: ROOT,
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      return new Promise<number | null>((r) => child.once('exit', r));
    });
    assert.deepEqual(await Promise.all(runs), [0, 0, 0, 0]);
    assert.equal(readFileSync(file, 'utf8'), '60');
    assert.deepEqual(readdirSync(dirname(file)), ['pointer.json']);
  });
});
