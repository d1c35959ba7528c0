/**
 * An exclusive lock on a folder that several attempts of the same work could write (a retried
 * train stage and the zombie attempt that lost its heartbeat but still runs; two runs of the same
 * config). The lock is a file created with O_EXCL beside the folder, naming its owner, and kept
 * fresh by its holder. A lock not refreshed within `staleMs` is taken over; the old holder then
 * finds on its next refresh that it lost the lock, and its `signal` aborts, so it stops writing.
 * A lock whose holder ran on this machine and is gone (a stage process that crashed or was killed for
 * its memory) is taken over at once: its retry should not wait out `staleMs`; one whose holder on this
 * machine is alive is never taken over, since a process blocked in a long onnxruntime run refreshes
 * nothing meanwhile (only a holder elsewhere, on a shared folder, is judged by its refreshes).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { closeSync, openSync, readFileSync, renameSync, statSync, unlinkSync, utimesSync, writeSync } from 'node:fs';
import { machineId, processAlive, processStart } from './process-alive.ts';

export interface DirLock {
  /** Aborted when another holder took the lock over (this one was presumed dead). */
  readonly signal: AbortSignal;
  release(): void;
}

export interface LockOwner {
  token: string;
  pid: number;
  host: string;
  /** machineId() of the holder's process table: its pid is meaningful only where this is the same. */
  machine?: string;
  /** processStart() of the holder: a process with its pid but another start is not the holder. */
  pidStart?: string;
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
      ...(typeof o.machine === 'string' ? { machine: o.machine.slice(0, 300) } : {}),
      ...(typeof o.pidStart === 'string' ? { pidStart: o.pidStart.slice(0, 40) } : {}),
      what: str(o.what),
      since: str(o.since),
    };
  } catch {
    return undefined;
  }
}

/** Whether the holder's pid can be looked up here: another process of this process table. */
function sameProcessTable(owner: LockOwner): boolean {
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0 || owner.pid === process.pid) return false;
  // Locks written before `machine` was recorded name the host alone.
  return owner.machine !== undefined ? owner.machine === machineId() : owner.host === hostname();
}

/** Whether the holder still runs; undefined when that cannot be told from here. */
function holderRuns(owner: LockOwner | undefined): boolean | undefined {
  if (!owner || !sameProcessTable(owner)) return undefined;
  if (!processAlive(owner.pid)) return false;
  // Its pid given to another process since (a lock recorded without a start time cannot tell).
  return owner.pidStart === undefined || processStart(owner.pid) === owner.pidStart;
}

/** The holder was a process on this machine that no longer exists. */
export function holderGone(owner: LockOwner | undefined): boolean {
  return holderRuns(owner) === false;
}

/**
 * The holder is a live process on this machine: its lock holds however long ago it was refreshed, since
 * a process blocked in a long native run (onnxruntime's, minutes for an LLM on a CPU) refreshes nothing.
 */
export function holderAlive(owner: LockOwner | undefined): boolean {
  return holderRuns(owner) === true;
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

/** This process as the holder of a new lock or lease, with a token of its own. */
export function newOwner(what: string, now: number): LockOwner {
  return {
    token: randomBytes(8).toString('hex'),
    pid: process.pid,
    host: hostname(),
    machine: machineId(),
    pidStart: processStart(process.pid),
    what,
    since: new Date(now).toISOString(),
  };
}

/**
 * Who holds the lock at `path` so that acquireDirLock would refuse it (a live holder on this machine,
 * or one elsewhere that refreshed it within `staleMs`), or undefined when it is free or taken over. A
 * look, not a claim: `store gc` reports with it and takes the lock itself before it deletes.
 */
export function lockHolder(path: string, staleMs: number, now: number): { owner: LockOwner | undefined } | undefined {
  let mtime: number;
  try {
    mtime = statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
  const holder = readOwner(path);
  return holderAlive(holder) || (now - mtime < staleMs && !holderGone(holder)) ? { owner: holder } : undefined;
}

export function acquireDirLock(path: string, opts: { what: string; staleMs?: number; refreshMs?: number; now?: () => number }): DirLock {
  const staleMs = opts.staleMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const owner = newOwner(opts.what, now());
  if (!create(path, owner)) {
    const busy = lockHolder(path, staleMs, now());
    if (busy) throw new LockBusyError(path, busy.owner);
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
