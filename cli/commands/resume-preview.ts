/**
 * What `tempered resume` is about to redo, said before the new run starts: which of the old run's stages finished
 * (they come back from the stage cache, whose keys are computed again as the new run goes) and which run again.
 */
import type { PlannedPipeline } from '../../src/spec/types.ts';
import type { RunStatus } from '../../workflows/types.ts';

const FINISHED = new Set(['succeeded', 'cached']);

export function resumePreview(plan: PlannedPipeline, old: RunStatus): string[] {
  const state = new Map(old.stages.map((s) => [s.id, s.state]));
  const reused: string[] = [];
  const again: string[] = [];
  for (const st of plan.stages) {
    const done = FINISHED.has(state.get(st.id) ?? 'pending');
    // A stage the cache never serves (register, deploy, `cache: false`) runs on every run, finished or not.
    if (done && st.cache) reused.push(st.id);
    else if (done) again.push(`${st.id} (not cached: runs on every run)`);
    else if (st.uses === 'train') again.push(`${st.id} (from its last checkpoint, where one was kept)`);
    else again.push(st.id);
  }
  const lines: string[] = [];
  if (reused.length)
    lines.push(
      `  finished in ${old.runId}, reused from the stage cache unless their inputs changed since (ingest re-reads its files): ${reused.join(', ')}`,
    );
  if (again.length) lines.push(`  to run (from the stage cache where another run did the same work): ${again.join(', ')}`);
  return lines;
}
