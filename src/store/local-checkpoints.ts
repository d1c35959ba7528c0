/**
 * Garbage collection of this host's training checkpoints (`TEMPERED_HOME/checkpoints/<cache key>/`,
 * `step-N/` folders and the token cache a train stage writes there), for `tempered store gc`.
 *
 * A train stage that fails and is never resumed leaves its folder for good: gigabytes for an LLM's
 * full fine-tuning. A folder is garbage when:
 *
 * - its stage finished (`COMPLETE` in it: the stage clears the rest itself, a crash in between leaves it): what is
 *   beside the mark goes, the mark (the finished record a retry whose completion was lost returns) by the rules below;
 * - its cache key has a stage-cache record that this collection keeps (written or used after the
 *   horizon) and that was created after the folder's last write, at once whatever the folder's age:
 *   the work completed (on another worker) after this training stopped, so every run of it that
 *   looks the record up, `tempered resume` included, is a cache hit and never reads the folder. A
 *   folder written after its record is a training that did not look it up (a stage with
 *   `cache: false`, a `--no-cache` submit whose attempt is retried): its retry or resume reads the
 *   folder, which is then judged by its age alone. A record that expires now does not count either:
 *   this collection drops it, and the next run of that work trains again and may resume from the folder;
 * - nothing in it was written since the horizon (the newest mtime of the folder and all it holds: a
 *   training writes a `step-N` every `checkpointEvery` steps), as for the rest of gc: a failed run
 *   left for longer than that is not going to be resumed, or the resume costs a training from step 0.
 *
 * and never while its lock (`<folder>.lock`, src/util/dir-lock.ts) is held: a live process on this
 * machine (a training blocked for minutes in one native run refreshes nothing), or a holder elsewhere
 * (a shared folder, another pid namespace) not known to be gone that refreshed it since the horizon.
 * Such a holder refreshes nothing either while blocked in a native run; a train stage takes its lock
 * over after TEMPERED_CHECKPOINT_LOCK_STALE_MS, as it must to retry, but a gc is in no hurry, and
 * taking it over would make that training abort on its next refresh. Collecting takes that lock itself, as a
 * train stage does, so a training that starts meanwhile waits for it (acquireCheckpointLock), judges the
 * folder again under it, then renames it aside (`.<name>.gc-<pid>-<token>`, `<name>` hashed when long; nothing reads these) before
 * deleting: a gc killed mid-delete leaves no folder a resume could take for a checkpoint (a resume reads
 * `<name>/step-N/manifest.json` only), just the aside folder that the next collection deletes once its
 * gc is dead. A kept folder loses its stray temp folders (`.step-N.tmp-<pid>[.old]` of dead writers:
 * half-written checkpoints), as the train stage's own `removeStaleTemps` would on its next start.
 */
