/**
 * The store on a full disk (a small tmpfs): a put that does not fit fails with a DiskFullError that
 * names the store and what the put needed, leaves nothing in `tmp/` or `sha256/`, and succeeds once
 * space is freed; a stage-cache record that does not fit names its folder and size and leaves no partial file; a training point that
 * does not fit leaves no torn line and is reported once, not once a step.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskFullError } from '../errors.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../util/tmpfs.testing.ts';
import { ArtifactStore } from './artifact-store.ts';
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
