import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { statePaths as layout, temperedHome, type StatePaths } from '../src/state-paths.ts';

/** Repository root (infra/ sits directly under it). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Where tempered keeps its state: artifacts, caches, registry, audit log, the dev server's database
 * and the Temporal CLI binary. `TEMPERED_HOME` moves it; the default is project-local so a clone is
 * self-contained (an empty `TEMPERED_HOME` counts as unset: `temperedHome`).
 */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(temperedHome(env) ?? join(PROJECT_ROOT, '.tempered'));
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
