/**
 * Writes that survive a power cut: the data is flushed to disk before the caller renames the file
 * into place, so a reader after a crash sees the old file or the whole new one, never a torn one.
 */
import { promises as fsp, closeSync, fsyncSync, openSync, rmSync, writeSync } from 'node:fs';

/**
 * Creates `path` (it must not exist) with `data`, flushed to disk. A write that fails (a full disk)
 * removes the file it created: a partial file would hold the space the disk lacked.
 */
export async function writeFileDurable(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await fsp.open(path, 'wx');
  try {
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (e) {
    await fsp.rm(path, { force: true });
    throw e;
  }
}

export function writeFileDurableSync(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, 'wx');
  try {
    try {
      const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      let off = 0;
      while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (e) {
    rmSync(path, { force: true });
    throw e;
  }
}

/** Flushes a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened. */
export function syncDirSync(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    /* some filesystems do not allow fsync on a folder */
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
