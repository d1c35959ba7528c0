/**
 * http(s) sources: downloaded beside the outputs, verified against the sha256 the user pinned, and
 * deleted after reading. Pinning makes a remote source as reproducible as a local file: the
 * stage's cache key names the hash, and a changed file is refused rather than silently used.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../errors.ts';

export function isUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/** Downloads `url` into `dir` and checks its sha256; returns the temp file, which the caller deletes. */
export async function downloadVerified(url: string, sha256: string | undefined, dir: string): Promise<{ path: string; bytes: number }> {
  if (sha256 === undefined) throw new InputError(`a URL source needs its expected sha256`, { where: 'sha256', hint: `add sha256: <64 hex digits> (e.g. from \`sha256sum\` of the file)` });
  if (!/^[0-9a-f]{64}$/i.test(sha256)) throw new InputError(`sha256 must be 64 hex digits, got ${JSON.stringify(sha256)}`, { where: 'sha256' });
  const res = await fetch(url, { redirect: 'follow' });
  if (!res.ok || !res.body) {
    const msg = `GET ${url} answered ${res.status} ${res.statusText}`;
    // Server errors may pass; a 4xx will not, so it is the user's to fix.
    if (res.status >= 400 && res.status < 500) throw new InputError(msg, { where: 'path', hint: 'check the URL' });
    throw new Error(msg);
  }
  const path = join(dir, `.download-${randomBytes(6).toString('hex')}.tmp`);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    const body = Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
    body.on('data', (chunk: Buffer) => { hash.update(chunk); bytes += chunk.length; });
    await pipeline(body, createWriteStream(path));
  } catch (e) {
    rmSync(path, { force: true });
    throw e;
  }
  const got = hash.digest('hex');
  if (got !== sha256.toLowerCase()) {
    rmSync(path, { force: true });
    throw new InputError(`${url} has sha256 ${got}, expected ${sha256.toLowerCase()}`, { where: 'sha256', hint: 'the file changed or the pinned hash is wrong; check the source before updating the hash' });
  }
  return { path, bytes };
}
