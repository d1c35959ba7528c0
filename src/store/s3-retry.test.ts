import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { RetryErrorInfo, RetryToken } from '@smithy/types';
import { StoreRetryStrategy, storeRetryMs } from './s3-retry.ts';

/** Retries a strategy grants for one request that keeps failing alike, on a clock that moves only by the delays. */
async function delays(info: RetryErrorInfo, budgetMs: number): Promise<number[]> {
  let now = 1_000_000;
  const s = new StoreRetryStrategy(budgetMs, () => now);
  let token: RetryToken = await s.acquireInitialRetryToken();
  const out: number[] = [];
  for (;;) {
    try {
      token = await s.refreshRetryTokenForRetry(token, info);
    } catch {
      return out;
    }
    out.push(token.getRetryDelay());
    now += token.getRetryDelay();
  }
}

test('a store that is away is retried until the budget is spent, 250 ms apart at first, doubling to 4 s; 4 retries whatever the budget', async () => {
  assert.deepEqual(await delays({ errorType: 'TRANSIENT' }, 20_000), [250, 500, 1000, 2000, 4000, 4000, 4000, 4000]);
  assert.deepEqual(await delays({ errorType: 'THROTTLING' }, 2_000), [250, 500, 1000, 2000]);
  assert.deepEqual(await delays({ errorType: 'TRANSIENT' }, 0), [250, 500, 1000, 2000], 'a budget of 0 leaves the 4 quick retries');
});

test('the budget counts from the first failure: a try that stalled for a minute before timing out is still retried', async () => {
  let now = 0;
  const s = new StoreRetryStrategy(20_000, () => now);
  let token = await s.acquireInitialRetryToken();
  now = 60_000; // the first try timed out after a minute of silence
  const retries: number[] = [];
  for (;;) {
    try {
      token = await s.refreshRetryTokenForRetry(token, { errorType: 'TRANSIENT' });
    } catch {
      break;
    }
    retries.push(token.getRetryDelay());
    now += token.getRetryDelay() + 60_000; // and so did every retry
  }
  assert.deepEqual(retries, [250, 500, 1000, 2000], 'the 4 retries every request gets, then the budget (spent by the stalls) ends it');
});

test('client errors are not retried; other server errors get four quick tries; Retry-After is honoured within the budget', async () => {
  const refused = new Error('403');
  const s = new StoreRetryStrategy(20_000);
  await assert.rejects(
    s.refreshRetryTokenForRetry(await s.acquireInitialRetryToken(), { errorType: 'CLIENT_ERROR', error: refused as never }),
    (e) => e === refused,
  );
  assert.deepEqual(await delays({ errorType: 'SERVER_ERROR' }, 20_000), [250, 500, 1000, 2000]);
  assert.deepEqual(await delays({ errorType: 'SERVER_ERROR' }, 0), [250, 500, 1000, 2000]);
  const later = new Date(Date.now() + 3_000);
  const s2 = new StoreRetryStrategy(20_000);
  const t = await s2.refreshRetryTokenForRetry(await s2.acquireInitialRetryToken(), { errorType: 'THROTTLING', retryAfterHint: later });
  assert.ok(t.getRetryDelay() > 2_500 && t.getRetryDelay() <= 3_000, String(t.getRetryDelay()));
});

test('TEMPERED_S3_RETRY_S: seconds, default 20, a bad value named', () => {
  assert.equal(storeRetryMs({}), 20_000);
  assert.equal(storeRetryMs({ TEMPERED_S3_RETRY_S: '2.5' }), 2_500);
  assert.throws(() => storeRetryMs({ TEMPERED_S3_RETRY_S: '-1' }), /TEMPERED_S3_RETRY_S: "-1" is not a number of seconds/);
});
