/**
 * What a stage gets when neither it nor the file's `defaults` set a field. The planner fills these
 * into every plan; the workflow imports this module (it has no imports, so the workflow bundle stays
 * free of side effects) for the heartbeat timeout, which plans leave out when unset, and to complete
 * plans recorded in old histories.
 */

/** Bounded so a broken stage cannot retry forever. Intervals in milliseconds. */
export const DEFAULT_RETRY = {
  maximumAttempts: 3,
  initialInterval: 1_000,
  backoffCoefficient: 2,
  maximumInterval: 60_000,
  nonRetryableErrorTypes: [] as readonly string[],
} as const;

/** start-to-close timeout of a stage's activity. */
export const DEFAULT_TIMEOUT_MS = 3_600_000;

/** A stage's activity that has not heartbeated for this long is retried. */
export const DEFAULT_HEARTBEAT_MS = 60_000;