import { existsSync, lstatSync, readdirSync, readFileSync, renameSync, rmSync, utimesSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { acquireDirLock, LockBusyError, lockHolder, type DirLock, type LockOwner } from '../util/dir-lock.ts';
import { processAlive } from '../util/process-alive.ts';

/** How a collecting gc names itself as a checkpoint lock's holder: what a train stage waits out instead of failing. */
export const GC_HOLDER = 'tempered store gc';

/** The longest a train stage waits for a gc that holds its checkpoint lock: gc holds it to judge and rename a folder. */
export const WAIT_FOR_GC_MS = 30_000;

/**
 * A train stage's lock on its checkpoint folder. Held by a collecting `store gc`, it is free again within moments (a
 * judge and a rename), so the stage waits for it here: failed with LockBusyError, the attempt counted against the
 * stage's retries, and a stage allowed one attempt failed the run. A holder `waitFor` accepts (another run's training
 * of the same work, overlap allow-all) is waited for as long as `signal` allows: it holds the lock for its whole
 * training, which the stage's retries (3 in about 3 s by default) never outlasted, so the second run failed while the
 * first trained. Any other live holder (an earlier attempt of the same stage still running) is thrown at once, as
 * acquireDirLock does: the stage's retry policy decides.
 */
export async function acquireCheckpointLock(
  path: string,
  opts: {
    what: string;
    staleMs: number;
    signal?: AbortSignal;
    onWait?: (busy: LockBusyError) => void;
    waitFor?: (owner: LockOwner | undefined) => boolean;
  },
): Promise<DirLock> {
  const deadline = Date.now() + WAIT_FOR_GC_MS;
  for (let told: string | undefined; ; ) {
    try {
      return acquireDirLock(path, { what: opts.what, staleMs: opts.staleMs });
    } catch (e) {
      if (!(e instanceof LockBusyError)) throw e;
      const gc = e.owner?.what.startsWith(GC_HOLDER) === true && Date.now() < deadline;
      if (!gc && !opts.waitFor?.(e.owner)) throw e;
      // Told once per holder: a wait of hours behind a training is one line, and a holder that follows another is news.
      if (told !== e.owner?.token) opts.onWait?.(e);
      told = e.owner?.token;
      await sleep(gc ? 100 : 1000, undefined, { signal: opts.signal });
    }
  }
}

/** The marker a finished train stage leaves in its folder (src/stages/train.ts). */
export const COMPLETE = 'COMPLETE';

/**
 * The finished records (`COMPLETE` marks) under `dir`, as texts: `store gc` keeps what they name, as it keeps what a
 * shared checkpoint's pointer names, so that a record it keeps never names outputs it deleted. Without that, outputs
 * older than their mark (bytes stored less than a day before the training put them again are not marked again) went
 * before it near the horizon, and a retry whose completion was lost found the record but trained from step 0. A mark
 * that cannot be read stops the collection, as a pointer does; one cleared meanwhile (a training began) names nothing.
 */
export function finishedMarks(dir: string): string[] {
  const texts: string[] = [];
  for (const name of readdirOrNone(dir)) {
    // What a collection renamed aside is on its way out; a dot-named training's folder is judged as any, and any other
    // dot-named folder is not tempered's (collectOne): read, one this user may not open (EACCES) stopped the collection.
    if (ASIDE.test(name) || (name.startsWith('.') && !holdsTraining(join(dir, name)))) continue;
    try {
      texts.push(readFileSync(join(dir, name, COMPLETE), 'utf8'));
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    }
  }
  return texts;
}

/** How long a checkpoint lock or shared lease may go unrefreshed before its holder is presumed dead (TEMPERED_CHECKPOINT_LOCK_STALE_MS). */
export function checkpointLockStaleMs(): number {
  const v = Number(process.env.TEMPERED_CHECKPOINT_LOCK_STALE_MS);
  return Number.isFinite(v) && v > 0 ? v : 60_000;
}

/** Why a folder (or part of one) is garbage. */
export type CheckpointGarbageReason =
  /** `COMPLETE` in it: its stage finished and only the clean-up was cut short. */
  | 'finished'
  /** Its cache key has a stage-cache record that stays: every run of that work is a cache hit. */
  | 'completed elsewhere'
  /** Nothing in it written since the horizon. */
  | 'abandoned'
  /** Half-written checkpoints (`.step-N.tmp-<pid>`) of writers that are gone, in a folder that stays. */
  | 'stray temps'
  /** What a collection killed mid-delete left aside. */
  | 'interrupted gc';

export interface LocalCheckpointItem {
  /** The folder's name under the checkpoints folder: the stage's cache key (or `<run>-<stage>`). */
  name: string;
  bytes: number;
  why: CheckpointGarbageReason;
  /** The newest write in it, ISO. */
  lastWrite: string;
  deleted: boolean;
}

export interface LocalCheckpointsReport {
  dir: string;
  /** Folders that stay: written since the horizon of work not done, or held. */
  kept: number;
  keptBytes: number;
  /** Of those kept, folders whose lock a running training holds (whatever their age). */
  held: number;
  /** Folders (and stray temps in kept ones) to delete, or deleted. */
  garbage: number;
  garbageBytes: number;
  deleted: number;
  deletedBytes: number;
  /** The garbage, one entry a folder, largest first. */
  items: LocalCheckpointItem[];
}

export interface LocalCheckpointOptions {
  /** `TEMPERED_HOME/checkpoints`. */
  dir: string;
  /** ms since the epoch: a folder with nothing written since is abandoned. */
  horizon: number;
  /** Cache keys with a stage-cache record that stays, each with its record's `createdAt` (ms). */
  completed: ReadonlyMap<string, number>;
  collect: boolean;
  /**
   * How long the lock of a holder on another machine may go unrefreshed before it is taken over;
   * default the horizon's length (at least checkpointLockStaleMs()).
   */
  staleMs?: number;
}

const TEMP = /^\.step-\d+\.tmp-(\d+)(\.old)?$/;

/**
 * The name a collection renames `name` aside to. `.<name>.gc-<pid>-<8 hex>` is up to 21 bytes longer than the name: one
 * of 235 to 250 bytes (a train stage named it so before 8 Dec 2026, when it began naming longer ones by their hash)
 * gets its sha256 instead, as rename failed ENAMETOOLONG and stopped the whole collection.
 */
function asideName(name: string): string {
  const base = Buffer.byteLength(name) > 234 ? createHash('sha256').update(name).digest('hex') : name;
  return `.${base}.gc-${process.pid}-${randomBytes(4).toString('hex')}`;
}
const ASIDE = /^\..+\.gc-(\d+)-[0-9a-f]+$/;

/** Whether a folder holds what a train stage writes in its checkpoint folder: a checkpoint, its temp, its mark or tokens. */
function holdsTraining(path: string): boolean {
  return readdirOrNone(path).some((n) => /^step-\d+$/.test(n) || TEMP.test(n) || n === COMPLETE || n === 'tokens');
}

/** Bytes and newest mtime of a tree, links not followed; zero and -Infinity when it is gone. */
function measure(path: string): { bytes: number; newest: number } {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return { bytes: 0, newest: -Infinity };
  }
  let bytes = st.isDirectory() ? 0 : st.size;
  let newest = st.mtimeMs;
  if (st.isDirectory()) {
    let names: string[] = [];
    try {
      names = readdirSync(path);
    } catch {
      /* removed meanwhile */
    }
    for (const n of names) {
      const m = measure(join(path, n));
      bytes += m.bytes;
      newest = Math.max(newest, m.newest);
    }
  }
  return { bytes, newest };
}

