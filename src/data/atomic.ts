/**
 * Atomic file output: bytes go to a temp file beside the target, are fsynced, then renamed over it.
 * A reader therefore sees either the old file or the complete new one, and a failed write leaves
 * nothing behind (the temp file is deleted).
 */
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writevSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { syncDirSync } from '../util/durable-write.ts';

/** The start of this process's temp file names for `path`, beside it. */
const tempPrefix = (path: string) => `.${basename(path)}.${process.pid}.`;

/**
 * Removes this process's uncommitted temp files for `path`: for a process that must end at once (a second Ctrl-C)
 * while an AtomicFile is open, whose own abort() would not run.
 */
export function removeAtomicTemps(path: string): void {
  const prefix = tempPrefix(path);
  for (const f of readdirSync(dirname(path)))
    if (f.startsWith(prefix) && f.endsWith('.tmp')) rmSync(join(dirname(path), f), { force: true });
}

export class AtomicFile {
  readonly path: string;
  readonly tempPath: string;
  private fd: number | null;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  bytes = 0;

  constructor(path: string) {
    this.path = path;
    // Random suffix only names the temp file; it never reaches the output bytes.
    this.tempPath = join(dirname(path), `${tempPrefix(path)}${randomBytes(4).toString('hex')}.tmp`);
    // Output folders are the caller's choice; creating a missing one is never harmful.
    mkdirSync(dirname(path), { recursive: true });
    this.fd = openSync(this.tempPath, 'wx');
  }

  /** Buffers small chunks so the many tiny Arrow buffers become a few large writes. */
  write(chunk: Uint8Array): void {
    if (this.fd === null) throw new Error(`AtomicFile ${this.path} is already closed`);
    if (chunk.byteLength === 0) return;
    this.pending.push(chunk);
    this.pendingBytes += chunk.byteLength;
    this.bytes += chunk.byteLength;
    if (this.pendingBytes >= 1 << 20) this.flush();
  }

  flush(): void {
    if (this.fd === null || this.pending.length === 0) return;
    let views = this.pending;
    this.pending = [];
    this.pendingBytes = 0;
    while (views.length > 0) {
      // writev may write partially; drop what was written and retry the rest.
      let n = writevSync(this.fd, views);
      const rest: Uint8Array[] = [];
      for (const v of views) {
        if (n >= v.byteLength) {
          n -= v.byteLength;
          continue;
        }
        rest.push(n > 0 ? v.subarray(n) : v);
        n = 0;
      }
      views = rest;
    }
  }

  /**
   * Flushes, fsyncs and renames over the target. With `replace: false` a file that is at the target by then stays
   * (EEXIST, this file discarded): linked in rather than renamed, so one made meanwhile is not overwritten either.
   */
  commit(o: { replace?: boolean } = {}): void {
    if (this.fd === null) throw new Error(`AtomicFile ${this.path} is already closed`);
    try {
      this.flush();
      fsyncSync(this.fd);
    } catch (e) {
      this.abort();
      throw e;
    }
    closeSync(this.fd);
    this.fd = null;
    if (o.replace === false) {
      try {
        linkSync(this.tempPath, this.path);
      } finally {
        rmSync(this.tempPath, { force: true });
      }
    } else renameSync(this.tempPath, this.path);
    syncDirSync(dirname(this.path));
  }

  /** Discards everything written; safe to call more than once. */
  abort(): void {
    if (this.fd !== null) {
      try {
        closeSync(this.fd);
      } catch {
        /* already failing; the temp file is removed below */
      }
      this.fd = null;
    }
    rmSync(this.tempPath, { force: true });
  }
}

/** Writes a whole buffer atomically. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const f = new AtomicFile(path);
  try {
    f.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  } catch (e) {
    f.abort();
    throw e;
  }
  f.commit();
}
