import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (infra/ sits directly under it). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Where tempered keeps its state: artifacts, caches, registry, audit log, the dev server's database
 * and the Temporal CLI binary. `TEMPERED_HOME` moves it; the default is project-local so a clone is
 * self-contained.
 */
export function stateDir(): string {
  return resolve(process.env.TEMPERED_HOME ?? join(PROJECT_ROOT, '.tempered'));
}

export interface StatePaths {
  root: string;
  store: string;
  cache: string;
  temporal: string;
  bin: string;
  registryDb: string;
  auditDb: string;
  models: string;
  work: string;
}

export function statePaths(root = stateDir()): StatePaths {
  return {
    root,
    store: join(root, 'store'),
    cache: join(root, 'cache'),
    temporal: join(root, 'temporal'),
    bin: join(root, 'bin'),
    registryDb: join(root, 'registry.db'),
    auditDb: join(root, 'audit.db'),
    models: join(root, 'models'),
    work: join(root, 'work'),
  };
}

export function ensureDir(path: string): string {
  mkdirSync(path, { recursive: true });
  return path;
}
