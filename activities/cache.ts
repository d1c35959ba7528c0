import type { AnyStageKind } from '../src/stages/types.ts';
import { cacheKey, type StageCache } from '../src/store/stage-cache.ts';
import { recordCacheLookup } from './metrics.ts';
import { asActivityFailure } from './stage-adapter.ts';
import type { CacheLookupRequest, CacheLookupResult } from '../workflows/types.ts';

/** Computes a stage's cache key and returns the recorded outputs when the same work was done before. */
export function cacheLookupActivity(kinds: ReadonlyMap<string, AnyStageKind>, cache: StageCache, stateDir: string) {
  return async function lookupCache(req: CacheLookupRequest): Promise<CacheLookupResult> {
    const kind = kinds.get(req.kind);
    if (!kind) throw new Error(`this worker has no stage kind '${req.kind}'`);
    let externalInputs: string[] | undefined;
    try {
      externalInputs = kind.externalInputs ? await kind.externalInputs(req.config, { baseDir: req.baseDir, stateDir }) : undefined;
    } catch (e) {
      // A missing source file is the user's to fix: fail the stage at once, with the hint.
      throw asActivityFailure(e);
    }
    const key = cacheKey({ kind: kind.kind, codeVersion: kind.codeVersion, config: req.config, externalInputs });
    const rec = kind.cacheable === false ? undefined : await cache.get(key);
    if (kind.cacheable !== false) recordCacheLookup(kind.kind, rec !== undefined);
    return rec ? { key, hit: { outputs: rec.outputs, producedBy: rec.producedBy } } : { key };
  };
}
