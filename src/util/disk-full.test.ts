/**
 * Telling a full disk (a small tmpfs) from other failures and naming the folder whose disk is full;
 * and the SQLite audit log on a full disk: SQLITE_FULL, told as a full disk, and a log that still
 * verifies, and takes records, once space is freed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openAudit } from '../audit/log.ts';
import { DiskFullError } from '../errors.ts';
import { diskFullError, isDiskFull, lowSpaceNote } from './disk-full.ts';
import { fillDisk, mountTmpfs, NO_TMPFS } from './tmpfs.testing.ts';

/** The error of a write to a file on a full disk (Node's: no path in it). */
function writeError(dir: string): NodeJS.ErrnoException {
  const fd = openSync(join(dir, `w-${Date.now()}`), 'w');
  try {
    writeSync(fd, Buffer.alloc(64 * 1024));
  } catch (e) {
    return e as NodeJS.ErrnoException;
  } finally {
    closeSync(fd);
  }
  return assert.fail('the write fitted');
}

test(
  'a full disk is told apart, through causes, and the folder on it is named, even among folders on other disks',
  { skip: NO_TMPFS },
  (t) => {
    const disk = mountTmpfs(t, 256);
    const full = join(disk, 'home');
    mkdirSync(full);
    const other = mkdtempSync(join(tmpdir(), 'tempered-other-'));
    t.after(() => rmSync(other, { recursive: true, force: true }));
    fillDisk(disk);
    const raw = writeError(full);
    assert.equal(raw.code, 'ENOSPC');
    assert.equal(raw.path, undefined, "Node's write error names no file");
    assert.ok(isDiskFull(raw));
    assert.ok(isDiskFull(new Error('stage failed', { cause: raw })));
    assert.ok(!isDiskFull(Object.assign(new Error('i/o error'), { code: 'EIO' })));
    assert.ok(!isDiskFull(new Error('no space left on device')), 'a message alone is not taken for a code');

    // Listed after a folder on a disk with room, and under a folder that does not exist yet.
    const e = diskFullError(raw, [other, join(full, 'checkpoints', 'key')]);
    assert.ok(e instanceof DiskFullError);
    assert.equal(e.path, join(full, 'checkpoints', 'key'));
    assert.ok(e.freeBytes !== undefined && e.freeBytes < 64 * 1024, String(e.freeBytes));
    assert.equal(e.totalBytes, 256 * 1024);
    assert.match(
      e.message,
      /^no space left on the disk that holds .*\/home\/checkpoints\/key \(\d+(\.\d)? (B|KiB) free of 256\.0 KiB\): ENOSPC/,
    );
    assert.equal(e.cause, raw);
    assert.match(
      e.hint,
      /free space on that disk.*then resume the failed run \(`tempered resume RUN_ID`; `tempered runs` lists the ids\).*tempered store gc.*--collect/,
    );
    // A file the error names is where the write failed.
    const copy = Object.assign(new Error('ENOSPC: copyfile'), { code: 'ENOSPC', path: join(other, 'a'), dest: join(full, 'b.tmp') });
    assert.equal(diskFullError(copy, [other]).path, full);
    assert.equal(diskFullError(e, [other]), e, 'one already built is kept');
    // A caller that knows more of the work (the run to resume, a server's retry) gives its hint to one built deep in
    // the library: the folder, the space and the cause stay the ones found where the write failed.
    const told = diskFullError(new Error('wrapped', { cause: e }), [other], { hint: 'then `tempered resume spam-0042`' });
    assert.equal(told.hint, 'then `tempered resume spam-0042`');
    assert.deepEqual(
      [told.message, told.path, told.freeBytes, told.totalBytes, told.cause],
      [e.message, e.path, e.freeBytes, e.totalBytes, e.cause],
    );
  },
);

test(
  'the audit log on a full disk: SQLITE_FULL, told as a full disk; nothing lost or corrupt, and it verifies and appends once space is freed',
  { skip: NO_TMPFS },
  async (t) => {
    const disk = mountTmpfs(t, 1024);
    const log = await openAudit(join(disk, 'audit.db'));
    try {
      await fullAndFreed(log, disk);
    } finally {
      await log.close();
    }
  },
);

async function fullAndFreed(log: Awaited<ReturnType<typeof openAudit>>, disk: string): Promise<void> {
  for (let i = 0; i < 3; i++) await log.append({ action: 'run.submitted', subject: `run-${i}` });
  const filler = fillDisk(disk);
  const err = await log.append({ action: 'run.submitted', subject: 'big', details: { pad: 'y'.repeat(64 * 1024) } }).then(
    () => assert.fail('the record fitted'),
    (e: unknown) => e,
  );
  assert.equal((err as { code?: string }).code, 'SQLITE_FULL');
  assert.ok(isDiskFull(err));
  assert.deepEqual(await log.verify(), { ok: true, checked: 3 });
  rmSync(filler);
  await log.append({ action: 'run.submitted', subject: 'after' });
  assert.deepEqual(await log.verify(), { ok: true, checked: 4 });
  assert.deepEqual(
    (await log.query({})).map((r) => r.subject),
    ['run-0', 'run-1', 'run-2', 'after'],
  );
}

// The Temporal dev server keeps its database under TEMPERED_HOME: on a full disk it answers "shard status
// unknown", and `tempered submit --wait` ended with "tempered: Failed to describe workflow" and nothing else.
test(
  'a failure that says nothing of space gets a note while a disk it writes to is full, and none while there is room',
  { skip: NO_TMPFS },
  (t) => {
    const disk = mountTmpfs(t, 512);
    const home = join(disk, 'home');
    const other = mkdtempSync(join(tmpdir(), 'tempered-other-'));
    t.after(() => rmSync(other, { recursive: true, force: true }));
    assert.equal(lowSpaceNote([other, home]), undefined);
    const filler = fillDisk(disk);
    assert.match(
      lowSpaceNote([other, home]) ?? '',
      /^note: the disk that holds .*\/home has 0 B free of 512\.0 KiB, .*Temporal dev server.*free space there/,
    );
    // The run the command was about is named in what to run next; without one, the command and where ids are listed.
    assert.match(
      lowSpaceNote([other, home], 'spam-1a2b') ?? '',
      /`tempered status spam-1a2b` says .*`tempered resume spam-1a2b` takes it up/,
    );
    assert.match(
      lowSpaceNote([other, home]) ?? '',
      /`tempered resume RUN_ID` takes a failed one up again; `tempered runs` lists the ids\)$/,
    );
    assert.doesNotMatch(lowSpaceNote([other, home]) ?? '', /<run>/);
    rmSync(filler);
    assert.equal(lowSpaceNote([other, home]), undefined);
  },
);
