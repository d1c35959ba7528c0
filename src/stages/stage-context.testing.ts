import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArtifactStore } from '../store/artifact-store.ts';
import type { ArtifactRef } from '../types.ts';
import { deployStage } from './deploy.ts';
import { registerStage } from './register.ts';
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

/**
 * A worker's state folder `root/name` with its store, for tests that run the evaluate, register and deploy kinds
 * directly: contexts whose log lines land in `logs`, a JSON artifact read back, and a model promoted to production.
 */
export function stageTestbed(root: string, name: string) {
  const state = join(root, name);
  mkdirSync(state, { recursive: true });
  const store = new ArtifactStore(join(state, 'store'));
  const logs: string[] = [];
  const ctx = (stageId: string, runId = 'r1', progress?: StageContext['progress']): StageContext =>
    testStageContext({
      root: state,
      store,
      baseDir: root,
      stageId,
      runId,
      workDir: mkdtempSync(join(root, 'work-')),
      log: (m) => void logs.push(m),
      ...(progress ? { progress } : {}),
    });
  // Metrics and reports are read field by field.
  const read = (ref: unknown) => JSON.parse(readFileSync(store.pathOf(ref as ArtifactRef), 'utf8')) as Record<string, any>;
  /** Registers `model` under `modelName` with the lineage data given, and points `production` at it. */
  const promote = async (modelName: string, model: ArtifactRef, data?: Record<string, ArtifactRef>) => {
    const v = await registerStage.run({ name: modelName, model, ...(data ? { data } : {}) }, ctx('register', `reg-${modelName}`));
    await deployStage.run({ name: modelName, version: v.version as number }, ctx('deploy', `reg-${modelName}`));
  };
  return { store, ctx, read, promote, logs };
}
