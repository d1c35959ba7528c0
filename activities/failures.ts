/** How errors from the library leave an activity: which are retried, and what they carry. */
import { ApplicationFailure } from '@temporalio/activity';
import { InputError, IntegrityError, StageContractError } from '../src/errors.ts';
import { ChildProcessDied } from '../src/isolate/run-in-child.ts';

/**
 * Input errors become non-retryable failures that keep where and hint. So does a damaged or
 * missing store object: another attempt would read the same bad bytes (the caller has already
 * evicted the cache records that point at it, so a rerun recomputes it). A stage process that died
 * (crash, OOM kill) becomes a retryable failure that carries its exit signal and last stderr lines.
 * Anything else is retried.
 */
export function asActivityFailure(err: unknown): unknown {
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
