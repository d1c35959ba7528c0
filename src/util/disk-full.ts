/**
 * Telling a full disk from other failures, and saying which disk. Node's ENOSPC from a write names no
 * file (`ENOSPC: no space left on device, write`) and SQLite's SQLITE_FULL says "database or disk is
 * full": neither tells a user where to free space. `diskFullError` looks at the folders the failed
 * work wrote to and names the one on the disk with the least space left.
 */
import { existsSync, statSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { DiskFullError, errorChain } from '../errors.ts';

/** Error codes of a write refused for want of space: Node's errno codes and SQLite's. */
const FULL_CODES = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL']);

/** Whether `e` (or an error it was caused by) is a write refused for want of space. */
export function isDiskFull(e: unknown): boolean {
  for (const c of errorChain(e)) {
    if (c instanceof DiskFullError) return true;
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string' && FULL_CODES.has(code)) return true;
  }
  return false;
}

export function bytesText(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(2)} GiB`;
}

/** The free and total bytes of the disk that holds `path` (its nearest existing folder), or undefined. */
export function diskSpace(path: string): { path: string; free: number; total: number; dev: number } | undefined {
  let p = resolve(path);
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  try {
    const fs = statfsSync(p);
    return { path: p, free: fs.bavail * fs.bsize, total: fs.blocks * fs.bsize, dev: statSync(p).dev };
  } catch {
    return undefined;
  }
}

/** Each disk among `folders` once, by the first folder listed on it (the most specific one the caller knows of). */
function disksOf(folders: readonly string[]): { folder: string; space: NonNullable<ReturnType<typeof diskSpace>> }[] {
  const seen = new Set<number>();
  const out: { folder: string; space: NonNullable<ReturnType<typeof diskSpace>> }[] = [];
  for (const folder of folders) {
    const space = diskSpace(folder);
    if (!space || seen.has(space.dev)) continue;
    seen.add(space.dev);
    out.push({ folder, space });
  }
  return out;
}

/**
 * What to do about a full disk that stopped a run's work: `runId`, where the caller knows it, is named in the resume
 * command, so it can be copied as it is; without one the wording says which command, and where to find the id.
 */
export function diskFullHint(runId?: string): string {
  const resume =
    runId !== undefined
      ? `then \`tempered resume ${runId}\``
      : 'then resume the failed run (`tempered resume RUN_ID`; `tempered runs` lists the ids)';
  return (
    `free space on that disk, or point TEMPERED_HOME (TMPDIR for temporary files) at a larger one, ${resume}: ` +
    'finished stages are reused and a training continues from its last checkpoint. ' +
    FREEING
  );
}

/** Where space can be freed in TEMPERED_HOME. */
const FREEING =
  'In TEMPERED_HOME, `tempered store gc` shows the stored artifacts nothing keeps (`--collect` deletes them, once older ' +
  'than --older-than days), and the model copies under serving/ can be deleted while no `tempered serve` uses them';

/** The hint of a full disk met where no run is known (a library write outside a stage, a command about no run). */
export const DISK_FULL_HINT = diskFullHint();

/**
 * What to do when `tempered serve` finds its disk full: no run to resume. `swap`: a new version could not be taken, and
 * the server goes on with the version it has and loads the new one again by itself (/health's behind.retryAt);
 * `start`: nothing is served yet.
 */
export function serveDiskFullHint(when: 'start' | 'swap'): string {
  return (
    (when === 'swap'
      ? 'free space on that disk (or point TEMPERED_HOME at a larger one and restart the server): until then the server ' +
        'keeps answering with the version it has, and it loads the new one again by itself at the time /health gives as behind.retryAt. '
      : 'free space on that disk, or point TEMPERED_HOME at a larger one, then start `tempered serve` again. ') + FREEING
  );
}

/** `e` with another hint: one built deep in the library knows less of the work than the caller that reports it. */
function withHint(e: DiskFullError, hint: string): DiskFullError {
  if (e.hint === hint) return e;
  const again = new DiskFullError(e.message, {
    path: e.path,
    freeBytes: e.freeBytes,
    totalBytes: e.totalBytes,
    neededBytes: e.neededBytes,
    hint,
    cause: e.cause,
  });
  again.stack = e.stack;
  return again;
}

/**
 * `e`, a full disk's error, as a DiskFullError naming the folder whose disk is full: the file the
 * error names if it does, else, of `folders` (the places the failed work writes to, most specific
 * first), one on the disk with the least space left. An error that is one already (or was caused by one) is returned
 * as it is, with `hint` where one is given: one built deep in the library (a store put, a checkpoint) names its folder
 * already, but knows less of the work than the caller that reports it (the run to resume, a server's retry). `at`: the
 * folder to name whatever file the error names, for a caller that wrote into a temp folder of its own and has removed
 * it (the error's file is gone, and named a place the user never sees).
 */
export function diskFullError(
  e: unknown,
  folders: readonly string[],
  opts: { neededBytes?: number; hint?: string; at?: string } = {},
): DiskFullError {
  for (const c of errorChain(e)) if (c instanceof DiskFullError) return opts.hint === undefined ? c : withHint(c, opts.hint);
  // Where the write failed, when the error says (a copy's destination, an open's or a mkdir's path).
  const named =
    opts.at ?? [(e as { dest?: unknown })?.dest, (e as { path?: unknown })?.path].find((p): p is string => typeof p === 'string');
  let where: string | undefined;
  let space: ReturnType<typeof diskSpace>;
  if (named !== undefined) {
    where = opts.at ?? dirname(named);
    space = diskSpace(named);
  } else {
    for (const d of disksOf(folders)) if (!space || d.space.free < space.free) [where, space] = [d.folder, d.space];
  }
  where ??= folders[0] ?? '.';
  const facts = [
    ...(space ? [`${bytesText(space.free)} free of ${bytesText(space.total)}`] : []),
    ...(opts.neededBytes !== undefined ? [`this write needed ${bytesText(opts.neededBytes)}`] : []),
  ];
  const original = e instanceof Error ? e.message : String(e);
  return new DiskFullError(`no space left on the disk that holds ${where}${facts.length ? ` (${facts.join('; ')})` : ''}: ${original}`, {
    path: where,
    freeBytes: space?.free,
    totalBytes: space?.total,
    neededBytes: opts.neededBytes,
    hint: opts.hint ?? DISK_FULL_HINT,
    cause: e,
  });
}

/**
 * A note for a failure whose error says nothing of space while a disk it may have written to is
 * (nearly) full: the Temporal dev server, whose database is in TEMPERED_HOME, answers "shard status
 * unknown" and the CLI "Failed to describe workflow" when that disk is full. Undefined when every
 * disk of `folders` has room (less than 64 MiB free, or 5 % of a small disk, counts as full). `runId`: the run the
 * failed command was about, where it knows one, named in the commands the note suggests.
 */
export function lowSpaceNote(folders: readonly string[], runId?: string): string | undefined {
  const then =
    runId !== undefined
      ? `\`tempered status ${runId}\` says what the run waits for; \`tempered resume ${runId}\` takes it up again if it failed`
      : '`tempered status RUN_ID` says what a run waits for, `tempered resume RUN_ID` takes a failed one up again; `tempered runs` lists the ids';
  for (const { folder, space: s } of disksOf(folders)) {
    if (s.free < Math.min(64 * 1024 ** 2, s.total * 0.05))
      return `note: the disk that holds ${folder} has ${bytesText(s.free)} free of ${bytesText(s.total)}, which may be why this failed (a full disk stops the store, the registry and the Temporal dev server, whose database is under TEMPERED_HOME): free space there, then try again (${then})`;
  }
  return undefined;
}
