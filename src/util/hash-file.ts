import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/** Bytes per read: large enough that system calls are rare, small enough to stay in cache. */
const READ_BYTES = 1 << 20;

/**
 * Streams a file through sha256 without loading it whole. Two buffers are reused for the whole
 * file, the next read in flight while the current one is hashed: a read stream allocates a fresh
 * buffer per chunk, and in a process with a larger heap that garbage kept V8 collecting often enough
 * to slow the hash itself (bench/store.bench.ts, local and warm get; figures in the README).
 */
export async function sha256File(path: string): Promise<{ sha256: string; bytes: number }> {
  const fh = await open(path, 'r');
  try {
    return await sha256Handle(fh);
  } finally {
    await fh.close();
  }
}

/**
 * sha256File of a file open already, read from the handle from its first byte (never by a path, which may lead
 * elsewhere by now: ingest hashes a source opened confined, data/roots.ts openConfined). The caller closes it.
 */
export async function sha256Handle(fh: FileHandle): Promise<{ sha256: string; bytes: number }> {
  const h = createHash('sha256');
  const bufs = [Buffer.allocUnsafe(READ_BYTES), Buffer.allocUnsafe(READ_BYTES)] as const;
  let bytes = 0;
  let which = 0;
  let pending = fh.read(bufs[0], 0, READ_BYTES, 0);
  try {
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      const buf = bufs[which]!;
      bytes += bytesRead;
      which ^= 1;
      pending = fh.read(bufs[which]!, 0, READ_BYTES, bytes);
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await pending.catch(() => undefined);
  }
  return { sha256: h.digest('hex'), bytes };
}
