/**
 * Brings one backend object into a local file and hashes it on the way: the artifact store's fetch
 * (named by its hash) and the shared training checkpoints (named by step, hashes in their pointer)
 * both verify what they get with it before anything trusts the file.
 */
import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { followHash } from '../util/hash-follower.ts';
import { newFileWriteStream } from '../util/new-file-stream.ts';
import { ObjectSizeMismatch, type ObjectBackend } from './object-backend.ts';

/**
 * The object `key` into the new file `dest` (which must not exist), with its sha256; undefined when
 * the backend has no such key. A backend with `readInto` writes parts in parallel at their offsets
 * while a worker thread hashes behind the writes (hash-follower.ts); others stream in order. The file
 * is not synced: it is a copy that a crash may tear, and a torn copy fails its hash. With
 * `expectBytes`, an object larger than that throws ObjectSizeMismatch: before anything is written
 * where the backend gives the size up front, else as soon as the stream passes it. (A smaller one
 * is fetched: its hash tells whether it is damaged, and a damaged one is quarantined.)
 */
export async function downloadObject(
  remote: ObjectBackend,
  key: string,
  dest: string,
  expectBytes?: number,
): Promise<{ hex: string; bytes: number } | undefined> {
  if (!remote.readInto) {
    const stream = await remote.read(key);
    return stream && (await copyHashing(stream, dest, key, expectBytes));
  }
  const fh = await fsp.open(dest, 'wx');
  const hash = followHash(dest);
  let bytes: number | undefined;
  try {
    bytes = await remote.readInto(key, fh, (n) => hash.advance(n), expectBytes);
  } catch (e) {
    hash.cancel();
    throw e;
  } finally {
    await fh.close();
  }
  if (bytes === undefined) {
    hash.cancel();
    return undefined;
  }
  return { hex: await hash.finish(bytes), bytes };
}

async function copyHashing(source: Readable, dest: string, key: string, expectBytes?: number): Promise<{ hex: string; bytes: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  const out = await newFileWriteStream(dest);
  await pipeline(
    source,
    async function* (chunks) {
      for await (const chunk of chunks) {
        h.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
        if (expectBytes !== undefined && bytes > expectBytes)
          throw new ObjectSizeMismatch(`${key} has more than the ${expectBytes} bytes expected`);
        yield chunk;
      }
    },
    out,
  );
  return { hex: h.digest('hex'), bytes };
}
