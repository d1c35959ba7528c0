/**
 * The layout of a state folder (`TEMPERED_HOME`, by default `.tempered/` in the checkout): where the
 * artifact store, caches, registry, audit log and checkpoints live. The one place these names are
 * written; infra/state.ts decides which folder, stages get it as `ctx.stateDir`.
 */
import { join, resolve } from 'node:path';
import { checkDatabaseUrl, DATABASE_URL_ENV } from './db/database.ts';

/**
 * The state folder `TEMPERED_HOME` names, or undefined when it names none. An empty one
 * (`TEMPERED_HOME=$UNSET_VARIABLE`) counts as unset: it resolved to the working folder, which then got a
 * store and a dev server database of its own.
 */
export function temperedHome(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const home = env.TEMPERED_HOME?.trim();
  return home ? home : undefined;
}

export interface StatePaths {
  root: string;
  /** Content-addressed artifacts. */
  store: string;
  /** Stage cache: outputs by cache key. */
  cache: string;
  /** The embedded Temporal dev server's database and pid file. */
  temporal: string;
  /** The Temporal CLI binary. */
  bin: string;
  /** The registry's SQLite file, or the TEMPERED_DATABASE_URL (postgres://…) when that is set. */
  registryDb: string;
  /** The audit log's SQLite file, or the TEMPERED_DATABASE_URL (the same PostgreSQL database). */
  auditDb: string;
  /** Downloaded and unpacked model sources: TEMPERED_MODEL_CACHE where set (shared by several homes), else the home's. */
  models: string;
  /** Scratch folders of running stages. */
  work: string;
  /** Model folders checked out for evaluation and serving. */
  serving: string;
  /** Training checkpoints, one folder per stage cache key. */
  checkpoints: string;
  /** Data fingerprints of successful runs, for run gates. */
  runs: string;
  /** Per-step metrics of running stages (training curves), one JSON-lines file per stage execution. */
  progress: string;
  /** The evaluate stage's baseline scores as scored before, one file a base model, rows and settings (this host's). */
  baselines: string;
}

export function statePaths(root: string, env: Record<string, string | undefined> = process.env): StatePaths {
  const url = env[DATABASE_URL_ENV]?.trim() || undefined;
  // A malformed URL fails here, naming the variable, rather than becoming a file name.
  if (url !== undefined) checkDatabaseUrl(url);
  const modelCache = env.TEMPERED_MODEL_CACHE?.trim() || undefined;
  return {
    root,
    store: join(root, 'store'),
    cache: join(root, 'cache'),
    temporal: join(root, 'temporal'),
    bin: join(root, 'bin'),
    registryDb: url ?? join(root, 'registry.db'),
    auditDb: url ?? join(root, 'audit.db'),
    models: modelCache === undefined ? join(root, 'models') : resolve(modelCache),
    work: join(root, 'work'),
    serving: join(root, 'serving'),
    checkpoints: join(root, 'checkpoints'),
    runs: join(root, 'runs'),
    progress: join(root, 'progress'),
    baselines: join(root, 'baselines'),
  };
}
