/**
 * How the S3 client retries. The SDK's standard mode tries 5 times within about a second and a half,
 * so an object store that restarts (a few seconds) failed every request made meanwhile, and a stage
 * then had its own few retries, 1 s and 2 s apart, to outlast it: README *Deployment* promises that
 * the store can be restarted under running work, and a run failed instead.
 *
 * Here an error the SDK calls transient (connection refused or reset, a timeout, 500/502/503/504) or
 * throttling is retried until `budgetMs` has passed since the request's first try, 250 ms apart at
 * first, doubling up to 4 s; a Retry-After from the server is honoured within the budget. Other
 * server errors get the SDK's usual four quick retries, and client errors (4xx) none. No jitter: a
 * team's handful of workers does not stampede, and the same failure waits the same time.
 */
import type { RetryErrorInfo, RetryStrategyV2, RetryToken } from '@smithy/types';
import { InputError } from '../errors.ts';

/** The default time a request keeps retrying a store that is away (TEMPERED_S3_RETRY_S). */
export const STORE_RETRY_MS = 20_000;
const FIRST_DELAY_MS = 250;
const MAX_DELAY_MS = 4_000;
const SERVER_ERROR_RETRIES = 4;

class Token implements RetryToken {
  constructor(
    private readonly count: number,
    private readonly delay: number,
    readonly firstTryAt: number,
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
    return new Token(0, 0, this.now());
  }

  async refreshRetryTokenForRetry(token: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const first = token instanceof Token ? token.firstTryAt : this.now();
    const count = token.getRetryCount() + 1;
    const giveUp = () => info.error ?? new Error(`not retried: ${info.errorType}`);
    if (info.errorType === 'CLIENT_ERROR') throw giveUp();
    if (info.errorType === 'SERVER_ERROR' && count > SERVER_ERROR_RETRIES) throw giveUp();
    const backoff = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** (count - 1));
    const asked = info.retryAfterHint ? info.retryAfterHint.getTime() - this.now() : 0;
    const delay = Math.max(backoff, asked);
    if (this.now() + delay - first > this.budgetMs) throw giveUp();
    return new Token(count, delay, first);
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
      hint: `how long a store request keeps retrying a store that is away, e.g. 20 (the default); 0 retries only as the server errors allow`,
    });
  return s * 1000;
}
