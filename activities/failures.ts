/** How errors from the library leave an activity: which are retried, and what they carry. */
import { ApplicationFailure, type Info } from '@temporalio/activity';
import { ApplicationFailureCategory, msOptionalToNumber } from '@temporalio/common';
import { DiskFullError, InputError, IntegrityError, StageContractError } from '../src/errors.ts';
import { ChildProcessDied } from '../src/isolate/run-in-child.ts';
import { LockBusyError } from '../src/util/dir-lock.ts';

/**
 * Input errors become non-retryable failures that keep where and hint. So does a damaged or
 * missing store object: another attempt would read the same bad bytes (the caller has already
 * evicted the cache records that point at it, so a rerun recomputes it). A stage process that died
 * (crash, OOM kill) becomes a retryable failure that carries its exit signal and last stderr lines.
 * A full disk (DiskFullError) is retried, but only after a wait (see diskFullRetryDelayMs). Anything
 * else is retried. `attempt`: the attempt that failed. A lock another stage holds (LockBusyError) is retried as a wait,
 * not a fault, when `info` says another attempt follows.
 */
export function asActivityFailure(err: unknown, attempt = 1, info?: Pick<Info, 'attempt' | 'retryPolicy'>): unknown {
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
  if (err instanceof LockBusyError && info && lockWaitText(err, info)) {
    // An expected wait (a second run of the same work, under overlap allow-all, training while the first holds the
    // checkpoint folder): BENIGN is the SDK's mark for it, which logs the attempt's end at DEBUG, not as a WARN with its
    // stack on every retry; the adapter logs lockWaitText instead. The last attempt's is a failure, logged in full.
    return ApplicationFailure.create({
      // The type the failure had before, and has on the last attempt (the error's name): a retry policy's
      // nonRetryableErrorTypes that names it holds on every attempt.
      type: 'LockBusyError',
      message: err.message,
      nonRetryable: false,
      category: ApplicationFailureCategory.BENIGN,
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

/**
 * The worker's one line for an attempt that found the lock it needs held (LockBusyError): who holds it and when the next
 * attempt starts, by the retry policy the server applies (its first interval times its backoff, at most its longest);
 * undefined where no attempt follows (the stage fails: a failure, logged in full).
 */
export function lockWaitText(err: LockBusyError, info: Pick<Info, 'attempt' | 'retryPolicy'>): string | undefined {
  const p = info.retryPolicy;
  const max = p?.maximumAttempts ?? 0;
  if (max > 0 && info.attempt >= max) return undefined;
  const initial = msOptionalToNumber(p?.initialInterval) ?? 1000;
  const delay = Math.min(
    initial * (p?.backoffCoefficient ?? 2) ** (info.attempt - 1),
    msOptionalToNumber(p?.maximumInterval) ?? initial * 100,
  );
  const holder = err.owner ? `${err.owner.what} (pid ${err.owner.pid} on ${err.owner.host}, since ${err.owner.since})` : 'another writer';
  const left = max > 0 ? `, ${max - info.attempt} attempt${max - info.attempt === 1 ? '' : 's'} left` : '';
  return `waiting for ${err.path}: held by ${holder}; attempt ${info.attempt + 1} starts in ${Math.ceil(delay / 1000)}s${left}`;
}
