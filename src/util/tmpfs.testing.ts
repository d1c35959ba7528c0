/**
 * A small disk of its own for tests of what tempered does when a disk fills: a tmpfs mounted in a
 * fresh folder of os.tmpdir(), unmounted after the test. A full disk cannot be faked faithfully (a
 * mock's ENOSPC would not show which bytes a failed write left on the disk), and mounting needs root:
 * the tests skip for a user who is not (`NO_TMPFS`), and CI runs as root; as root, a mount that fails
 * fails the test.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, truncateSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** The tests' `skip`: a reason where mounting a tmpfs needs privileges this process lacks, else false. */
export const NO_TMPFS: string | false =
  process.getuid?.() === 0 ? false : 'mounting a tmpfs (a small disk to fill) needs root; CI runs these as root';

/** Mounts a tmpfs of `sizeKiB` and returns its folder; unmounted and removed after the test `t`. */
export function mountTmpfs(t: TestContext, sizeKiB: number): string {
  const dir = mkdtempSync(join(tmpdir(), 'tempered-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k`, 'tmpfs', dir], { stdio: 'pipe' });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    const why = (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
    throw new Error(
      `this test fills a disk of its own, a tmpfs, and could not mount one (${why}): run it as root (CI does), where mount -t tmpfs works`,
    );
  }
  t.after(() => {
    try {
      execFileSync('umount', [dir], { stdio: 'pipe' });
    } catch (e) {
      // Still open (a database the test failed before closing): detached now, freed once closed,
      // so no mount outlives the test; the failure still tells of the file left open.
      execFileSync('umount', ['-l', dir]);
      throw e;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  return dir;
}

/**
 * Fills the disk that holds `dir` with a file (returned: deleting it frees the space again), leaving
 * about `leaveBytes` free (to the page).
 */
export function fillDisk(dir: string, leaveBytes = 0): string {
  const path = join(dir, `filler-${process.pid}-${Date.now()}`);
  const fd = openSync(path, 'wx');
  try {
    const big = Buffer.alloc(1 << 20);
    const page = Buffer.alloc(4096);
    for (const chunk of [big, page])
      for (;;) {
        try {
          writeSync(fd, chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
  } finally {
    closeSync(fd);
  }
  if (leaveBytes > 0) {
    truncateSync(path, Math.max(0, statSync(path).size - leaveBytes));
  }
  return path;
}
