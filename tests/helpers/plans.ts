/**
 * Hand-built plans for workflow tests, completed as the spec planner completes a file's stages:
 * the planner's defaults for retry and timeout, dependents from needs, concurrency = stage count.
 */
import { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from '../../src/spec/defaults.ts';
import type { PlannedPipeline, PlannedRetry, PlannedStage } from '../../src/spec/types.ts';

export interface StageDraft {
  id: string;
  uses: string;
  needs: string[];
  with: Record<string, unknown>;
  retry?: Partial<PlannedRetry>;
  /** Milliseconds, like every duration in a plan. */
  timeout?: number;
  heartbeatTimeout?: number;
  cache?: boolean;
  queue?: string;
}

export function plannedPipeline(
  name: string,
  drafts: StageDraft[],
  extra: Partial<Omit<PlannedPipeline, 'name' | 'stages'>> = {},
): PlannedPipeline {
  const stages = drafts.map((d): PlannedStage => {
    const { retry, timeout, cache, ...rest } = d;
    return {
      ...rest,
      retry: { ...DEFAULT_RETRY, nonRetryableErrorTypes: [...DEFAULT_RETRY.nonRetryableErrorTypes], ...retry },
      timeout: timeout ?? DEFAULT_TIMEOUT_MS,
      cache: cache ?? true,
      dependents: drafts.filter((o) => o.needs.includes(d.id)).map((o) => o.id),
    };
  });
  return { name, specHash: name, params: {}, concurrency: stages.length, onFailure: 'fail-fast', stages, ...extra };
}
