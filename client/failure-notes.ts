/**
 * What a failed stage's status leaves unsaid, worded once for `tempered status` and the dashboard: how its
 * retries went, and the cause behind Temporal's own terse messages.
 */
import { decodeRetryState } from '@temporalio/common';
import type { StageStatus } from '../workflows/types.ts';

/**
 * How a failed stage's retries went, from what Temporal recorded (the ActivityFailure's retry state, the
 * attempts): "not retried: input error", "gave up after 3 attempts". Undefined when the status does not say
 * (a run recorded before the retry state was kept, whose error is not one that is never retried).
 */
export function retryNote(s: StageStatus): string | undefined {
  const e = s.error;
  if (!e) return undefined;
  const attempts = s.attempt;
  const after = attempts && attempts > 1 ? ` after attempt ${attempts}` : '';
  const why = e.type === 'InputError' ? 'input error' : `non-retryable ${e.type ?? 'error'}`;
  switch (e.retryState) {
    case 'MAXIMUM_ATTEMPTS_REACHED':
      return attempts ? `gave up after ${attempts} attempt${attempts === 1 ? '' : 's'}` : 'gave up: retried up to its maximumAttempts';
    case 'NON_RETRYABLE_FAILURE':
      return `not retried${after}: ${why}`;
    case 'TIMEOUT':
      return `not retried${after}: out of time`;
    case 'RETRY_POLICY_NOT_SET':
      return `not retried${after}: no retry policy`;
    case undefined:
      // Recorded before the retry state was kept: an InputError or a non-retryable failure is never retried.
      return e.type === 'InputError' || e.nonRetryable ? `not retried${after}: ${why}` : undefined;
    default:
      return undefined;
  }
}

/** What Temporal's own failure messages leave unsaid, for a stage that failed with one: the cause and what to change. */
export function failureHints(s: StageStatus): string[] {
  const message = s.error?.message ?? '';
  const hints: string[] = [];
  if (/\bactivity Heartbeat timeout\b/i.test(message))
    hints.push(
      "the stage sent no heartbeat within its heartbeatTimeout: work that keeps the worker's JavaScript thread busy (CPU-bound code in the kind's run) blocks its heartbeats, and so does a worker that stopped or was killed; raise `heartbeatTimeout:` on the stage in the pipeline file, or give the stage kind `isolation: { module }` so each attempt runs in a child process of its own",
    );
  const unregistered = /^Activity function (\S+) is not registered on this Worker/.exec(message);
  if (unregistered)
    hints.push(
      `the kind '${unregistered[1]}' is not loaded by the worker that took the stage: set TEMPERED_PLUGINS to the module(s) exporting its stageKinds() on every worker that serves the stage's task queue, and restart them`,
    );
  return hints;
}

/** The stages, a failed one's error carrying `note` and `moreHints` for a page to show as they are. */
export function withFailureNotes<T extends StageStatus>(stages: T[]): T[] {
  return stages.map((s) => {
    if (s.state !== 'failed' || !s.error) return s;
    const note = retryNote(s);
    const moreHints = failureHints(s);
    return { ...s, error: { ...s.error, ...(note ? { note } : {}), ...(moreHints.length ? { moreHints } : {}) } };
  });
}

/** An event's retry state by name: a number from the server (decoded as the SDK does), a name in a history read from JSON. */
export function retryStateName(v: unknown): string | undefined {
  if (typeof v === 'number') return decodeRetryState(v);
  if (typeof v === 'string' && v !== '' && v !== 'RETRY_STATE_UNSPECIFIED') return v.replace(/^RETRY_STATE_/, '');
  return undefined;
}

/** A history event's retry state in words, for `tempered logs`: why the attempts stopped. */
export function retryStateWords(v: unknown): string | undefined {
  switch (retryStateName(v)) {
    case 'MAXIMUM_ATTEMPTS_REACHED':
      return 'gave up: maximumAttempts reached';
    case 'NON_RETRYABLE_FAILURE':
      return 'not retried: non-retryable';
    case 'TIMEOUT':
      return 'not retried: out of time';
    case 'RETRY_POLICY_NOT_SET':
      return 'not retried: no retry policy';
    default:
      return undefined;
  }
}
