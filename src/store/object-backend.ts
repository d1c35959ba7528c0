/**
 * Where the artifact store keeps its objects when they must outlive one machine: the one small
 * interface the S3 backend (s3-backend.ts) and the shared-folder backend (folder-backend.ts) implement.
 * Keys are slash-separated names below the backend's root (`sha256/ab/abcd…`, `cache/….json`).
 * The artifact store (artifact-store.ts) hashes and verifies; a backend moves bytes.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';

export interface PutFileOptions {
  /** Lower-case hex sha256 of the file, sent so the server verifies what it received. */
  sha256: string;
  bytes: number;
  /** Create only: an existing key is left alone and reported as 'exists' (S3 `If-None-Match: *`, 412). */
  ifAbsent: boolean;
}

export interface StoredObject {
  bytes: number;
  /**
   * When the object was last written, by the store's clock (S3 `Last-Modified`, a file's mtime);
   * undefined when the server did not say, which garbage collection takes as "just now".
   */
  modified?: Date;
}

/** An upload begun in parts and neither completed nor aborted (S3 multipart): a writer killed mid-upload leaves one. */
export interface UnfinishedUpload {
  key: string;
  id: string;
  /** When it began, by the store's clock; undefined when the server did not say (garbage collection keeps it then). */
  started?: Date;
}

export interface ObjectBackend {
  /** Where the objects live, for messages and for handing to child processes: `s3://bucket/prefix` or a folder. */
  readonly url: string;
  /** Stores a local file under `key` (streamed; large files in parts). */
  putFile(key: string, file: string, opts: PutFileOptions): Promise<'stored' | 'exists'>;
  /** Stores a small object held in memory (a stage-cache record, a checkpoint pointer) in one request, its sha256 sent as putFile's. */
  putBytes(key: string, bytes: Uint8Array, opts: { ifAbsent: boolean }): Promise<'stored' | 'exists'>;
  /**
   * A small object's bytes with its version tag (S3: its ETag; a folder: the bytes' sha256), or undefined when there
   * is no such key. The tag is what `swapBytes` compares against.
   */
  readTagged(key: string, maxBytes?: number): Promise<{ bytes: Buffer; etag: string } | undefined>;
  /**
   * Compare-and-swap of a small object (a checkpoint pointer): stores `bytes` only if the object is still version
   * `expect` (a tag from readTagged or an earlier swap; undefined: only if there is no such key), atomically against
   * every other swap of the key, on any host. The new version's tag, or 'conflict' when the object changed (or
   * appeared, or went) since. S3: `If-Match: <etag>` (`If-None-Match: *`), a 412 (or 404) being the conflict. Tags
   * may follow the bytes (S3's ETag of a single PUT is their MD5, but for SSE-KMS or SSE-C): a writer that must tell
   * its writes apart puts something unique in each.
   */
  swapBytes(key: string, bytes: Uint8Array, expect: string | undefined): Promise<{ etag: string } | 'conflict'>;
  /** A stream of the object's bytes, or undefined when there is no such key. */
  read(key: string): Promise<Readable | undefined>;
  /**
   * Optional fast path for large objects: writes the object's bytes into `file` (open for writing,
   * empty) and returns their count, or undefined when there is no such key. Parts may arrive in any
   * order; `onPrefix(n)` says bytes [0, n) are written, so the caller can hash behind the writes.
   * The file is only a staging copy: the caller verifies it before anything trusts it. With
   * `expectBytes`, an object larger than that is refused (`ObjectSizeMismatch`) before a byte is
   * written: a server that claims a terabyte for a 3 MiB artifact must not fill the disk first.
   */
  readInto?(key: string, file: FileHandle, onPrefix: (n: number) => void, expectBytes?: number): Promise<number | undefined>;
  /** The object's size and when it was last written, or undefined when there is no such key. */
  head(key: string): Promise<StoredObject | undefined>;
  /** Every key starting with `prefix`. */
  list(prefix: string): AsyncIterable<string>;
  /** Every object whose key starts with `prefix`, with its size and write time (one listing, no HEAD each). */
  listObjects(prefix: string): AsyncIterable<StoredObject & { key: string }>;
  /**
   * Unfinished uploads of keys starting with `prefix`: S3 keeps their parts, in no listing of objects and billed, until
   * they are aborted; a folder keeps the temp file a writer killed mid-put left.
   */
  unfinishedUploads?(prefix: string): AsyncIterable<UnfinishedUpload>;
  /** Aborts an unfinished upload, deleting its parts; one already gone is fine. */
  abortUpload?(upload: UnfinishedUpload): Promise<void>;
  /** Removes a key; absent keys are fine. */
  delete(key: string): Promise<void>;
  /**
   * Removes a small object only if it is still version `expect` (a tag from readTagged), atomically against every swap
   * of the key: 'conflict' when it changed or went since. S3: DeleteObject with `If-Match` (412 or 404 the conflict); a
   * folder: under the swap's lock. What gc deletes a checkpoint pointer with, so that a claim racing the delete stays.
   */
  deleteTagged(key: string, expect: string): Promise<'deleted' | 'conflict'>;
  /** Moves a damaged object to `quarantine/…` (kept for inspection) so that a fresh put can store it again. */
  quarantine(key: string): Promise<void>;
  /**
   * What opens this backend again in another thread (`openBackend(url, { env })`, open-store.ts):
   * its URL, and the environment it was given when not the process's own.
   */
  reopen?(): { url: string; env?: Record<string, string | undefined> };
}

/** The backend's object is not the size the caller knows it must have. */
export class ObjectSizeMismatch extends Error {
  override name = 'ObjectSizeMismatch';
}

/** The most a small object (a stage-cache record, a pointer, a lease) holds: a larger one is no record of tempered's. */
export const SMALL_OBJECT_MAX_BYTES = 16 * 1024 * 1024;

/**
 * A small object's bytes, from its `body` (`size` when the store said it): refused, the body dropped unread, when that
 * size is over `maxBytes` or `check` throws, and as soon as more than `maxBytes` arrived (a size that lied, or none).
 * What every backend's readTagged and readText read through, so the cap and its message are one.
 */
export async function readSmallObject(
  where: string,
  object: { size?: number; body: Readable },
  maxBytes = SMALL_OBJECT_MAX_BYTES,
  check: () => void = () => {},
): Promise<Buffer> {
  const tooLarge = () => new Error(`${where} is larger than ${maxBytes} bytes; not a record`);
  try {
    if (object.size !== undefined && object.size > maxBytes) throw tooLarge();
    check();
  } catch (e) {
    object.body.destroy();
    throw e;
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of object.body) {
    n += (c as Buffer).length;
    if (n > maxBytes) {
      object.body.destroy();
      throw tooLarge();
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Collects a small object (a cache record, a pointer) into a string; undefined when absent. */
export async function readText(backend: ObjectBackend, key: string, maxBytes = SMALL_OBJECT_MAX_BYTES): Promise<string | undefined> {
  const body = await backend.read(key);
  if (!body) return undefined;
  return (await readSmallObject(`${backend.url}/${key}`, { body }, maxBytes)).toString('utf8');
}
