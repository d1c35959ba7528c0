/**
 * How the S3 client retries. The SDK's standard mode tries 5 times within about a second and a half,
 * so an object store that restarts (a few seconds) failed every request made meanwhile, and a stage
 * then had its own few retries, 1 s and 2 s apart, to outlast it: README *Deployment* promises that
 * the store can be restarted under running work, and a run failed instead.
 *
 * Here every retryable error (transient: connection refused or reset, a timeout, 500/502/503/504;
 * throttling; other 5xx) is retried at least 4 times, 250 ms apart at first and doubling up to 4 s;
 * transient errors and throttling go on until `budgetMs` has passed since the request first failed
 * (not since it started: a try that stalled for a minute before timing out still gets its retries).
 * A Retry-After from the server is honoured. Client errors (4xx) are not retried. No jitter: a
 * team's handful of workers does not stampede, and the same failure waits the same time.
 */
import type { RetryErrorInfo, RetryStrategyV2, RetryToken } from '@smithy/types';
import { InputError } from '../errors.ts';

/** The default time a request keeps retrying a store that is away, from its first failure (TEMPERED_S3_RETRY_S). */
export const STORE_RETRY_MS = 20_000;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 4_000;
/** Retries every retryable error gets, whatever the budget (the SDK's standard mode gave 4). */
const MIN_RETRIES = 4;

class Token implements RetryToken {
  constructor(
    private readonly count: number,
    private readonly delay: number,
    /** When the request first failed; undefined until it has. */
    readonly firstFailureAt?: number,
  ) {}
  getRetryCount(): number {
    return this.count;
  }
  getRetryDelay(): number {
    return this.delay;
  }
}

export class StoreRetryStrategy implements RetryStrategyV2 {
  constructor(
    private readonly budgetMs = STORE_RETRY_MS,
    private readonly now: () => number = Date.now,
  ) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return new Token(0, 0);
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const now = this.now();
    const firstFailure = (token instanceof Token ? token.firstFailureAt : undefined) ?? now;
    const count = token.getRetryCount() + 1;
    const giveUp = () => info.error ?? new Error(`not retried: ${info.errorType}`);
    if (info.errorType === 'CLIENT_ERROR') throw giveUp();
    const backoff = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (count - 1));
    const asked = info.retryAfterHint ? info.retryAfterHint.getTime() - now : 0;
    const delay = Math.max(backoff, asked);
    if (count > MIN_RETRIES) {
      if (info.errorType === 'SERVER_ERROR') throw giveUp();
      if (now + delay - firstFailure > this.budgetMs) throw giveUp();
    }
    return new Token(count, delay, firstFailure);
  }

  recordSuccess(): void {}
}

/** TEMPERED_S3_RETRY_S as milliseconds, or the default; a value that is not a number of seconds is an error. */
export function storeRetryMs(env: NodeJS.ProcessEnv): number {
  const raw = env.TEMPERED_S3_RETRY_S;
  if (raw === undefined || raw === '') return STORE_RETRY_MS;
  const s = Number(raw);
  if (!Number.isFinite(s) || s < 0)
    throw new InputError(`${JSON.stringify(raw)} is not a number of seconds`, {
      where: 'TEMPERED_S3_RETRY_S',
      hint: `how long a store request keeps retrying a store that is away after its first failure, e.g. 20 (the default); 0 leaves the 4 quick retries every request gets`,
    });
  return s * 1000;
}
