import { join } from 'node:path';
import type { ArtifactStore } from '../store/artifact-store.ts';
import type { StageContext } from './types.ts';

/** A stage's context on a worker whose state folder is `root`, for tests that run a stage kind directly. */
export function testStageContext(o: {
  root: string;
  store: ArtifactStore;
  baseDir: string;
  cacheKey: string;
  signal: AbortSignal;
  stageId?: string;
  progress?: StageContext['progress'];
  log?: StageContext['log'];
}): StageContext {
  return {
    runId: 'r',
    stageId: o.stageId ?? 'train',
    attempt: 1,
    baseDir: o.baseDir,
    specHash: 's',
    actor: 't',
    cacheKey: o.cacheKey,
    store: o.store,
    workDir: join(o.root, 'work'),
    stateDir: o.root,
    signal: o.signal,
    progress: o.progress ?? (() => {}),
    log: o.log ?? (() => {}),
  };
}
