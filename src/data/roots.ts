/**
 * Data roots: the folders a pipeline's source paths may read from. A path in a pipeline file is
 * hostile until checked: `../../etc/passwd`, an absolute path or a symlink placed in a data folder
 * would otherwise let the file read anything the worker can read. Paths are checked after
 * resolving symlinks (realpath), so a link cannot lead out of a root.
 */
import { constants, realpathSync } from 'node:fs';
import { lstat, open, readlink, realpath, type FileHandle } from 'node:fs/promises';
import { delimiter, resolve, sep } from 'node:path';
import { InputError } from '../errors.ts';
import { temperedHome } from '../state-paths.ts';
import { findDatasetsDir } from './datasets-dir.ts';

/**
 * Worker setting: the folders local inputs may come from, separated like PATH (':' on POSIX). Where set, the whole
 * list (besides the shared datasets folder): the pipeline file's folder is the submitter's word, not the worker's.
 */
export const DATA_ROOTS_ENV = 'TEMPERED_DATA_ROOTS';

/**
 * The folders `TEMPERED_DATA_ROOTS` names, resolved, or undefined where it names none (unset, empty or blank: as
 * `TEMPERED_DATA_ROOTS=$UNSET_VARIABLE` reads).
 */
export function configuredDataRoots(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const listed = (env[DATA_ROOTS_ENV] ?? '')
    .split(delimiter)
    .map((r) => r.trim())
    .filter((r) => r !== '')
    .map((r) => resolve(r));
  return listed.length > 0 ? [...new Set(listed)] : undefined;
}

/**
 * The allowed roots for a pipeline whose file sits in `baseDir`. Where `TEMPERED_DATA_ROOTS` is set: its folders and
 * the shared datasets folder when there is one, and nothing else. `baseDir` travels in the run's input from whoever
 * submitted it (a pipeline file at /etc/p.yaml on their machine made /etc a root on every worker), and the state folder
 * holds the worker's registry and audit databases, other runs' artifacts and checkpoints, and its model cache; the
 * datasets folder is the worker's own setting (TEMPERED_DATASETS, or the checkout's shared/datasets). Unset (one
 * machine, whose pipeline folders are its user's): `baseDir`, the state folder (`stateDir`, and `TEMPERED_HOME` when
 * set) and the shared datasets folder.
 */
export function dataRoots(baseDir: string, opts: { stateDir?: string; env?: NodeJS.ProcessEnv } = {}): string[] {
  const env = opts.env ?? process.env;
  const listed = listedDataRoots(env);
  if (listed) return listed;
  const datasets = findDatasetsDir(env);
  const roots = [resolve(baseDir)];
  if (opts.stateDir) roots.push(resolve(opts.stateDir));
  const home = temperedHome(env);
  if (home) roots.push(resolve(home));
  if (datasets) roots.push(resolve(datasets));
  return [...new Set(roots)];
}

/**
 * The roots of a worker that lists them (`TEMPERED_DATA_ROOTS`, with the shared datasets folder), whatever the run's
 * pipeline folder; undefined where it lists none. Local base models are confined to these alone: unset, a model folder
 * is read wherever it lies, as before.
 */
export function listedDataRoots(env: NodeJS.ProcessEnv = process.env): string[] | undefined {
  const listed = configuredDataRoots(env);
  if (!listed) return undefined;
  const datasets = findDatasetsDir(env);
  return [...new Set([...listed, ...(datasets ? [resolve(datasets)] : [])])];
}

/** Real paths of the roots that exist (a root that does not exist allows nothing). */
export function realRoots(roots: readonly string[]): string[] {
  const out: string[] = [];
  for (const r of roots) {
    try {
      out.push(realpathSync(r));
    } catch {
      /* missing root */
    }
  }
  return [...new Set(out)];
}

export function isInside(real: string, roots: readonly string[]): boolean {
  return roots.some((r) => real === r || real.startsWith(r.endsWith(sep) ? r : r + sep));
}

/**
 * Whether a path that does not exist (so has no real path) would lie under the roots: by its absolute path, against
 * their real paths and the roots as listed (a root may be a link). A worker refuses a missing path outside as outside,
 * not "not found", so that its answer does not tell a submitter which paths outside the roots exist.
 */
export function missingInside(abs: string, realRootList: readonly string[], listed: readonly string[]): boolean {
  return (
    isInside(abs, realRootList) ||
    isInside(
      abs,
      listed.map((r) => resolve(r)),
    )
  );
}

/**
 * A path outside the roots. `env` is the worker's, as dataRoots read it: where `TEMPERED_DATA_ROOTS` is set, only it
 * can let the path in, and the pipeline file's folder counts for nothing.
 */
export function outsideRootsError(
  shown: string,
  real: string,
  roots: readonly string[],
  field: string,
  env: NodeJS.ProcessEnv = process.env,
  remote = 'an https:// source with a sha256 pin',
): InputError {
  const listed = configuredDataRoots(env) !== undefined;
  return new InputError(
    `${JSON.stringify(shown)} resolves to ${real}, which is outside the allowed data roots (${roots.join(', ') || 'none'})${listed ? `: this worker reads local inputs only from the folders ${DATA_ROOTS_ENV} names (and the shared datasets folder), not from the pipeline file's folder` : ''}`,
    {
      where: field,
      hint: listed
        ? `add a folder that holds ${real} to ${DATA_ROOTS_ENV} on the workers (folders separated by '${delimiter}') and restart them, or use ${remote}`
        : `keep data under the pipeline file's folder, or add its folder to ${DATA_ROOTS_ENV} on the worker (folders separated by '${delimiter}')`,
    },
  );
}

