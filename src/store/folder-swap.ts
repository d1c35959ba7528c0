/**
 * Compare-and-swap of a small file that processes on several hosts replace through one shared folder (NFS): what S3's
 * `If-Match` does for a checkpoint pointer. POSIX has no conditional rename, so each swap holds a lock, a folder
 * `<file>.tempered-swap`: under it the swapper reads the file, compares its version (the bytes' sha256) with the one
 * expected, and renames its new bytes in.
 *
 * A lock left by a crash is taken over (its holder's process gone on this machine, or the lock older than `staleMs`),
 * and so is one whose holder is only paused (SIGSTOP, a long GC, a host cut off): the old holder must then never write.
 * It cannot be trusted to check first (it may pause between the check and the write), so the write checks itself:
 * the swapper builds its lock in a folder of its own (`<file>.tempered-swap.<token>.new`, holding its owner and its new
 * bytes) and takes the lock by renaming that folder to the lock's name (refused while another, never empty, is there),
 * and its new bytes are renamed in from inside the lock; a takeover renames the lock folder aside and deletes it before
 * the taker goes on. The old holder's rename then names a file that no longer exists (its path is resolved when the
 * rename runs; on NFS its client may still resolve the lock's name to the folder's cached handle, which the rename
 * aside keeps, but the file in it is gone once the taker's delete has run, and the handle stale after) and fails; it
 * starts over, and finds the version changed. (One that lands before that delete lands before the taker reads.) (A lock
 * made by mkdir and then filled would not do: a holder paused between its mkdir and its writes would write them into
 * the folder of the swapper that took it over, and rename through that one's lock.)
 *
 * A swapper killed mid-swap can leave its built folder or an aside beside the lock. They are swept only where one may be:
 * by a swapper that took over a lock (its holder died, maybe with others of its host), and by `store gc`, which finds
 * them as unfinished uploads (FolderBackend.unfinishedUploads) once older than its horizon. Never by every swap: that
 * listed the pointers' whole folder (`checkpoints/`, one entry per training, over NFS) on every checkpoint.
 */
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { holderGone, newOwner, parseOwner } from '../util/dir-lock.ts';

/**
 * The lock folder's suffix, its aside folders' (`<file>.tempered-swap.<hex>.stale`) and a swapper's own before it takes
 * the lock (`….<token>.new`): listings skip them.
 */
export const SWAP_LOCK = /\.tempered-swap(\.[0-9a-f]+\.(stale|new))?$/;
/** What a swapper killed mid-swap leaves beside the lock: its built folder (`.new`) or an aside not yet deleted (`.stale`). */
export const SWAP_LEFTOVER = /\.tempered-swap\.[0-9a-f]+\.(stale|new)$/;
/** A swap holds its lock for a read and a rename (milliseconds, a little more on NFS). */
const STALE_MS = 10_000;
const ATTEMPTS = 200;
/** Older than any swap that is still trying (ATTEMPTS' waits take under a minute): a folder built for the lock and left. */
const LEFTOVER_MS = 10 * 60_000;

