/**
 * A write stream on a file created before the stream exists. `createWriteStream(path, { flags:
 * 'wx' })` opens the file asynchronously: when the pipeline fails first (a stalled download, a
 * size cap), the caller's cleanup can run before the open does, and the empty file appears after
 * it was "removed". Awaiting the open here means cleanup always finds what it must delete.
 */
import { promises as fsp, type WriteStream } from 'node:fs';

export async function newFileWriteStream(path: string): Promise<WriteStream> {
  const fh = await fsp.open(path, 'wx');
  return fh.createWriteStream();
}
