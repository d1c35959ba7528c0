/**
 * An exclusive lock on a folder that several attempts of the same work could write (a retried
 * train stage and the zombie attempt that lost its heartbeat but still runs; two runs of the same
 * config). The lock is a file created with O_EXCL beside the folder, naming its owner, and kept
 * fresh by its holder. A lock not refreshed within `staleMs` is taken over; the old holder then
 * finds on its next refresh that it lost the lock, and its `signal` aborts, so it stops writing.
 * A lock whose holder ran on this host and is gone (a stage process that crashed or was killed for
 * its memory) is taken over at once: its retry should not wait out `staleMs`.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { closeSync, openSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { processAlive } from './process-alive.ts';

export interface DirLock {
  /** Aborted when another holder took the lock over (this one was presumed dead). */
  readonly signal: AbortSignal;
  release(): void;
}

export interface LockOwner {
  token: string;
  pid: number;
  host: string;
  what: string;
  since: string;
}

/** Thrown when a live holder has the lock. Transient: the caller retries once the holder stops. */
export class LockBusyError extends Error {
  override name = 'LockBusyError';
  constructor(
    readonly path: string,
    readonly owner: LockOwner | undefined,
  ) {
    super(
      `${path} is held by ${owner ? `${owner.what} (pid ${owner.pid} on ${owner.host}, since ${owner.since})` : 'another writer'}, which has not stopped; try again once it has`,
    );
  }
}

function readOwner(path: string): LockOwner | undefined {
  try {
    return parseOwner(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** A lock file's owner, when the text is one; anything else (damaged, hostile) is undefined. */
export function parseOwner(text: string | undefined): LockOwner | undefined {
  if (text === undefined) return undefined;
  try {
    const o = JSON.parse(text) as Partial<LockOwner> | null;
    if (typeof o !== 'object' || o === null || typeof o.token !== 'string') return undefined;
    const str = (v: unknown) => (typeof v === 'string' ? v.slice(0, 200) : '?');
    return {
      token: o.token,
      pid: Number.isSafeInteger(o.pid) && o.pid! > 0 ? o.pid! : 0,
      host: str(o.host),
      what: str(o.what),
      since: str(o.since),
    };
  } catch {
    return undefined;
  }
}

/** The holder was a process on this host that no longer exists. A reused pid only makes this answer no. */
export function holderGone(owner: LockOwner | undefined): boolean {
  if (!owner || owner.host !== hostname() || !Number.isSafeInteger(owner.pid) || owner.pid <= 0 || owner.pid === process.pid) return false;
  return !processAlive(owner.pid);
}

function create(path: string, owner: LockOwner): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'wx');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw e;
  }
  try {
    writeSync(fd, JSON.stringify(owner));
  } finally {
    closeSync(fd);
  }
  return true;
}

export function acquireDirLock(path: string, opts: { what: string; staleMs?: number; refreshMs?: number; now?: () => number }): DirLock {
  const staleMs = opts.staleMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const owner: LockOwner = {
    token: randomBytes(8).toString('hex'),
    pid: process.pid,
    host: hostname(),
    what: opts.what,
    since: new Date(now()).toISOString(),
  };
  if (!create(path, owner)) {
    let mtime: number | undefined;
    try {
      mtime = statSync(path).mtimeMs;
    } catch {
      /* released meanwhile */
    }
    const holder = readOwner(path);
    if (mtime !== undefined && now() - mtime < staleMs && !holderGone(holder)) throw new LockBusyError(path, holder);
    // Stale: move it aside atomically (only one taker wins the rename), then create ours.
    const aside = `${path}.stale-${owner.token}`;
    try {
      renameSync(path, aside);
      unlinkSync(aside);
    } catch {
      /* another taker moved it first */
    }
    if (!create(path, owner)) throw new LockBusyError(path, readOwner(path));
  }
  const ac = new AbortController();
  const ours = () => readOwner(path)?.token === owner.token;
  const timer = setInterval(
    () => {
      if (!ours()) {
        clearInterval(timer);
        ac.abort(`lost the lock on ${path} to another attempt`);
        return;
      }
      const t = new Date(now());
      try {
        utimesSync(path, t, t);
      } catch {
        /* checked again on the next tick */
      }
    },
    opts.refreshMs ?? Math.max(50, Math.floor(staleMs / 4)),
  );
  timer.unref();
  return {
    signal: ac.signal,
    release() {
      clearInterval(timer);
      // Never remove a lock another attempt took over.
      if (ours()) {
        try {
          unlinkSync(path);
        } catch {
          /* already gone */
        }
      }
    },
  };
}
