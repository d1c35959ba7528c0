/**
 * The worker's activities: a cache lookup plus one activity per stage kind, named after the kind.
 */
import type { AnyStageKind } from '../src/stages/types.ts';
import { cacheLookupActivity } from './cache.ts';
import { runGateActivities } from './run-gate.ts';
import { checkBackends } from './backends.ts';
import { stageActivity, type ActivityDeps } from './stage-adapter.ts';
import type { RunEndRecord } from '../workflows/types.ts';

export function createActivities(
  kinds: ReadonlyMap<string, AnyStageKind>,
  deps: ActivityDeps,
): Record<string, (...args: any[]) => Promise<unknown>> {
  const acts: Record<string, (...args: any[]) => Promise<unknown>> = {
    lookupCache: cacheLookupActivity(kinds, deps.cache, deps.stateDir, deps.backends, deps.onLacksRunSettings),
    ...runGateActivities(deps),
    auditRunEnded: async (rec: RunEndRecord) => {
      checkBackends(rec.backends, deps.backends, rec.runId, { local: true, onLacks: deps.onLacksRunSettings });
      await deps.onRunEnded?.(rec);
    },
  };
  for (const [name, kind] of kinds) acts[name] = stageActivity(kind, deps);
  return acts;
}
