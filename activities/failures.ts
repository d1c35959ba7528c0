/** How errors from the library leave an activity: which are retried, and what they carry. */
import { ApplicationFailure } from '@temporalio/activity';
import { DiskFullError, InputError, IntegrityError, StageContractError } from '../src/errors.ts';
import { ChildProcessDied } from '../src/isolate/run-in-child.ts';

/**
 * Input errors become non-retryable failures that keep where and hint. So does a damaged or
 * missing store object: another attempt would read the same bad bytes (the caller has already
 * evicted the cache records that point at it, so a rerun recomputes it). A stage process that died
 * (crash, OOM kill) becomes a retryable failure that carries its exit signal and last stderr lines.
 * A full disk (DiskFullError) is retried, but only after a wait (see diskFullRetryDelayMs). Anything
 * else is retried. `attempt`: the attempt that failed.
 */
export function asActivityFailure(err: unknown, attempt = 1): unknown {
  if (err instanceof InputError) {
    return ApplicationFailure.create({
      type: 'InputError',
      message: err.message,
      nonRetryable: true,
      details: [{ where: err.where, hint: err.hint, ...(err.code ? { code: err.code } : {}) }],
    });
  }
  if (err instanceof IntegrityError && err.sha256 !== undefined) {
    return ApplicationFailure.create({
      type: 'IntegrityError',
      message: err.message,
      nonRetryable: true,
      details: [
        {
          sha256: err.sha256,
          hint: 'the stored object is damaged or missing; its cache records were evicted, so rerunning the pipeline (tempered resume) recomputes it',
        },
      ],
    });
  }
  if (err instanceof StageContractError) {
    return ApplicationFailure.create({
      type: 'StageContractError',
      message: err.message,
      nonRetryable: true,
      details: [{ hint: err.hint }],
    });
  }
  if (err instanceof DiskFullError) {
    return ApplicationFailure.create({
      type: 'DiskFull',
      message: err.message,
      nonRetryable: false,
      details: [{ path: err.path, freeBytes: err.freeBytes, totalBytes: err.totalBytes, neededBytes: err.neededBytes, hint: err.hint }],
      nextRetryDelay: diskFullRetryDelayMs(attempt),
    });
  }
  if (err instanceof ChildProcessDied) {
    return ApplicationFailure.create({
      type: 'ChildProcessDied',
      message: err.message,
      nonRetryable: false,
      details: [{ exitCode: err.exitCode, signal: err.signal, stderrTail: err.stderrTail }],
    });
  }
  return err;
}

/**
 * How long a stage that found its disk full waits before its next attempt: 30 s, doubling with each
 * attempt, at most 5 minutes. The retry policy's own first interval (1 s) would spend every attempt of
 * the default three in 3 s, long before anyone could free space; a full disk is also not an input
 * error, as it is not the pipeline's fault: space freed meanwhile, or the retry landing on another
 * worker with room, lets the run go on by itself. The stage's maximumAttempts still bounds the tries,
 * and once they are spent `tempered resume` takes the run up again.
 */
export function diskFullRetryDelayMs(attempt: number): number {
  return Math.min(DISK_FULL_RETRY_MAX_MS, DISK_FULL_RETRY_MS * 2 ** Math.max(0, attempt - 1));
}
export const DISK_FULL_RETRY_MS = 30_000;
const DISK_FULL_RETRY_MAX_MS = 5 * 60_000;
