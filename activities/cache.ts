import { tmpdir } from 'node:os';
import { Context } from '@temporalio/activity';
import { configForKind } from '../src/stages/plugin-kinds.ts';
import { statePaths } from '../src/state-paths.ts';
import { diskFullError, diskFullHint, isDiskFull } from '../src/util/disk-full.ts';
import type { AnyStageKind } from '../src/stages/types.ts';
import { cacheKey, type StageCache } from '../src/store/stage-cache.ts';
import { recordCacheLookup } from './metrics.ts';
import { asActivityFailure } from './failures.ts';
import { tellStageCompleted } from './audit.ts';
import type { ActivityDeps } from './stage-adapter.ts';
import type { CacheLookupRequest, CacheLookupResult, StageRequest } from '../workflows/types.ts';

/**
 * A stage's cache key, and the recorded outputs when the same work was done before (`read: false`:
 * the key alone, for a run that must not reuse outputs). Runs in the cache-lookup local activity and,
 * for stages on the workflow's own task queue, at the start of the stage's activity.
 */
/**
 * A stage's cache key as this worker's code computes it: of the config the kind's code gets (a plugin kind's with
 * its withSchema's defaults filled in, so a changed default misses the cache wherever the schema is defined).
 */
export function stageKey(kind: AnyStageKind, config: Record<string, unknown>, externalInputs: string[] | undefined): string {
  return cacheKey({ kind: kind.kind, codeVersion: kind.codeVersion, config: configForKind(kind, config), externalInputs });
}

/** The identities of the inputs the config only names (StageKind.externalInputs), if the kind has any. */
export async function externalInputsOf(
  kind: AnyStageKind,
  config: Record<string, unknown>,
  baseDir: string,
  stateDir: string,
): Promise<string[] | undefined> {
  return kind.externalInputs ? kind.externalInputs(config, { baseDir, stateDir }) : undefined;
}

export async function lookupStage(
  kind: AnyStageKind,
  cache: StageCache,
  stateDir: string,
  req: CacheLookupRequest,
  read = true,
): Promise<StageLookup> {
  let externalInputs: string[] | undefined;
  try {
    externalInputs = await externalInputsOf(kind, req.config, req.baseDir, stateDir);
  } catch (e) {
    // A missing source file is the user's to fix: fail the stage at once, with the hint.
    throw asActivityFailure(e);
  }
  const key = stageKey(kind, req.config, externalInputs);
  if (kind.cacheable === false || !read) return { key };
  const rec = await cache.get(key);
  recordCacheLookup(kind.kind, rec !== undefined);
  if (!rec) return { key };
  const { runId, stageId, executionId } = rec.producedBy;
  return { key, hit: { outputs: rec.outputs, producedBy: { runId, stageId } }, executionId };
}

/** A lookup's answer, and for a hit the workflow execution whose stage recorded it (records since 4 Dec). */
export interface StageLookup extends CacheLookupResult {
  /** Read by the stage's own activity only (an earlier attempt of the same stage); not sent to the workflow. */
  executionId?: string;
}

/**
 * The cache-lookup local activity: computes a stage's key and returns the recorded outputs of a hit. The store's local
 * folder is one of the places a lookup writes; `onStageCompleted` is where a hit for a run's stage (`req.stage`) is
 * told as that stage's `stage.reused` record.
 */
export function cacheLookupActivity(
  kinds: ReadonlyMap<string, AnyStageKind>,
  deps: Pick<ActivityDeps, 'cache' | 'stateDir' | 'store' | 'onStageCompleted'>,
) {
  const { cache, stateDir } = deps;
  return async function lookupCache(req: CacheLookupRequest): Promise<CacheLookupResult> {
    const kind = kinds.get(req.kind);
    if (!kind) throw new Error(`this worker has no stage kind '${req.kind}'`);
    try {
      const { key, hit } = await lookupStage(kind, cache, stateDir, req, req.read !== false);
      if (hit && req.stage) {
        // On a hit the stage is not scheduled (a stage routed to a GPU queue runs no activity there), so the record
        // of the outputs the run took is written here, or the run's trail would not say how its model was trained.
        // A retried lookup writes none again: the hook's dedupe key is the run's execution and stage.
        const stageReq: StageRequest = {
          ...req.stage,
          kind: req.kind,
          config: req.config,
          baseDir: req.baseDir,
          cacheKey: key,
          // Nothing goes into the cache on a hit.
          writeCache: false,
        };
        await tellStageCompleted(kind, deps, stageReq, { outputs: hit.outputs, cacheKey: key, cachedFrom: hit.producedBy });
      }
      return hit ? { key, hit, codeVersion: kind.codeVersion } : { key, codeVersion: kind.codeVersion };
    } catch (e) {
      if (!isDiskFull(e)) throw e;
      // A lookup writes too: a record fetched from the shared store is kept here, an old record's use is recorded,
      // a hit's outputs may be downloaded into the store to be verified. Its full disk reached the workflow as a bare
      // ENOSPC, retried at once; told as a stage's is, it waits for space like one.
      const info = Context.current().info;
      const paths = statePaths(stateDir);
      const folders = [stateDir, paths.cache, deps.store.root, tmpdir()];
      throw asActivityFailure(diskFullError(e, folders, { hint: diskFullHint(info.workflowExecution?.workflowId) }), info.attempt);
    }
  };
}
