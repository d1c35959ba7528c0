import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statePaths as layout, type StatePaths } from '../src/state-paths.ts';

/** Repository root (infra/ sits directly under it). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Where tempered keeps its state: artifacts, caches, registry, audit log, the dev server's database
 * and the Temporal CLI binary. `TEMPERED_HOME` moves it; the default is project-local so a clone is
 * self-contained. An empty `TEMPERED_HOME` (`TEMPERED_HOME=$UNSET_VARIABLE`) counts as unset: it
 * resolved to the working folder, which then got a store and a dev server database of its own.
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  const home = env.TEMPERED_HOME?.trim();
  return resolve(home ? home : join(PROJECT_ROOT, '.tempered'));
}

export type { StatePaths } from '../src/state-paths.ts';

/** The state folder's paths; `root` defaults to `stateDir()`. */
export function statePaths(root = stateDir()): StatePaths {
  return layout(root);
}

export function ensureDir(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}
