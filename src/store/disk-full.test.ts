/**
 * The store on a full disk (a small tmpfs): a put that does not fit fails with a DiskFullError that
 * names the store and what the put needed, leaves nothing in `tmp/` or `sha256/`, and succeeds once
 * space is freed; a stage-cache record that does not fit names its folder and size and leaves no partial file; a training point that
 * does not fit leaves no torn line and is reported once, not once a step; a tree checked out for serving and an
 * object fetched from the shared store that do not fit name their folder and size, and leave nothing behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DiskFullError } from '../errors.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../util/tmpfs.testing.ts';
import { ArtifactStore } from './artifact-store.ts';
import { FolderBackend } from './folder-backend.ts';
import { StageCache } from './stage-cache.ts';
import { FilePoints } from './progress-points.ts';

const files = (dir: string) => readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());

test(
  'a put that does not fit: DiskFullError naming the store and the size, nothing left behind, and it fits once space is freed',
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 512);
    const store = new ArtifactStore(join(disk, 'store'));
    const filler = fillDisk(disk, 64 * 1024);
    const big = Buffer.alloc(200 * 1024, 7);
    const err = await store.putBytes(big, { mediaType: 'application/octet-stream' }).then(
      () => assert.fail('the put fitted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DiskFullError, String(err));
    assert.equal(err.path, store.root);
    assert.equal(err.neededBytes, big.length);
    assert.match(
      err.message,
      new RegExp(`^no space left on the disk that holds ${store.root} \\(.* free of .*; this write needed 200\\.0 KiB\\)`),
    );
    assert.match(err.hint, /tempered resume/);
    // The partial temp file held the space the disk lacked.
    assert.deepEqual(files(join(store.root, 'tmp')), []);
    assert.deepEqual(files(join(store.root, 'sha256')), []);

    // The same for a file copied in.
    const src = join(disk, 'src.bin');
    rmSync(filler);
    writeFileSync(src, big);
    const filler2 = fillDisk(disk, 64 * 1024);
    const err2 = await store.putFile(src, { mediaType: 'application/octet-stream' }).then(
      () => assert.fail('the put fitted'),
      (e: unknown) => e,
    );
    assert.ok(err2 instanceof DiskFullError, String(err2));
    assert.equal(err2.neededBytes, big.length);
    assert.deepEqual(files(join(store.root, 'tmp')), []);
    assert.deepEqual(files(join(store.root, 'sha256')), []);

    rmSync(filler2);
    const ref = await store.putFile(src, { mediaType: 'application/octet-stream' });
    assert.equal(ref.bytes, big.length);
    assert.equal(await store.verify(ref), store.pathOf(ref));
    assert.deepEqual(files(join(store.root, 'tmp')), []);
  },
);

test(
  'a stage-cache record that does not fit: DiskFullError naming the cache folder and the size, no partial record behind',
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 256);
    const cache = new StageCache(join(disk, 'cache'), new ArtifactStore(join(disk, 'store')));
    const key = 'a'.repeat(64);
    const hex = 'b'.repeat(64);
    fillDisk(disk, 8 * 1024);
    await assert.rejects(
      cache.put({
        key,
        kind: 'probe',
        // A large record (a stage with many outputs), larger than the space left.
        outputs: {
          report: { uri: `artifact://sha256/${hex}`, sha256: hex, bytes: 1, mediaType: 'x', schema: { pad: 'z'.repeat(64 * 1024) } },
        },
        producedBy: { runId: 'r', stageId: 's' },
        createdAt: new Date().toISOString(),
      }),
      (e: unknown) =>
        e instanceof DiskFullError &&
        e.path === join(disk, 'cache') &&
        e.neededBytes !== undefined &&
        e.neededBytes > 64 * 1024 &&
        (e.cause as NodeJS.ErrnoException).code === 'ENOSPC',
    );
    assert.deepEqual(
      files(join(disk, 'cache')).map((e) => e.name),
      [],
    );
  },
);

test(
  'training points on a full disk: no torn line to spoil the next point, one report until points are written again',
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 256);
    const reports: unknown[] = [];
    const points = new FilePoints(join(disk, 'progress'), (e) => reports.push(e));
    // Points of 2.5 KiB (a stage reporting many metrics): the file's one page keeps room for part of another.
    const point = (step: number) => ({
      attempt: 1,
      t: step,
      metrics: { step, ...Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`metric_${i}`, 0.123456789 + i])) },
    });
    points.append('run', 'exec', 'train', point(1));
    const filler = fillDisk(disk);
    for (let step = 2; step <= 4; step++) points.append('run', 'exec', 'train', point(step));
    assert.equal(reports.length, 1, 'told once');
    assert.equal((reports[0] as NodeJS.ErrnoException).code, 'ENOSPC');
    rmSync(filler);
    points.append('run', 'exec', 'train', point(5));
    const back = await points.read('run', 'exec', 'train');
    assert.deepEqual(
      back.points.map((p) => p.metrics.step),
      [1, 5],
    );
    fillDisk(disk);
    for (let step = 6; step <= 9; step++) points.append('run', 'exec', 'train', point(step));
    assert.equal(reports.length, 2, 'told again once points were written in between');
  },
);

// `tempered serve` checks the version it loads out of the store into TEMPERED_HOME/serving: a full disk there came out
// of the hot swap as a bare "ENOSPC: no space left on device, copyfile" naming a temp folder already removed.
test(
  'a tree checkout that does not fit: DiskFullError naming the folder it was checked out into and the size of the tree, no half copy left',
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 512);
    const other = mkdtempSync(join(tmpdir(), 'tempered-checkout-'));
    t.after(() => rmSync(other, { recursive: true, force: true }));
    const store = new ArtifactStore(join(other, 'store'));
    const model = join(other, 'model');
    mkdirSync(model);
    writeFileSync(join(model, 'model.onnx'), Buffer.alloc(300 * 1024, 1));
    writeFileSync(join(model, 'tokenizer.json'), Buffer.alloc(100 * 1024, 2));
    const tree = await store.putTree(model);
    const serving = join(disk, 'serving');
    const filler = fillDisk(disk, 200 * 1024);
    const err = await store.checkoutTree(tree, serving).then(
      () => assert.fail('the checkout fitted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DiskFullError, String(err));
    assert.equal(err.path, serving);
    assert.equal(err.neededBytes, 400 * 1024);
    assert.match(
      err.message,
      new RegExp(`^no space left on the disk that holds ${serving} \\(.* free of 512\\.0 KiB; this write needed 400\\.0 KiB\\): ENOSPC`),
    );
    assert.ok(err.freeBytes! >= 100 * 1024, `the half copy's space is counted free again (${err.freeBytes})`);
    assert.deepEqual(readdirSync(serving), [], 'no half copy left');
    rmSync(filler);
    const dir = await store.checkoutTree(tree, serving);
    assert.ok(existsSync(join(dir, 'model.onnx')));
  },
);

test(
  "an object fetched from the shared store that does not fit: DiskFullError naming the local store and the object's size, at once, nothing left in tmp/",
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 512);
    const other = mkdtempSync(join(tmpdir(), 'tempered-fetch-'));
    t.after(() => rmSync(other, { recursive: true, force: true }));
    const remote = new FolderBackend(join(other, 'shared'));
    const ref = await new ArtifactStore(join(other, 'store'), { remote }).putBytes(Buffer.alloc(300 * 1024, 3), {
      mediaType: 'application/octet-stream',
    });
    const local = new ArtifactStore(join(disk, 'store'), { remote });
    const filler = fillDisk(disk, 64 * 1024);
    const started = Date.now();
    const err = await local.verify(ref).then(
      () => assert.fail('the fetch fitted'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof DiskFullError, String(err));
    assert.equal(err.path, local.root);
    assert.equal(err.neededBytes, 300 * 1024);
    assert.match(err.message, /; this write needed 300\.0 KiB\): ENOSPC/);
    assert.ok(Date.now() - started < 200, 'not downloaded again twice, 200 ms and 400 ms apart, to fill the disk again');
    assert.deepEqual(files(join(local.root, 'tmp')), []);
    rmSync(filler);
    assert.equal(await local.verify(ref), local.pathOf(ref));
  },
);