/** Resolves symlinks in `abs` and fails unless the result lies inside one of `realRootList`. */
export function confine(abs: string, shown: string, realRootList: readonly string[], field: string): string {
  const real = realpathSync(abs);
  if (!isInside(real, realRootList)) throw outsideRootsError(shown, real, realRootList, field);
  return real;
}

/**
 * Test seams: called at the moments a swap (a link that leads out, a named pipe) would have to hit; a test swaps the
 * file there, where a real race would by chance.
 */
export const confinedOpenHooks: {
  /** Between resolving the path and looking at what it resolved to (lstat). */
  beforeCheck?: (real: string) => void | Promise<void>;
  /** Between that check and the opening. */
  beforeOpen?: (real: string) => void | Promise<void>;
} = {};

/** No link followed at the last step (the path is the resolved one), no wait for a writer should it be a pipe. */
const CONFINED_OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK | (constants.O_NOCTTY ?? 0);

export interface ConfinedFile {
  /** The file as listed (a link the walk took stays its own name). */
  abs: string;
  /** The file as errors name it. */
  shown: string;
  /** What was listed (a pipeline's `path`), as errors quote it. */
  listed: string;
}

const CHANGING_HINT = 'something is changing the data while the stage reads it: let it finish (or point path at a copy), then run again';

/** Something changes the data while it is read: a listed file replaced by a link or pipe meanwhile. */
export function changedSinceListed(f: Pick<ConfinedFile, 'shown' | 'listed'>, what: string, cause?: unknown): InputError {
  return new InputError(`the file was ${what} after ${JSON.stringify(f.listed)} was listed`, {
    where: f.shown,
    hint: CHANGING_HINT,
    cause,
  });
}

/** A listed file that is gone when its turn comes: an ENOENT on the file itself (err.path), not any ENOENT. */
export function goneSinceListed(f: Pick<ConfinedFile, 'shown' | 'listed'>, cause: unknown): InputError {
  return new InputError(`the file was removed or renamed after ${JSON.stringify(f.listed)} was listed, before it was read`, {
    where: f.shown,
    hint: CHANGING_HINT,
    cause,
  });
}

/**
 * Opens a listed file for reading once it is confined again, and returns the handle to read it from, never the path:
 * confined at listing, a file is opened minutes later maybe (after every file before it), and checking its path
 * then opening it again by name left the moment between the two to a swap (Node has no openat2(RESOLVE_BENEATH)).
 * Here the path is resolved and checked, the resolved path opened without following a link at its end (one put there
 * meanwhile fails, ELOOP) nor waiting on a pipe, and the handle itself checked: a regular file, the very one checked
 * (device and inode), and where the kernel says it is (Linux: /proc/self/fd) inside the roots, which a folder on its
 * path swapped for a link meanwhile is not.
 */
export async function openConfined(f: ConfinedFile, realRootList: readonly string[], field: string): Promise<FileHandle> {
  const noEntry = (e: unknown, path: string) =>
    (e as NodeJS.ErrnoException)?.code === 'ENOENT' && (e as NodeJS.ErrnoException).path === path;
  let real: string, checked;
  try {
    real = await realpath(f.abs);
    if (!isInside(real, realRootList)) throw outsideRootsError(f.shown, real, realRootList, field);
    await confinedOpenHooks.beforeCheck?.(real);
    checked = await lstat(real);
  } catch (e) {
    throw noEntry(e, f.abs) || noEntry(e, real!) ? goneSinceListed(f, e) : e;
  }
  // A named pipe put in its place: opening it would wait for a writer, for ever if none comes.
  const notFile = () => changedSinceListed(f, 'replaced by a named pipe, socket or device');
  const link = (cause?: unknown) => changedSinceListed(f, 'replaced by a symbolic link as it was opened', cause);
  // What realpath gave is no link; one there now was put there since (it read as a named pipe, socket or device).
  if (checked.isSymbolicLink()) throw link();
  if (!checked.isFile()) throw notFile();
  await confinedOpenHooks.beforeOpen?.(real);
  let fh: FileHandle;
  try {
    fh = await open(real, CONFINED_OPEN_FLAGS);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    // O_NOFOLLOW at a link: ELOOP (Linux, macOS); FreeBSD says EMLINK, NetBSD EFTYPE.
    if (code === 'ELOOP' || code === 'EMLINK' || code === 'EFTYPE') throw link(e);
    throw noEntry(e, real) ? goneSinceListed(f, e) : e;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw notFile();
    if (st.dev !== checked.dev || st.ino !== checked.ino)
      throw changedSinceListed(f, 'replaced (or a folder on its path replaced by a link) as it was opened');
    const where = await readlink(`/proc/self/fd/${fh.fd}`).catch(() => undefined);
    if (where !== undefined && !isInside(where.replace(/ \(deleted\)$/, ''), realRootList))
      throw outsideRootsError(f.shown, where, realRootList, field);
    return fh;
  } catch (e) {
    await fh.close();
    throw e;
  }
}
