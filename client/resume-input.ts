/**
 * What a resume submits: the run's own plan and options, under its new actor, linked to the run it resumes. Shared by
 * `tempered resume` and the dashboard's Resume, which must resume alike.
 */
import type { RunInput, RunOptions, RunStatus } from '../workflows/types.ts';
import { checkpointNameFromRunId, runCheckpointName } from '../workflows/run-checkpoints.ts';

/**
 * A resume reads the stage cache, so that what the run finished comes back instead of running again. A run submitted
 * with `--no-cache` asked for its own results, not another run's of the same work: its resume keeps noCache and takes
 * from the cache only the stages it (or a resume before it) finished (RunOptions.cachedStages). Before 8 Dec it read
 * the cache for every stage, and an unfinished training came back as another run's finished one. A run whose status
 * cannot be read (`status` gives undefined) has every stage run again (what --no-cache asked for, at a cost) rather
 * than reuse another's. `status` is asked only for such a run: with no worker answering, reading it waits seconds.
 */
export async function resumeInput(
  old: string,
  input: RunInput,
  options: Pick<RunOptions, 'actor'> & Partial<RunOptions>,
  status: () => Promise<RunStatus | undefined>,
): Promise<RunInput> {
  // A schedule's run named its folder from its own id, which the resume's differs from: the resume is given the name.
  // So is a resume of a run of a schedule made before the flag, which did so too unless it was in flight when its
  // workers were upgraded (its training then was in the work's folder: the resume trains from step 0 in the run's).
  const { uncachedCheckpointsFromRunId: _flag, ...kept } = input.options;
  const named = checkpointNameFromRunId(input) ? { uncachedCheckpoints: runCheckpointName(old) } : {};
  const base = { ...kept, ...named, resumeOf: old, ...options };
  // ownCheckpoints: a resume, made before 8 Dec, of a --no-cache run (it set noCache false).
  if (!input.options.noCache && !input.options.ownCheckpoints) return { plan: input.plan, options: { ...base, noCache: false } };
  const before = await status();
  return { plan: input.plan, options: { ...base, noCache: true, cachedStages: finishedStages(input.options, before) } };
}

/** The stages a run finished, or that the run it resumed had finished (which it may have stopped before reaching). */
function finishedStages(options: RunOptions, status: RunStatus | undefined): string[] {
  const done = new Set(options.cachedStages ?? []);
  for (const st of status?.stages ?? []) if (st.state === 'succeeded' || st.state === 'cached') done.add(st.id);
  return [...done];
}
