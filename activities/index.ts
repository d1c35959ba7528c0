/**
 * The worker's activities: a cache lookup plus one activity per stage kind, named after the kind.
 */
import { Context } from '@temporalio/activity';
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
      // Counted on the first attempt, before the record is written: a retry (the audit log refused the record) does
      // not count the run again, and a run whose record never gets written (an audit database away for the half hour
      // the run's end waits) is counted all the same.
      if (Context.current().info.attempt === 1) recordRunEnded(rec);
      await deps.onRunEnded?.(rec);
    },
  };
  for (const [name, kind] of kinds) acts[name] = stageActivity(kind, deps);
  return acts;
}
