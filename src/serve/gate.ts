import { createHash } from 'node:crypto';
import { setMaxListeners } from 'node:events';

/** Longest Retry-After the server gives (the openai SDK sleeps whatever it says, with no bound of its own). */
export const MAX_RETRY_AFTER_S = 30;

/**
 * The Retry-After for an estimated wait of `estimate` seconds, spread over whole seconds by `key` (a request id): from
 * the estimate up to half as much again, and over at least 3 values (1–3 s for a 1 s estimate), within 1–30 s (an
 * estimate at the cap spreads below it: 15–30 s). Derived from a hash of the key, not Math.random: the same request
 * id always gets the same value (a log line or a test can recompute it), and distinct ids spread evenly.
 */
export function retryAfterSpread(estimate: number, key: string): number {
  const base = Math.min(MAX_RETRY_AFTER_S, Math.max(1, estimate));
  const width = Math.max(2, Math.ceil(base / 2));
  const hi = Math.min(MAX_RETRY_AFTER_S, base + width);
  const lo = Math.max(1, hi - width);
  return lo + (createHash('sha256').update(key).digest().readUInt32BE(0) % (hi - lo + 1));
}

/**
 * Admission for generations: at most `maxConcurrent` run at once and at most `maxQueue` wait; anything
 * beyond is refused at once (the server answers 429), so load never piles up without bound.
 */
export class GenerationGate {
  private running = 0;
  private readonly waiting: { start: () => void; refuse: (reason: Error) => void }[] = [];
  private drained: Error | null = null;
  private readonly halting = new AbortController();
  /** How long a generation held its slot, on average (weighted to the recent ones); undefined before the first ended. */
  private meanHoldMs: number | undefined;
  /** When each running generation took its slot. */
  private readonly starts = new Set<{ at: number }>();

  constructor(
    readonly maxConcurrent: number,
    readonly maxQueue: number,
    /** Milliseconds, for the hold times (a test's clock). */
    private readonly now: () => number = () => performance.now(),
  ) {
    // Each request in flight listens to `halted` until it ends (openai.ts), so past 10 at once Node printed
    // "MaxListenersExceededWarning: Possible EventTarget memory leak" on the server's stderr under ordinary load.
    setMaxListeners(0, this.halting.signal);
  }

  /**
   * A refused request's `Retry-After`: the seconds until the generations waiting now will have started, at the
   * mean time a generation holds its slot (at least 1; at most 30: the openai SDK, 6.30.1 as 6.49.0, sleeps as long
   * as the header says, with no bound of its own, so a bad estimate must not park its callers for minutes). A fixed
   * 1 s let the SDK spend its 2 retries while 16 queued answers of 0.7 s each went on: 5 of 24 requests sent at once
   * failed.
   *
   * Spread by `key` (the request id): the SDK adds no jitter to a server-given Retry-After, so every client refused in
   * one burst came back in the same second and was refused again together. See retryAfterSpread for the bounds.
   */
  retryAfterSeconds(key: string): number {
    return retryAfterSpread(this.estimatedWaitSeconds(), key);
  }

  /** The wait retryAfterSeconds spreads, in whole seconds (0 when nothing waits). */
  estimatedWaitSeconds(): number {
    // Before any has ended (a server just started, its first answers the slowest), the longest running so far is
    // what a generation takes at least.
    const hold = this.meanHoldMs ?? Math.max(0, ...[...this.starts].map((g) => this.now() - g.at));
    return Math.ceil((this.waiting.length * hold) / this.maxConcurrent / 1000);
  }

  get active(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /**
   * A promise of the release function once a slot is free, or null when the queue is full. Aborting
   * `signal` while queued leaves the queue and rejects with the signal's reason.
   */
  tryEnter(signal?: AbortSignal): Promise<() => void> | null {
    if (this.drained) return Promise.reject(this.drained);
    if (this.running < this.maxConcurrent && this.waiting.length === 0) {
      this.running++;
      return Promise.resolve(this.releaser());
    }
    if (this.waiting.length >= this.maxQueue) return null;
    return new Promise((resolve, reject) => {
      const start = () => {
        signal?.removeEventListener('abort', onAbort);
        this.running++;
        resolve(this.releaser());
      };
      const entry = {
        start,
        refuse: (reason: Error) => {
          signal?.removeEventListener('abort', onAbort);
          reject(reason);
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
  }

  /**
   * For a server that stops: what waits for a slot, and whatever asks for one from now on, is refused with
   * `reason`; the generations running go on to their end.
   */
  drain(reason: Error): void {
    this.drained = reason;
    for (const w of this.waiting.splice(0)) w.refuse(reason);
  }

  /** Aborts when the generations running are to stop now (`halt`): each generation's signal follows it. */
  get halted(): AbortSignal {
    return this.halting.signal;
  }

  /**
   * For a server whose stop has waited long enough: the generations running end after their current
   * step, as with a client that left, and `reason` is what their clients are told.
   */
  halt(reason: Error): void {
    // A request that never started keeps being told what a drain tells it, not that its generation was ended.
    if (!this.drained) this.drain(reason);
    this.halting.abort(reason);
  }

  private releaser(): () => void {
    let done = false;
    const entry = { at: this.now() };
    this.starts.add(entry);
    return () => {
      if (done) return;
      done = true;
      this.starts.delete(entry);
      const held = this.now() - entry.at;
      this.meanHoldMs = this.meanHoldMs === undefined ? held : 0.75 * this.meanHoldMs + 0.25 * held;
      this.running--;
      this.waiting.shift()?.start();
    };
  }
}