interface Judged {
  why?: Exclude<CheckpointGarbageReason, 'stray temps' | 'interrupted gc'>;
  bytes: number;
  newest: number;
  /** Stray temp folders in a folder that stays, by name. */
  temps: { name: string; bytes: number }[];
  /** A finished folder's entries but its mark: what goes of it (`bytes` counts them alone). */
  leftovers?: string[];
}

function readdirOrNone(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** Undefined when the folder is gone (a training that took its lock since the look cleared it). */
function judge(path: string, name: string, opts: LocalCheckpointOptions): Judged | undefined {
  const { bytes, newest } = measure(path);
  if (newest === -Infinity) return undefined;
  // A record no newer than the folder's last write is one the training that wrote it did not look up.
  const doneAt = opts.completed.get(name) ?? NaN;
  // A finished folder's mark holds its training's outputs, which a retry whose completion was lost returns instead of
  // training again (src/stages/train-finished.ts): what its clean-up left beside it goes at once, the mark (a few
  // hundred bytes) by its age as any folder does, so a gc between the finish and the retry costs no training.
  const leftovers = existsSync(join(path, COMPLETE)) ? readdirOrNone(path).filter((n) => n !== COMPLETE) : [];
  const why = leftovers.length ? 'finished' : doneAt > newest ? 'completed elsewhere' : newest < opts.horizon ? 'abandoned' : undefined;
  const temps: Judged['temps'] = [];
  if (!why)
    for (const n of readdirOrNone(path)) {
      const m = TEMP.exec(n);
      if (m && !processAlive(Number(m[1]))) temps.push({ name: n, bytes: measure(join(path, n)).bytes });
    }
  if (why === 'finished') return { why, bytes: leftovers.reduce((n, l) => n + measure(join(path, l)).bytes, 0), newest, temps, leftovers };
  return { why, bytes, newest, temps };
}

/** A collection that stopped part-way, with the report of what it had deleted by then. */
export class LocalCheckpointsIncomplete extends Error {
  override name = 'LocalCheckpointsIncomplete';
  constructor(
    override readonly cause: unknown,
    readonly report: LocalCheckpointsReport,
  ) {
    super(`the collection of ${report.dir} stopped part-way (${report.deleted} folders deleted): ${(cause as Error)?.message ?? cause}`);
  }
}

/** Judges (and, collecting, deletes) the checkpoint folders under `opts.dir`. */
export function collectLocalCheckpoints(opts: LocalCheckpointOptions): LocalCheckpointsReport {
  const staleMs = opts.staleMs ?? Math.max(checkpointLockStaleMs(), Date.now() - opts.horizon);
  const report: LocalCheckpointsReport = {
    dir: opts.dir,
    kept: 0,
    keptBytes: 0,
    held: 0,
    garbage: 0,
    garbageBytes: 0,
    deleted: 0,
    deletedBytes: 0,
    items: [],
  };
  const names = existsSync(opts.dir) ? readdirSync(opts.dir).sort() : [];
  const garbage = (name: string, bytes: number, why: CheckpointGarbageReason, newest: number): LocalCheckpointItem => {
    const item = { name, bytes, why, lastWrite: new Date(newest).toISOString(), deleted: false };
    report.items.push(item);
    report.garbage++;
    report.garbageBytes += bytes;
    return item;
  };
  const deleted = (item: LocalCheckpointItem) => {
    item.deleted = true;
    report.deleted++;
    report.deletedBytes += item.bytes;
  };
  const keep = (bytes: number, held: boolean) => {
    report.kept++;
    report.keptBytes += bytes;
    if (held) report.held++;
  };
  /** Counts a judged folder: garbage whole, or kept less its stray temps (garbage). The item to delete, if any. */
  const tally = (name: string, j: Judged): LocalCheckpointItem | undefined => {
    if (j.why) return garbage(name, j.bytes, j.why, j.newest);
    const tempBytes = j.temps.reduce((n, t) => n + t.bytes, 0);
    keep(j.bytes - tempBytes, false);
    return j.temps.length ? garbage(name, tempBytes, 'stray temps', j.newest) : undefined;
  };

  try {
    for (const name of names) collectOne(name);
  } catch (e) {
    // What went before the failure is reported with it: the audit record names every deleted folder.
    throw new LocalCheckpointsIncomplete(e, report);
  } finally {
    report.items.sort((a, b) => b.bytes - a.bytes || a.name.localeCompare(b.name));
  }
  return report;

  function collectOne(name: string): void {
    const path = join(opts.dir, name);
    let st;
    try {
      st = lstatSync(path);
    } catch {
      return;
    }
    if (!st.isDirectory()) return;
    const aside = ASIDE.exec(name);
    if (aside) {
      // A collection's own aside folder, left by one that was killed: nothing else reads these names. A live pid is
      // its collection's only while something in it still goes (a delete changes its folders' times): the pid may be
      // another process's since (reused, or in another pid namespace: a gc in a container is often pid 1), which
      // would keep the folder for good.
      const { bytes, newest } = measure(path);
      if (processAlive(Number(aside[1])) && Date.now() - newest < checkpointLockStaleMs()) return;
      const item = garbage(name, bytes, 'interrupted gc', newest);
      if (opts.collect) {
        rmSync(path, { recursive: true, force: true });
        deleted(item);
      }
      return;
    }
    // A train stage names no folder with a leading dot since 8 Dec 2026 (gc takes such names for its own aside
    // folders), but a library caller without a cache key named one after a run id like `.x`, which gc skipped for good:
    // judged as any folder where it holds what a training writes. Any other dot-name (a file server's `.snapshot`) is
    // not tempered's, and is left alone.
    if (name.startsWith('.') && !holdsTraining(path)) return;
    const lockPath = `${path}.lock`;
    // Lock times are the wall clock's, whatever the horizon is reckoned from.
    if (lockHolder(lockPath, staleMs, Date.now())) {
      keep(measure(path).bytes, true);
      return;
    }
    const first = judge(path, name, opts);
    if (!first) return;
    if (!opts.collect || (!first.why && !first.temps.length)) {
      tally(name, first);
      return;
    }
    // The train stage's own lock: a training that starts now waits for it (and retries), one that
    // started since the look above keeps its folder.
    let lock;
    try {
      // Refreshed as a train stage's lock is: a training elsewhere judges it by its own staleness.
      const refreshMs = Math.max(50, Math.floor(checkpointLockStaleMs() / 4));
      lock = acquireDirLock(lockPath, { what: `${GC_HOLDER} (pid ${process.pid})`, staleMs, refreshMs });
    } catch (e) {
      if (!(e instanceof LockBusyError)) throw e;
      keep(first.bytes, true);
      return;
    }
    let release = true;
    try {
      // Judged again under the lock: a training may have written (or finished) since the look.
      const j = judge(path, name, opts);
      if (!j) return;
      const item = tally(name, j);
      if (!item) return;
      if (j.leftovers) {
        // A finished folder keeps its mark; what is beside it is read by nobody (a training clears the whole folder,
        // a resume never reads one with the mark).
        for (const n of j.leftovers) rmSync(join(path, n), { recursive: true, force: true });
      } else if (j.why) {
        // Renamed out of the train stage's sight first, so a delete cut short leaves nothing under
        // the name a resume reads; the lock can go as soon as the name is free.
        const to = join(opts.dir, asideName(name));
        renameSync(path, to);
        // Its time is the training's, maybe months old: renewed, so that another collection meanwhile reads it as this
        // one's while this one deletes it (a live pid's aside folder goes once nothing in it changed for a while).
        // Best effort: setting a time is for the folder's owner alone (EPERM for another user's gc in a shared,
        // group-writable checkpoints folder, where the rename and delete work); without it, a concurrent gc may delete the
        // folder too, which both survive (rmSync with force).
        const now = new Date();
        try {
          utimesSync(to, now, now);
        } catch {
          /* not the owner */
        }
        lock.release();
        release = false;
        rmSync(to, { recursive: true, force: true });
      } else {
        // Stray temps, read by nobody (a resume lists `step-N` folders only), so deleted in place.
        for (const t of j.temps) rmSync(join(path, t.name), { recursive: true, force: true });
      }
      deleted(item);
    } finally {
      if (release) lock.release();
    }
  }
}
