/**
 * Resumable, verified HTTP downloads into a cache.
 *
 * Bytes stream into `<dest>.part`; when a connection breaks, the next attempt asks for the rest with
 * an HTTP Range request (and starts over if the server ignores it). The finished file is hashed, checked
 * against the expected sha256 (or git blob sha1, which is what the Hugging Face Hub's ETag holds for
 * small non-LFS files), fsynced and renamed into place, so `dest` exists only when it is complete and verified.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { open, rename, rm, writeFile } from 'node:fs/promises';
import { IntegrityError, InputError } from '../errors.ts';

export interface Expected {
  sha256?: string;
  /** Git blob sha1 ("blob <size>\0<bytes>"), the Hub's ETag for files stored in git rather than LFS. */
  gitSha1?: string;
  bytes?: number;
}

export interface DownloadOptions {
  headers?: Record<string, string>;
  expected?: Expected;
  /** Attempts after a broken connection (each resumes where the last stopped). */
  retries?: number;
  fetchImpl?: typeof fetch;
  signal?: AbortSignal;
  /** Called with bytes on disk so far (for heartbeats). */
  onProgress?: (bytes: number, total: number | undefined) => void;
}

export interface Downloaded {
  path: string;
  sha256: string;
  bytes: number;
  /** Number of attempts that resumed a partial file. */
  resumed: number;
}

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(readonly status: number, readonly url: string, message: string) {
    super(message);
  }
}

export async function hashFile(path: string): Promise<{ sha256: string; gitSha1: string; bytes: number }> {
  const bytes = statSync(path).size;
  const h = createHash('sha256');
  const g = createHash('sha1').update(`blob ${bytes}\0`);
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    g.update(chunk as Buffer);
  }
  return { sha256: h.digest('hex'), gitSha1: g.digest('hex'), bytes };
}

export function describeHttpFailure(status: number, url: string): string {
  if (status === 401 || status === 403) return `${url} answered ${status}: access denied; set HF_TOKEN to a token that can read this repository (gated models need their licence accepted first)`;
  if (status === 404) return `${url} answered 404: no such file, repository or revision`;
  return `${url} answered HTTP ${status}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Runs `fn` holding `<path>.lock`, so two workers fetching the same model into one cache do not write
 * the same part file. A lock whose owning process is gone is taken over.
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const lock = `${path}.lock`;
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let owner = NaN;
      try { owner = Number(readFileSync(lock, 'utf8')); } catch { continue; }
      if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) { await rm(lock, { force: true }); continue; }
      if (signal?.aborted) throw new Error('aborted while waiting for a download lock');
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lock, { force: true });
  }
}

function matches(got: { sha256: string; gitSha1: string; bytes: number }, exp: Expected): boolean {
  return (exp.bytes === undefined || got.bytes === exp.bytes) && (exp.sha256 === undefined || got.sha256 === exp.sha256.toLowerCase())
    && (exp.gitSha1 === undefined || got.gitSha1 === exp.gitSha1.toLowerCase()) && (exp.sha256 !== undefined || exp.gitSha1 !== undefined);
}

export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<Downloaded> {
  return withFileLock(dest, async () => {
    // Another worker may have finished this file while we waited for the lock.
    if (existsSync(dest)) {
      const got = await hashFile(dest);
      if (matches(got, opts.expected ?? {})) return { path: dest, sha256: got.sha256, bytes: got.bytes, resumed: 0 };
    }
    return downloadUnlocked(url, dest, opts);
  }, opts.signal);
}

async function downloadUnlocked(url: string, dest: string, opts: DownloadOptions): Promise<Downloaded> {
  const doFetch = opts.fetchImpl ?? fetch;
  const part = `${dest}.part`;
  const retries = opts.retries ?? 4;
  let resumed = 0;
  for (let attempt = 0; ; attempt++) {
    const have = existsSync(part) ? statSync(part).size : 0;
    const headers: Record<string, string> = { ...opts.headers };
    if (have > 0) headers.Range = `bytes=${have}-`;
    let res: Response;
    try {
      res = await doFetch(url, { headers, signal: opts.signal, redirect: 'follow' });
    } catch (e) {
      if (attempt < retries && !opts.signal?.aborted) continue;
      throw new Error(`cannot reach ${url}: ${(e as Error).message}`, { cause: e });
    }
    if (res.status === 416 && have > 0) {
      // The part file is already whole (or longer than the file): verify it as is.
      await res.body?.cancel();
    } else if (res.status !== 200 && res.status !== 206) {
      await res.body?.cancel();
      if (res.status >= 500 && attempt < retries) continue;
      const msg = describeHttpFailure(res.status, url);
      throw res.status >= 400 && res.status < 500 ? new InputError(msg) : new HttpError(res.status, url, msg);
    } else {
      const append = res.status === 206 && have > 0;
      if (append) resumed++;
      const lengthHeader = Number(res.headers.get('content-length') ?? NaN);
      const total = Number.isFinite(lengthHeader) ? lengthHeader + (append ? have : 0) : opts.expected?.bytes;
      const fh = await open(part, append ? 'a' : 'w');
      let written = append ? have : 0;
      let broken: unknown = null;
      try {
        if (res.body) {
          for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
            await fh.write(chunk);
            written += chunk.byteLength;
            opts.onProgress?.(written, total);
          }
        }
        await fh.sync();
      } catch (e) {
        broken = e;
      } finally {
        await fh.close();
      }
      if (broken !== null || (total !== undefined && written < total)) {
        if (opts.signal?.aborted) throw broken ?? new Error('aborted');
        if (attempt < retries) continue;
        throw new Error(`download of ${url} kept breaking off (${written} of ${total ?? '?'} bytes after ${attempt + 1} attempts); run again to resume`, { cause: broken ?? undefined });
      }
    }
    const got = await hashFile(part);
    const exp = opts.expected ?? {};
    const bad =
      (exp.bytes !== undefined && got.bytes !== exp.bytes) ? `size ${got.bytes}, expected ${exp.bytes}`
        : (exp.sha256 !== undefined && got.sha256 !== exp.sha256.toLowerCase()) ? `sha256 ${got.sha256}, expected ${exp.sha256}`
          : (exp.gitSha1 !== undefined && got.gitSha1 !== exp.gitSha1.toLowerCase()) ? `git blob sha1 ${got.gitSha1}, expected ${exp.gitSha1}`
            : null;
    if (bad) {
      // A corrupt part file must not be resumed by the next run.
      await rm(part, { force: true });
      throw new IntegrityError(`downloaded ${url} does not match: ${bad}; the partial file was removed, run again to retry`);
    }
    await rename(part, dest);
    return { path: dest, sha256: got.sha256, bytes: got.bytes, resumed };
  }
}
