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
import { processAlive } from '../util/process-alive.ts';
import { stallGuard } from '../util/stall-guard.ts';
import { redactText, redactUrl } from '../util/redact.ts';

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
  /** Longest wait for response headers or between two pieces of the body; a stall counts as a broken connection. Default 60 s. */
  idleMs?: number;
  /** Largest file accepted when `expected.bytes` is unknown. Default 256 GiB. */
  maxBytes?: number;
}

const IDLE_MS = 60_000;
const MAX_BYTES = 256 * 1024 ** 3;
const MAX_REDIRECTS = 10;

/**
 * GET following redirects by hand: within the origin freely; to another origin only over https
 * (a CDN, as the Hub's LFS files use), and without the Authorization header, so a token never
 * travels to a host it was not meant for nor in clear text.
 */
export async function fetchWithRedirectPolicy(
  doFetch: typeof fetch,
  url: string,
  init: { headers: Record<string, string>; signal: AbortSignal },
): Promise<Response> {
  const origin = new URL(url).origin;
  let current = url;
  let headers = init.headers;
  for (let hop = 0; ; hop++) {
    const res = await doFetch(current, { headers, signal: init.signal, redirect: 'manual' });
    if (res.status < 300 || res.status >= 400 || !res.headers.has('location')) return res;
    await res.body?.cancel();
    const next = new URL(res.headers.get('location')!, current);
    if (next.origin !== origin) {
      if (next.protocol !== 'https:')
        throw new InputError(`${redactUrl(current)} redirects to ${next.origin}, another origin over plain http; refused`, {
          hint: 'use an https source',
        });
      headers = Object.fromEntries(Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'));
    }
    if (hop + 1 > MAX_REDIRECTS) throw new InputError(`${redactUrl(url)} redirects more than ${MAX_REDIRECTS} times`);
    current = next.href;
  }
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
  constructor(
    readonly status: number,
    readonly url: string,
    message: string,
  ) {
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

export function describeHttpFailure(status: number, given: string): string {
  // Named without credentials (a presigned CDN or wheel URL): the message reaches Temporal's history and the trail.
  const url = redactUrl(given);
  if (status === 401 || status === 403)
    return `${url} answered ${status}: access denied; set HF_TOKEN to a token that can read this repository (gated models need their licence accepted first)`;
  if (status === 404) return `${url} answered 404: no such file, repository or revision`;
  return `${url} answered HTTP ${status}`;
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
      try {
        owner = Number(readFileSync(lock, 'utf8'));
      } catch {
        continue;
      }
      if (Number.isInteger(owner) && owner > 0 && !processAlive(owner)) {
        await rm(lock, { force: true });
        continue;
      }
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
  return (
    (exp.bytes === undefined || got.bytes === exp.bytes) &&
    (exp.sha256 === undefined || got.sha256 === exp.sha256.toLowerCase()) &&
    (exp.gitSha1 === undefined || got.gitSha1 === exp.gitSha1.toLowerCase()) &&
    (exp.sha256 !== undefined || exp.gitSha1 !== undefined)
  );
}

export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<Downloaded> {
  return withFileLock(
    dest,
    async () => {
      // Another worker may have finished this file while we waited for the lock.
      if (existsSync(dest)) {
        const got = await hashFile(dest);
        if (matches(got, opts.expected ?? {})) return { path: dest, sha256: got.sha256, bytes: got.bytes, resumed: 0 };
      }
      return downloadUnlocked(url, dest, opts);
    },
    opts.signal,
  );
}

async function downloadUnlocked(url: string, dest: string, opts: DownloadOptions): Promise<Downloaded> {
  const shown = redactUrl(url);
  const doFetch = opts.fetchImpl ?? fetch;
  const part = `${dest}.part`;
  const retries = opts.retries ?? 4;
  let resumed = 0;
  for (let attempt = 0; ; attempt++) {
    const have = existsSync(part) ? statSync(part).size : 0;
    const headers: Record<string, string> = { ...opts.headers };
    if (have > 0) headers.Range = `bytes=${have}-`;
    // One controller per attempt: aborted on a stall (no headers, or no bytes, for idleMs) or on cancellation.
    const idleMs = opts.idleMs ?? IDLE_MS;
    const guard = stallGuard(idleMs, opts.signal);
    try {
      let res: Response;
      try {
        guard.arm();
        res = await fetchWithRedirectPolicy(doFetch, url, { headers, signal: guard.signal });
      } catch (e) {
        if (e instanceof InputError) throw e;
        if (attempt < retries && !opts.signal?.aborted) continue;
        throw new Error(`cannot reach ${shown}: ${guard.stalled ? `no answer for ${idleMs / 1000} s` : redactText((e as Error).message)}`, {
          cause: e,
        });
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
        // Never write more than the file can be: its pinned size, else the cap.
        const cap = opts.expected?.bytes ?? opts.maxBytes ?? MAX_BYTES;
        const tooBig = (n: number) =>
          new IntegrityError(
            `${shown} sends more than ${cap} bytes (${n} so far)${opts.expected?.bytes !== undefined ? ', its expected size' : ', the download limit'}; the partial file was removed`,
          );
        if (total !== undefined && total > cap) {
          await res.body?.cancel();
          await rm(part, { force: true });
          throw tooBig(total);
        }
        const fh = await open(part, append ? 'a' : 'w');
        let written = append ? have : 0;
        let broken: unknown = null;
        let oversize = false;
        try {
          if (res.body) {
            for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
              guard.arm();
              if (written + chunk.byteLength > cap) {
                oversize = true;
                break;
              }
              await fh.write(chunk);
              written += chunk.byteLength;
              opts.onProgress?.(written, total);
            }
          }
          await fh.sync();
        } catch (e) {
          broken = guard.stalled ? new Error(`no data from ${shown} for ${idleMs / 1000} s`, { cause: e }) : e;
        } finally {
          await fh.close();
        }
        if (oversize) {
          guard.abort();
          await rm(part, { force: true });
          throw tooBig(written);
        }
        if (broken !== null || (total !== undefined && written < total)) {
          if (opts.signal?.aborted) throw broken ?? new Error('aborted');
          if (attempt < retries) continue;
          throw new Error(
            `download of ${shown} kept breaking off (${written} of ${total ?? '?'} bytes after ${attempt + 1} attempts); run again to resume`,
            { cause: broken ?? undefined },
          );
        }
      }
    } finally {
      guard.dispose();
    }
    const got = await hashFile(part);
    const exp = opts.expected ?? {};
    const bad =
      exp.bytes !== undefined && got.bytes !== exp.bytes
        ? `size ${got.bytes}, expected ${exp.bytes}`
        : exp.sha256 !== undefined && got.sha256 !== exp.sha256.toLowerCase()
          ? `sha256 ${got.sha256}, expected ${exp.sha256}`
          : exp.gitSha1 !== undefined && got.gitSha1 !== exp.gitSha1.toLowerCase()
            ? `git blob sha1 ${got.gitSha1}, expected ${exp.gitSha1}`
            : null;
    if (bad) {
      // A corrupt part file must not be resumed by the next run.
      await rm(part, { force: true });
      throw new IntegrityError(`downloaded ${shown} does not match: ${bad}; the partial file was removed, run again to retry`);
    }
    await rename(part, dest);
    return { path: dest, sha256: got.sha256, bytes: got.bytes, resumed };
  }
}
