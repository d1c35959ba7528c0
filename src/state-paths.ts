/**
 * The layout of a state folder (`TEMPERED_HOME`, by default `.tempered/` in the checkout): where the
 * artifact store, caches, registry, audit log and checkpoints live. The one place these names are
 * written; infra/state.ts decides which folder, stages get it as `ctx.stateDir`.
 */
import { join } from 'node:path';

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
  registryDb: string;
  auditDb: string;
  /** Downloaded and unpacked model sources. */
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
}

export function statePaths(root: string): StatePaths {
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
    serving: join(root, 'serving'),
    checkpoints: join(root, 'checkpoints'),
    runs: join(root, 'runs'),
    progress: join(root, 'progress'),
  };
}
