/** How a lock another stage holds leaves an activity: a wait while attempts remain, a failure on the last. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ApplicationFailure } from '@temporalio/activity';
import { ApplicationFailureCategory } from '@temporalio/common';
import { LockBusyError } from '../src/util/dir-lock.ts';
import { asActivityFailure, lockWaitText } from './failures.ts';

const owner = { token: 't', pid: 7, host: 'h', what: 'run r1 stage train', since: '2026-12-08T03:00:00.000Z' };
const busy = new LockBusyError('/ck/train.lock', owner);
const policy = { initialInterval: 2000, backoffCoefficient: 3, maximumInterval: 10_000, maximumAttempts: 4 };

test('lockWaitText names the holder, the next attempt, its delay by the retry policy, and the attempts left', () => {
  assert.equal(
    lockWaitText(busy, { attempt: 2, retryPolicy: policy }),
    'waiting for /ck/train.lock: held by run r1 stage train (pid 7 on h, since 2026-12-08T03:00:00.000Z); attempt 3 starts in 6s, 2 attempts left',
  );
  // Capped at the policy's longest interval; '2s' strings are read as well as numbers.
  assert.match(
    lockWaitText(busy, { attempt: 3, retryPolicy: { ...policy, initialInterval: '2s' } })!,
    /attempt 4 starts in 10s, 1 attempt left$/,
  );
  // No attempt follows the last: no wait is said.
  assert.equal(lockWaitText(busy, { attempt: 4, retryPolicy: policy }), undefined);
  // Unlimited attempts, no policy read: the server's defaults (1 s, doubling), no count.
  assert.match(
    lockWaitText(new LockBusyError('/l', undefined), { attempt: 1, retryPolicy: undefined })!,
    /held by another writer; attempt 2 starts in 1s$/,
  );
});

test('a LockBusyError is a benign retryable failure while attempts remain, and an ordinary failure on the last', () => {
  const wait = asActivityFailure(busy, 1, { attempt: 1, retryPolicy: policy });
  assert.ok(wait instanceof ApplicationFailure);
  assert.deepEqual([wait.type, wait.nonRetryable, wait.category], ['LockBusyError', false, ApplicationFailureCategory.BENIGN]);
  // The last attempt's failure is the error itself, logged and reported in full (not marked benign).
  assert.equal(asActivityFailure(busy, 4, { attempt: 4, retryPolicy: policy }), busy);
});
