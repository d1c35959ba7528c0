/**
 * The worker's activities: a cache lookup plus one activity per stage kind, named after the kind.
 */
import type { AnyStageKind } from '../src/stages/types.ts';
import { cacheLookupActivity } from './cache.ts';
import { recordRunEnded } from './metrics.ts';
import { runGateActivities } from './run-gate.ts';
import { stageActivity, type ActivityDeps } from './stage-adapter.ts';
import type { RunEndRecord } from '../workflows/types.ts';

export function createActivities(
  kinds: ReadonlyMap<string, AnyStageKind>,
  deps: ActivityDeps,
): Record<string, (...args: any[]) => Promise<unknown>> {
  const acts: Record<string, (...args: any[]) => Promise<unknown>> = {
    lookupCache: cacheLookupActivity(kinds, deps),
    ...runGateActivities(deps),
    auditRunEnded: async (rec: RunEndRecord) => {
      await deps.onRunEnded?.(rec);
      // Counted once the record is written: an attempt the audit log refused is tried again and would count twice.
      recordRunEnded(rec);
    },
  };
  for (const [name, kind] of kinds) acts[name] = stageActivity(kind, deps);
  return acts;
}
