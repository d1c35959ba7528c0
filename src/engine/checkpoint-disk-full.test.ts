/**
 * A checkpoint written to a full disk (a small tmpfs): the write fails, the previous checkpoint stays
 * the newest and loads as it was, the half-written folder is gone at once (its writer lives on: a
 * retry in the same worker), and once space is freed the next checkpoint is written.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DiskFullError } from '../errors.ts';
import { diskFullError } from '../util/disk-full.ts';
import { latestCheckpoint, loadCheckpoint, saveCheckpoint, type CheckpointManifest } from './checkpoint.ts';
import { Rng } from './prng.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from '../util/tmpfs.testing.ts';

const N = 32 * 1024;
const manifest = (step: number): CheckpointManifest => ({
  format: 'tempered-checkpoint/1',
  step,
  epoch: 0,
  position: step,
  rng: new Rng(1).state(),
  configHash: 'abc',
  evalsWithoutImprovement: 0,
  shapes: { w: [N], 'w::m': [N] },
});
const tensors = (step: number) => ({
  params: new Map([['w', new Float32Array(N).fill(step)]]),
  state: new Map([['w::m', new Float32Array(N).fill(-step)]]),
});

test(
  'a checkpoint that does not fit: named as a full disk of its folder, the previous one stays intact and newest, no partial folder is left, and the next fits once space is freed',
  { skip: NO_TMPFS },
  (t) => {
    const disk = mountTmpfs(t, 1024);
    const dir = join(disk, 'checkpoints');
    saveCheckpoint(join(dir, 'step-1'), { manifest: manifest(1), ...tensors(1) });
    // Room for the weights (128 KiB) but not the optimizer state after them.
    const filler = fillDisk(disk, 200 * 1024);
    // Another disk the stage writes to (TMPDIR's), with less free than the full one has once the
    // half-written checkpoint is gone: that one was named as the full disk.
    const other = mountTmpfs(t, 512);
    writeFileSync(join(other, 'taken'), Buffer.alloc(400 * 1024));
    let err: unknown;
    assert.throws(
      () => {
        try {
          saveCheckpoint(join(dir, 'step-2'), { manifest: manifest(2), ...tensors(2) });
        } catch (e) {
          err = e;
          throw e;
        }
      },
      (e: unknown) => e instanceof DiskFullError && e.path === dir && (e.cause as NodeJS.ErrnoException).code === 'ENOSPC',
    );
    // As the stage adapter lists the places a stage writes: the checkpoint's own error is kept.
    assert.equal(diskFullError(err, [disk, dir, other]).path, dir);
    assert.match(
      (err as Error).message,
      /^no space left on the disk that holds .*\/checkpoints \(\d+\.\d KiB free of 1\.0 MiB; this write needed 256\.\d KiB\)/,
    );
    assert.deepEqual(readdirSync(dir), ['step-1'], 'the half-written step-2 folder is removed');
    assert.equal(latestCheckpoint(dir), join(dir, 'step-1'));
    const back = loadCheckpoint(join(dir, 'step-1'));
    assert.equal(back.manifest.step, 1);
    assert.deepEqual(back.params.get('w'), tensors(1).params.get('w'));
    assert.deepEqual(back.state.get('w::m'), tensors(1).state.get('w::m'));

    rmSync(filler);
    saveCheckpoint(join(dir, 'step-2'), { manifest: manifest(2), ...tensors(2) });
    assert.equal(latestCheckpoint(dir), join(dir, 'step-2'));
    assert.deepEqual(loadCheckpoint(join(dir, 'step-2')).state.get('w::m'), tensors(2).state.get('w::m'));
    // What the failed write said it needed is what the checkpoint takes: its files as written (the tensors' 256 KiB,
    // their headers, the manifest).
    const written = readdirSync(join(dir, 'step-2')).reduce((n, f) => n + statSync(join(dir, 'step-2', f)).size, 0);
    assert.equal((err as DiskFullError).neededBytes, written);
  },
);
