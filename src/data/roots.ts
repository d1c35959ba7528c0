/**
 * Data roots: the folders a pipeline's source paths may read from. A path in a pipeline file is
 * hostile until checked: `../../etc/passwd`, an absolute path or a symlink placed in a data folder
 * would otherwise let the file read anything the worker can read. Paths are checked after
 * resolving symlinks (realpath), so a link cannot lead out of a root.
 */
import { realpathSync } from 'node:fs';
import { delimiter, resolve, sep } from 'node:path';
import { InputError } from '../errors.ts';
import { temperedHome } from '../state-paths.ts';
import { findDatasetsDir } from './datasets-dir.ts';

/** Worker setting: extra allowed folders, separated like PATH (':' on POSIX). */
export const DATA_ROOTS_ENV = 'TEMPERED_DATA_ROOTS';

/**
 * The allowed roots for a pipeline whose file sits in `baseDir`: that folder, the state folder
 * (`stateDir`, and `TEMPERED_HOME` when set), the shared datasets folder when there is one, and
 * every folder listed in `TEMPERED_DATA_ROOTS`.
 */
export function dataRoots(baseDir: string, opts: { stateDir?: string; env?: NodeJS.ProcessEnv } = {}): string[] {
  const env = opts.env ?? process.env;
  const roots = [resolve(baseDir)];
  if (opts.stateDir) roots.push(resolve(opts.stateDir));
  const home = temperedHome(env);
  if (home) roots.push(resolve(home));
  const datasets = findDatasetsDir(env);
  if (datasets) roots.push(resolve(datasets));
  for (const r of (env[DATA_ROOTS_ENV] ?? '').split(delimiter)) if (r.trim() !== '') roots.push(resolve(r.trim()));
  return [...new Set(roots)];
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

export function outsideRootsError(shown: string, real: string, roots: readonly string[], field: string): InputError {
  return new InputError(
    `${JSON.stringify(shown)} resolves to ${real}, which is outside the allowed data roots (${roots.join(', ') || 'none'})`,
    {
      where: field,
      hint: `keep data under the pipeline file's folder, or add its folder to ${DATA_ROOTS_ENV} on the worker (folders separated by '${delimiter}')`,
    },
  );
}

/** Resolves symlinks in `abs` and fails unless the result lies inside one of `realRootList`. */
export function confine(abs: string, shown: string, realRootList: readonly string[], field: string): string {
  const real = realpathSync(abs);
  if (!isInside(real, realRootList)) throw outsideRootsError(shown, real, realRootList, field);
  return real;
}
