/**
 * http(s) sources: downloaded beside the outputs, verified against the sha256 the user pinned, and
 * deleted after reading. Pinning makes a remote source as reproducible as a local file: the
 * stage's cache key names the hash, and a changed file is refused rather than silently used.
 *
 * The server is hostile until checked: a stalled or endless body, a redirect to another origin (a
 * loopback or cloud-metadata address, say) or a file larger than the cap fail the download with
 * an error that says which limit was hit.
 */
import { createHash, randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { InputError } from '../errors.ts';
import { newFileWriteStream } from '../util/new-file-stream.ts';
import { redactText, redactUrl } from '../util/redact.ts';
import { stallGuard } from '../util/stall-guard.ts';

export function isUrl(path: string): boolean {
  return /^https?:\/\//i.test(path);
}

/** The pinned sha256 of a URL source, lower case; an input error when it is missing or malformed. */
export function urlPin(sha256: string | undefined): string {
  if (sha256 === undefined)
    throw new InputError(`a URL source needs its expected sha256`, {
      where: 'sha256',
      hint: `add sha256: <64 hex digits> (e.g. from \`sha256sum\` of the file)`,
    });
  if (!/^[0-9a-f]{64}$/i.test(sha256))
    throw new InputError(`sha256 must be 64 hex digits, got ${JSON.stringify(sha256)}`, { where: 'sha256' });
  return sha256.toLowerCase();
}

export const DOWNLOAD_LIMITS = {
  /** Largest body accepted. */
  maxBytes: 4 * 1024 ** 3,
  /** Longest wait for the response headers, and between two pieces of the body. */
  idleMs: 60_000,
  /** Redirects followed, each within the URL's own origin. */
  maxRedirects: 5,
};

export interface DownloadOptions {
  signal?: AbortSignal;
  maxBytes?: number;
  idleMs?: number;
  maxRedirects?: number;
}

/** Thrown when the connection stalls; not an InputError, so the stage's retry policy applies. */
export class DownloadStalled extends Error {
  override name = 'DownloadStalled';
}

/**
 * `https://user:password@host/…` as fetch can send it: the URL without its userinfo and the userinfo as a Basic
 * `Authorization` header, as curl and wget do (fetch refuses a URL with credentials, and its error repeats them).
 */
function withoutUserinfo(url: string): { url: string; headers: Record<string, string> } {
  const u = new URL(url);
  if (!u.username && !u.password) return { url, headers: {} };
  const basic = `${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`;
  u.username = '';
  u.password = '';
  return { url: u.href, headers: { authorization: `Basic ${Buffer.from(basic).toString('base64')}` } };
}

/** GET that follows redirects only within the first URL's origin (which alone gets the userinfo's credentials). */
async function getSameOrigin(url: string, signal: AbortSignal, maxRedirects: number): Promise<Response> {
  const first = withoutUserinfo(url);
  const origin = new URL(first.url).origin;
  let current = first.url;
  for (let hop = 0; ; hop++) {
    const res = await fetch(current, { redirect: 'manual', signal, headers: first.headers });
    if (res.status < 300 || res.status >= 400 || !res.headers.has('location')) return res;
    await res.body?.cancel();
    const next = new URL(res.headers.get('location')!, current);
    if (next.origin !== origin) {
      throw new InputError(`${redactUrl(current)} redirects to ${next.origin}, another origin than the source's (${origin})`, {
        where: 'path',
        hint: 'use the final URL in the pipeline if you trust it',
      });
    }
    if (hop + 1 > maxRedirects)
      throw new InputError(`${redactUrl(url)} redirects more than ${maxRedirects} times`, { where: 'path', hint: 'use the final URL' });
    current = next.href;
  }
}

/** Downloads `url` into `dir` and checks its sha256; returns the temp file, which the caller deletes. */
export async function downloadVerified(
  url: string,
  sha256: string | undefined,
  dir: string,
  opts: DownloadOptions = {},
): Promise<{ path: string; bytes: number }> {
  const pin = urlPin(sha256);
  // Messages name the URL without its credentials: they reach the stage's error in Temporal's history, the run's
  // audit record and every reader of the dashboard (src/util/redact.ts).
  const shown = redactUrl(url);
  const maxBytes = opts.maxBytes ?? DOWNLOAD_LIMITS.maxBytes;
  const idleMs = opts.idleMs ?? DOWNLOAD_LIMITS.idleMs;
  // One controller aborts the request on a stall or when the stage is cancelled.
  const guard = stallGuard(idleMs, opts.signal);
  const stallError = () =>
    new DownloadStalled(`${shown} sent nothing for ${idleMs / 1000} s; giving up (the stage's retry policy may try again)`);
  const path = join(dir, `.download-${randomBytes(6).toString('hex')}.tmp`);
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    guard.arm();
    let res: Response;
    try {
      res = await getSameOrigin(url, guard.signal, opts.maxRedirects ?? DOWNLOAD_LIMITS.maxRedirects);
    } catch (e) {
      if (guard.stalled) throw stallError();
      throw e;
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      const msg = `GET ${shown} answered ${res.status} ${res.statusText}`;
      // Server errors may pass; a 4xx will not, so it is the user's to fix.
      if (res.status >= 400 && res.status < 500) throw new InputError(msg, { where: 'path', hint: 'check the URL' });
      throw new Error(msg);
    }
    const declared = Number(res.headers.get('content-length') ?? NaN);
    const tooBig = () =>
      new InputError(`${shown} is larger than the ${maxBytes}-byte download limit`, {
        where: 'path',
        hint: 'download it yourself and point the pipeline at the file',
      });
    if (Number.isFinite(declared) && declared > maxBytes) {
      await res.body.cancel();
      throw tooBig();
    }
    const counting = new Transform({
      transform(chunk: Buffer, _enc, done) {
        guard.arm();
        bytes += chunk.length;
        if (bytes > maxBytes) {
          done(tooBig());
          return;
        }
        hash.update(chunk);
        done(null, chunk);
      },
    });
    const out = await newFileWriteStream(path);
    try {
      await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), counting, out);
    } catch (e) {
      if (guard.stalled) throw stallError();
      throw e;
    }
  } catch (e) {
    rmSync(path, { force: true });
    // fetch's own errors (a URL it cannot parse) may quote the URL as given.
    if (e instanceof Error && !(e instanceof InputError) && !(e instanceof DownloadStalled)) e.message = redactText(e.message);
    throw e;
  } finally {
    guard.dispose();
  }
  const got = hash.digest('hex');
  if (got !== pin) {
    rmSync(path, { force: true });
    throw new InputError(`${shown} has sha256 ${got}, expected ${pin}`, {
      where: 'sha256',
      hint: 'the file changed or the pinned hash is wrong; check the source before updating the hash',
    });
  }
  return { path, bytes };
}
