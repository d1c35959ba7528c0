import { join } from 'node:path';
import type { ArtifactStore } from '../store/artifact-store.ts';
import type { StageContext } from './types.ts';

/** A stage's context on a worker whose state folder is `root`, for tests that run a stage kind directly. */
export function testStageContext(o: {
  root: string;
  store: ArtifactStore;
  baseDir: string;
  cacheKey?: string;
  signal?: AbortSignal;
  stageId?: string;
  runId?: string;
  /** Default the state folder's `work` folder. */
  workDir?: string;
  progress?: StageContext['progress'];
  log?: StageContext['log'];
}): StageContext {
  const runId = o.runId ?? 'r';
  return {
    runId,
    executionId: `${runId}-exec`,
    stageId: o.stageId ?? 'train',
    attempt: 1,
    baseDir: o.baseDir,
    specHash: 's',
    actor: 't',
    ...(o.cacheKey !== undefined ? { cacheKey: o.cacheKey } : {}),
    store: o.store,
    workDir: o.workDir ?? join(o.root, 'work'),
    stateDir: o.root,
    signal: o.signal ?? new AbortController().signal,
    progress: o.progress ?? (() => {}),
    log: o.log ?? (() => {}),
  };
}
