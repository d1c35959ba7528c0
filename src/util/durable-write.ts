/**
 * Writes that survive a power cut: the data is flushed to disk before the caller renames the file
 * into place, so a reader after a crash sees the old file or the whole new one, never a torn one.
 */
import { promises as fsp, closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

export async function writeFileDurable(path: string, data: string | Uint8Array): Promise<void> {
  const fh = await fsp.open(path, 'wx');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function writeFileDurableSync(path: string, data: string | Uint8Array): void {
  const fd = openSync(path, 'wx');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
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
