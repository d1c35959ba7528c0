/**
 * A run's status before any stage has started: what the workflow begins from, and what a client
 * shows for a run that no worker has picked up yet (client/runs.ts). Pure: it runs in the workflow
 * sandbox too.
 */
import type { RunInput, RunStatus } from './types.ts';

export function pendingStatus(input: RunInput, runId: string, startedAt: string): RunStatus {
  const { plan, options } = input;
  return {
    runId,
    name: plan.name,
    specHash: plan.specHash,
    state: 'running',
    startedAt,
    actor: options.actor,
    resumeOf: options.resumeOf,
    params: plan.params,
    stages: plan.stages.map((s) => ({ id: s.id, uses: s.uses, needs: s.needs, state: 'pending' })),
  };
}
