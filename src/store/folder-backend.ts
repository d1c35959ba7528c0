/**
 * An object backend in a plain folder: `TEMPERED_STORE=/mnt/shared/store` (or `file:///…`) for hosts
 * that share a filesystem, and the reference the S3 backend's tests are checked against. Writes go to
 * a temp name and are linked into place, so a create-only put is atomic (`link` fails on an existing
 * name) and readers never see half a file.
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream, promises as fsp } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { InputError } from '../errors.ts';
import {
  readSmallObject,
  SMALL_OBJECT_MAX_BYTES,
  type ObjectBackend,
  type PutFileOptions,
  type StoredObject,
  type UnfinishedUpload,
} from './object-backend.ts';
import { deleteFile, fileTag, SWAP_LEFTOVER, SWAP_LOCK, swapFile } from './folder-swap.ts';
import { KEY_PREFIXES } from './key-layout.ts';

/** The temp name place() writes an object under before it moves it in. */
const PUT_TEMP = /\.\d+\.[0-9a-f]{8}\.tmp$/;

export class FolderBackend implements ObjectBackend {
  readonly url: string;

  constructor(readonly root: string) {
    this.url = root;
  }
  reopen(): { url: string } {
    return { url: this.root };
  }

  private path(key: string): string {
    if (key.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new InputError(`bad object key ${JSON.stringify(key)}`);
    return join(this.root, ...key.split('/'));
  }

  async putFile(key: string, file: string, opts: PutFileOptions): Promise<'stored' | 'exists'> {
    return this.place(key, (tmp) => fsp.copyFile(file, tmp), opts.ifAbsent);
  }

  async putBytes(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<'stored' | 'exists'> {
    return this.place(key, (tmp) => fsp.writeFile(tmp, bytes), opts.ifAbsent);
  }

  /** Writes the object beside its place with `write` (at `<key>.<pid>.<hex>.tmp`: PUT_TEMP), syncs it, then moves it in (create-only: links it). */
  private async place(key: string, write: (tmp: string) => Promise<void>, ifAbsent: boolean): Promise<'stored' | 'exists'> {
    const dest = this.path(key);
    await fsp.mkdir(dirname(dest), { recursive: true });
    const tmp = `${dest}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    try {
      await write(tmp);
      const fh = await fsp.open(tmp, 'r+');
      await fh.sync();
      await fh.close();
      if (!ifAbsent) {
        await fsp.rename(tmp, dest);
        return 'stored';
      }
      try {
        await fsp.link(tmp, dest);
        return 'stored';
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'EEXIST') return 'exists';
        throw e;
      }
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }

  async readTagged(key: string, maxBytes = SMALL_OBJECT_MAX_BYTES): Promise<{ bytes: Buffer; etag: string } | undefined> {
    const p = this.path(key);
    // (ENOTDIR: a file where a folder of the key should be.)
    const absent = (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
      throw e;
    };
    // Only a regular file is opened: an open of a FIFO waits for a writer, for good (non-blocking too, as read(), for
    // one planted between this look and the open).
    if (!(await fsp.stat(p).catch(absent))?.isFile()) return undefined;
    // One open file: its size and its bytes are of one version, whatever a swap renames in meanwhile.
    const fh = await fsp.open(p, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK).catch(absent);
    if (!fh) return undefined;
    const st = await fh.stat().catch(async (e) => {
      await fh.close();
      throw e;
    });
    if (!st.isFile()) {
      await fh.close();
      return undefined;
    }
    const bytes = await readSmallObject(`${this.url}/${key}`, { size: st.size, body: createReadStream(p, { fd: fh }) }, maxBytes);
    return { bytes, etag: fileTag(bytes) };
  }

  /** Under a lock that a paused holder cannot write through once it is taken over (folder-swap.ts). */
  async swapBytes(key: string, bytes: Uint8Array, expect: string | undefined): Promise<{ etag: string } | 'conflict'> {
    const dest = this.path(key);
    await fsp.mkdir(dirname(dest), { recursive: true });
    return swapFile(dest, bytes, expect);
  }

  /** Under the swap's lock (folder-swap.ts). */
  async deleteTagged(key: string, expect: string): Promise<'deleted' | 'conflict'> {
    return deleteFile(this.path(key), expect);
  }

  async read(key: string): Promise<Readable | undefined> {
    const p = this.path(key);
    // Non-blocking, and looked at before it is read: opening a FIFO planted at a key waited for a writer for good
    // (a libuv thread with it), and a folder there failed only once the stream was read.
    const fh = await fsp.open(p, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (!fh) return undefined;
    const st = await fh.stat().catch(async (e: unknown) => {
      await fh.close();
      throw e;
    });
    if (!st.isFile()) {
      await fh.close();
      throw new Error(`${p} is not a regular file: the store's folder holds something else at key ${key}; remove it`);
    }
    return createReadStream(p, { fd: fh });
  }

  async head(key: string): Promise<StoredObject | undefined> {
    const st = await fsp.stat(this.path(key)).catch(() => undefined);
    return st?.isFile() ? { bytes: st.size, modified: st.mtime } : undefined;
  }

  async *listObjects(prefix: string): AsyncIterable<StoredObject & { key: string }> {
    for await (const key of this.list(prefix)) {
      const o = await this.head(key);
      if (o) yield { key, ...o };
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    yield* this.walk(prefix, (name) => !name.endsWith('.tmp'));
  }

  /** Keys under `prefix` of the files whose name `keep` takes (and of the folders `keepFolder` takes), in name order. */
  private async *walk(prefix: string, keep: (name: string) => boolean, keepFolder = (_name: string) => false): AsyncIterable<string> {
    const walk = async function* (dir: string, root: string): AsyncIterable<string> {
      const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
      for (const e of entries.sort((a, b) => a.name.localeCompare(b.name))) {
        const p = join(dir, e.name);
        // (A swap's lock folder holds its writer's next version, which is no object yet.)
        if (e.isDirectory()) {
          if (keepFolder(e.name)) yield relative(root, p).split(sep).join('/');
          else if (!SWAP_LOCK.test(e.name)) yield* walk(p, root);
        } else if (e.isFile() && keep(e.name)) yield relative(root, p).split(sep).join('/');
      }
    };
    // Walk the deepest folder the prefix names, then filter by the rest of it.
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    for await (const key of walk(dirPart ? this.path(dirPart) : this.root, this.root)) if (key.startsWith(prefix)) yield key;
  }

  /**
   * The temp files of writers killed mid-put (`<key>.<pid>.<hex>.tmp`, place()): a put removes its own whatever
   * happens but a kill, and no listing shows them, so a checkpoint file of gigabytes stayed in a shared folder for good.
   * Started when last written; no live put leaves its file unwritten for long. Also the folders swappers killed
   * mid-swap left beside a swap lock (folder-swap.ts, SWAP_LEFTOVER), which only a takeover of that lock sweeps
   * otherwise: started when last written (a swap holds its folder for a minute at most, far under gc's horizon).
   */
  async *unfinishedUploads(prefix: string): AsyncIterable<UnfinishedUpload> {
    for await (const key of this.walk(
      prefix,
      (name) => PUT_TEMP.test(name),
      (name) => SWAP_LEFTOVER.test(name),
    )) {
      const st = await fsp.lstat(this.path(key)).catch(() => undefined);
      if (st) yield { key, id: key, started: st.mtime };
    }
  }

  async abortUpload(upload: UnfinishedUpload): Promise<void> {
    // Only a name a put or a swap could have made: this deletes files.
    if (PUT_TEMP.test(upload.key)) await fsp.rm(this.path(upload.key), { force: true });
    else if (SWAP_LEFTOVER.test(upload.key)) await fsp.rm(this.path(upload.key), { recursive: true, force: true });
  }

  async delete(key: string): Promise<void> {
    await fsp.rm(this.path(key), { force: true });
  }

  async quarantine(key: string): Promise<void> {
    const dest = this.path(`${KEY_PREFIXES.quarantine}${key.replaceAll('/', '_')}.${Date.now()}.${randomBytes(3).toString('hex')}`);
    await fsp.mkdir(dirname(dest), { recursive: true });
    const moved = await fsp.rename(this.path(key), dest).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
        return false;
      },
    );
    // A rename keeps the object's mtime, and garbage collection ages quarantined objects by it: the
    // damaged copy is kept for inspection from now, as S3's copy into quarantine/ is.
    if (moved) {
      const now = new Date();
      await fsp.utimes(dest, now, now);
    }
  }
}