export function fileTag(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export interface SwapOptions {
  /** How old a lock must be before it is taken over (default 10 s). */
  staleMs?: number;
  /** Runs under the lock, before the version check: where a test pauses a swapper that has just taken the lock. */
  locked?: () => Promise<void>;
  /** Runs under the lock, after the version check and before the rename: where a test pauses a swapper. */
  beforeRename?: () => Promise<void>;
}

/** Replaces `file` with `bytes` if its version is `expect` (undefined: if it does not exist); the new tag, or 'conflict'. */
export async function swapFile(
  file: string,
  bytes: Uint8Array,
  expect: string | undefined,
  opts: SwapOptions = {},
): Promise<{ etag: string } | 'conflict'> {
  return (await underLock(file, bytes, expect, opts)) ? { etag: fileTag(bytes) } : 'conflict';
}

/**
 * Deletes `file` if its version is `expect`, under the same lock and fence as a swap: the file is renamed into a folder
 * inside the lock (so a deleter whose lock was taken over finds no such folder and deletes nothing) and goes with the
 * lock's release. 'conflict' when the file changed or went since `expect` was read.
 */
export async function deleteFile(file: string, expect: string, opts: SwapOptions = {}): Promise<'deleted' | 'conflict'> {
  return (await underLock(file, undefined, expect, opts)) ? 'deleted' : 'conflict';
}

/** A swap (`bytes`) or a delete (undefined) of `file` if its version is `expect`; whether it was done. */
async function underLock(file: string, bytes: Uint8Array | undefined, expect: string | undefined, opts: SwapOptions): Promise<boolean> {
  const lock = `${file}.tempered-swap`;
  const staleMs = opts.staleMs ?? STALE_MS;
  const owner = newOwner(`swap of ${file}`, Date.now());
  const own = `${lock}.${owner.token}.new`;
  const mine = `${owner.token}.new`;
  let built = false;
  try {
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      if (!built) {
        // Its owner and its new bytes are in the folder before it can be the lock: nothing is written through the lock's name.
        await fsp.rm(own, { recursive: true, force: true });
        await fsp.mkdir(own);
        await fsp.writeFile(`${own}/owner`, JSON.stringify(owner));
        if (bytes === undefined) await fsp.mkdir(`${own}/${mine}`);
        else {
          const fh = await fsp.open(`${own}/${mine}`, 'wx');
          try {
            await fh.writeFile(bytes);
            await fh.sync();
          } finally {
            await fh.close();
          }
        }
        built = true;
      }
      try {
        await fsp.rename(own, lock);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code ?? '';
        // Its folder swept as a leftover (this swapper was paused for LEFTOVER_MS): built again.
        if (code === 'ENOENT') {
          built = false;
          continue;
        }
        // A directory renamed onto a non-empty one: ENOTEMPTY on Linux, EEXIST elsewhere (POSIX allows both).
        if (!['ENOTEMPTY', 'EEXIST'].includes(code)) throw e;
        const taken = await takeOverIfStale(lock, staleMs);
        // A holder died (or was taken for dead): what other swappers of its host left may be beside the lock too.
        // Housekeeping: a failure here is no reason to fail the swap.
        if (taken === 'taken over') await sweep(lock, staleMs).catch(() => {});
        else if (!taken) await sleep(Math.min(200, 5 * attempt));
        continue;
      }
      built = false;
      try {
        await opts.locked?.();
        const current = await fsp.readFile(file).catch((e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return undefined;
          throw e;
        });
        if ((current === undefined ? undefined : fileTag(current)) !== expect) return false;
        await opts.beforeRename?.();
        // The fence: from inside the lock folder (into it, for a delete), so a swapper whose lock was taken over writes
        // nothing. (A delete's file lands in the folder's own subfolder: the lock of another swapper has none of that name.)
        if (bytes === undefined) await fsp.rename(file, `${lock}/${mine}/${basename(file)}`);
        else await fsp.rename(`${lock}/${mine}`, file);
        return true;
      } catch (e) {
        // The lock was taken over under this swapper (its folder gone): start over, and look again.
        if (!['ENOENT', 'ESTALE'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e;
      } finally {
        await release(lock, owner.token);
      }
    }
  } finally {
    // Its own folder when it never became the lock (a failed try, a thrown error).
    await fsp.rm(own, { recursive: true, force: true });
  }
  throw new Error(`could not take the lock ${lock} in ${ATTEMPTS} tries: another writer keeps swapping ${file}`);
}

/**
 * Deletes what crashed swappers left beside the lock: a folder built for it whose swapper is gone (this machine) or
 * that is older than any swap still trying, and an aside older than `staleMs` (its taker deletes it right after its
 * rename). Never listed (SWAP_LOCK); what no takeover sweeps, `store gc` does.
 */
async function sweep(lock: string, staleMs: number): Promise<void> {
  const prefix = `${basename(lock)}.`;
  for (const name of await fsp.readdir(dirname(lock)).catch(() => [] as string[])) {
    const kind = name.startsWith(prefix) ? /^[0-9a-f]+\.(new|stale)$/.exec(name.slice(prefix.length))?.[1] : undefined;
    if (!kind) continue;
    const path = join(dirname(lock), name);
    const st = await fsp.stat(path).catch(() => undefined);
    if (!st) continue;
    const age = Date.now() - Math.max(st.mtimeMs, st.ctimeMs);
    const left =
      kind === 'stale'
        ? age >= staleMs
        : age >= LEFTOVER_MS || holderGone(parseOwner(await fsp.readFile(join(path, 'owner'), 'utf8').catch(() => undefined)));
    if (left) await fsp.rm(path, { recursive: true, force: true });
  }
}

/** Releases the lock if it is still this swapper's (not one that took it over meanwhile). */
async function release(lock: string, token: string): Promise<void> {
  // (Every lock holds its owner from its first moment: it was built before it was renamed in.)
  const held = parseOwner(await fsp.readFile(`${lock}/owner`, 'utf8').catch(() => undefined));
  if (held?.token === token) await removeLock(lock);
}

/** Moves the lock folder aside, then deletes it with what it holds: after this, no rename from inside it can land. */
async function removeLock(lock: string): Promise<boolean> {
  const aside = `${lock}.${randomBytes(6).toString('hex')}.stale`;
  try {
    await fsp.rename(lock, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  await fsp.rm(aside, { recursive: true, force: true });
  return true;
}

/** Takes over a lock whose holder is gone or that is older than `staleMs`: 'taken over', true when it was gone already, false when it is held. */
async function takeOverIfStale(lock: string, staleMs: number): Promise<'taken over' | boolean> {
  const st = await fsp.stat(lock).catch(() => undefined);
  if (!st) return true;
  const owner = parseOwner(await fsp.readFile(`${lock}/owner`, 'utf8').catch(() => undefined));
  // Its age counts from when it was taken, the rename (which sets a folder's ctime: ext4, XFS, btrfs, tmpfs, an NFS
  // server on them), not from when it was built: its swapper may have waited for the lock meanwhile. Both times are
  // the file server's clock, as the mkdir's mtime was; a host whose clock is off by more than staleMs misjudges locks
  // (the fence still holds: only liveness suffers).
  if (!holderGone(owner) && Date.now() - Math.max(st.mtimeMs, st.ctimeMs) < staleMs) return false;
  return (await removeLock(lock)) ? 'taken over' : true;
}
