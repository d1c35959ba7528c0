/**
 * Holds the predictor being served and replaces it when the alias moves, without failing a
 * request: the new predictor is loaded completely before the reference is switched, requests
 * hold a lease on the predictor they started with, and the old one is closed only after its last
 * lease is released.
 */
import type { CurrentModel, ResolveCurrent, ServedModel } from './types.ts';

/** A model's `created`, taken as it finishes loading. */
function createdOf(cur: CurrentModel<ServedModel>): number {
  return cur.created ?? Math.floor(Date.now() / 1000);
}

interface Slot<P> {
  key: string;
  predictor: P;
  /** Unix seconds: CurrentModel.created, else when it was loaded. */
  created: number;
  inflight: number;
  retired: boolean;
  closing?: Promise<void>;
}

export interface Lease<P extends ServedModel = ServedModel> {
  readonly predictor: P;
  /** Call exactly once when the request is done with the predictor. */
  release(): void;
}

export interface HotSwapOptions {
  /** How often to ask `resolveCurrent` whether the model changed. */
  pollMs: number;
  /**
   * Called with the new model loaded but not yet served (e.g. to write the `serve.swapped` audit
   * record). If it throws or rejects, the old model keeps serving and the next poll calls it again
   * with the already-loaded model: no model is served without its record.
   */
  onSwap?: (from: string, to: string) => unknown;
  /** `retryInMs`: for a failed load, when the timer will try that version again. */
  onError?: (err: unknown, phase: 'resolve' | 'load' | 'notify' | 'close', detail?: { wanted?: string; retryInMs?: number }) => void;
  /**
   * The longest wait before the timer loads a version whose load failed again (default 5 minutes). The wait starts
   * at `pollMs` and doubles with each failure of that version: a corrupt or missing artifact was otherwise fetched
   * and loaded on every poll, an LLM's hundreds of megabytes every 2 s on a replica that is serving.
   */
  maxLoadRetryMs?: number;
  /** The clock for that wait (tests). */
  now?: () => number;
}

export class HotSwapModel<P extends ServedModel = ServedModel> {
  private slot: Slot<P> | null = null;
  /** A loaded model whose onSwap failed: served once a later onSwap succeeds. */
  private pending: { key: string; predictor: P; created: number } | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<boolean> | null = null;
  private stopped = false;
  private readonly retiring = new Set<Slot<P>>();
  swaps = 0;
  failures = 0;
  /**
   * Why the model served is not the one wanted, since when: the last check could not resolve the alias, or load or
   * record the version it names (a corrupt or missing artifact, a registry that does not answer). Cleared once a check
   * finds the wanted model served. /health says it: a replica that cannot follow its alias kept answering "ok".
   */
  behind: {
    phase: 'resolve' | 'load' | 'notify';
    wanted?: string;
    error: string;
    /** What to do, where the error says (a full disk: free space in the folder it names). */
    hint?: string;
    since: string;
    retryAt?: string;
  } | null = null;
  /** The version whose load failed last: how often in a row, and when the timer may load it again. */
  private failedLoad: { key: string; failures: number; retryAt: number } | null = null;

  constructor(
    private readonly resolveCurrent: ResolveCurrent<P>,
    private readonly opts: HotSwapOptions,
  ) {}

  /** Loads the first model; throws if it cannot, since there is nothing to serve. */
  async start(): Promise<void> {
    const cur = await this.resolveCurrent();
    const predictor = await cur.load();
    this.slot = { key: cur.key, predictor, created: createdOf(cur), inflight: 0, retired: false };
    this.schedule();
  }

  get current(): P {
    if (!this.slot) throw new Error('model not loaded yet: call start() first');
    return this.slot.predictor;
  }

  /** When the model served was made, in Unix seconds (CurrentModel.created), else when this server loaded it. */
  get created(): number {
    if (!this.slot) throw new Error('model not loaded yet: call start() first');
    return this.slot.created;
  }

  get key(): string | null {
    return this.slot?.key ?? null;
  }

  acquire(): Lease<P> {
    const slot = this.slot;
    if (!slot) throw new Error('model not loaded yet: call start() first');
    slot.inflight++;
    let released = false;
    return {
      predictor: slot.predictor,
      release: () => {
        if (released) return;
        released = true;
        slot.inflight--;
        if (slot.retired && slot.inflight === 0) void this.closeSlot(slot);
      },
    };
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      // check() reports its own failures; this catch only keeps a bug there from becoming an
      // unhandled rejection, which would end the whole server process.
      void this.poll(true)
        .catch((e) => this.report(e, 'resolve'))
        .finally(() => this.schedule());
    }, this.opts.pollMs);
    // Polling alone must not keep a process alive; the HTTP server does that.
    this.timer.unref();
  }

  /**
   * Checks once for a new model now, loading it even while a failed load of it waits to be tried again; resolves
   * true if it swapped. Overlapping calls share one check.
   */
  pollOnce(): Promise<boolean> {
    return this.poll(false);
  }

  private poll(patient: boolean): Promise<boolean> {
    this.polling ??= this.check(patient).finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  /** `retry`: for a failed load, when (by the swap's clock) and in how long the timer loads that version again. */
  private fellBehind(e: unknown, phase: 'resolve' | 'load' | 'notify', wanted?: string, retry?: { at: number; inMs: number }): void {
    this.failures++;
    const error = e instanceof Error ? e.message : String(e);
    const hint = (e as { hint?: unknown } | undefined)?.hint;
    const since = this.behind?.since ?? new Date().toISOString();
    this.behind = {
      phase,
      ...(wanted ? { wanted } : {}),
      error,
      ...(typeof hint === 'string' ? { hint } : {}),
      since,
      ...(retry ? { retryAt: new Date(retry.at).toISOString() } : {}),
    };
    this.report(e, phase, { ...(wanted ? { wanted } : {}), ...(retry ? { retryInMs: retry.inMs } : {}) });
  }

  private report(e: unknown, phase: 'resolve' | 'load' | 'notify' | 'close', detail?: { wanted?: string; retryInMs?: number }): void {
    try {
      this.opts.onError?.(e, phase, detail);
    } catch {
      /* an error reporter that throws must not take the server down either */
    }
  }

  /** `patient`: a version whose load failed is not loaded again before its wait is over (the timer's polls). */
  private async check(patient: boolean): Promise<boolean> {
    let cur;
    try {
      cur = await this.resolveCurrent();
    } catch (e) {
      this.fellBehind(e, 'resolve', this.behind?.wanted);
      return false;
    }
    if (!this.slot || this.stopped) return false;
    if (cur.key === this.slot.key) {
      this.behind = null;
      this.failedLoad = null;
      // The alias went back before a pending swap was recorded: drop the pending model.
      await this.dropPending();
      return false;
    }
    let predictor: P, created: number;
    if (this.pending?.key === cur.key) {
      ({ predictor, created } = this.pending);
    } else {
      await this.dropPending();
      const now = (this.opts.now ?? Date.now)();
      const failed = this.failedLoad?.key === cur.key ? this.failedLoad : null;
      if (patient && failed && now < failed.retryAt) return false;
      try {
        predictor = await cur.load();
      } catch (e) {
        // Keep serving the old model; a later poll tries again once the wait is over.
        const failures = (failed?.failures ?? 0) + 1;
        const wait = Math.min(this.opts.pollMs * 2 ** (failures - 1), this.opts.maxLoadRetryMs ?? 300_000);
        const at = (this.opts.now ?? Date.now)() + wait;
        this.failedLoad = { key: cur.key, failures, retryAt: at };
        this.fellBehind(e, 'load', cur.key, { at, inMs: wait });
        return false;
      }
      this.failedLoad = null;
      created = createdOf(cur);
      this.pending = { key: cur.key, predictor, created };
    }
    if (this.stopped) {
      await this.dropPending();
      return false;
    }
    const old = this.slot;
    try {
      await this.opts.onSwap?.(old.key, cur.key);
    } catch (e) {
      // Not recorded, so not served yet: the old model stays, the next poll retries the record.
      this.fellBehind(e, 'notify', cur.key);
      return false;
    }
    this.behind = null;
    this.pending = null;
    this.slot = { key: cur.key, predictor, created, inflight: 0, retired: false };
    this.swaps++;
    old.retired = true;
    this.retiring.add(old);
    if (old.inflight === 0) void this.closeSlot(old);
    return true;
  }

  private async dropPending(): Promise<void> {
    const p = this.pending;
    this.pending = null;
    if (p) await this.safeClose(p.predictor);
  }

  private closeSlot(slot: Slot<P>): Promise<void> {
    slot.closing ??= this.safeClose(slot.predictor).finally(() => this.retiring.delete(slot));
    return slot.closing;
  }

  private async safeClose(p: P): Promise<void> {
    try {
      await p.close();
    } catch (e) {
      this.report(e, 'close');
    }
  }

  /** Stops polling, waits for in-flight requests to release their leases, closes everything. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.polling?.catch(() => undefined);
    await this.dropPending();
    const slot = this.slot;
    if (slot) {
      slot.retired = true;
      this.retiring.add(slot);
      if (slot.inflight === 0) void this.closeSlot(slot);
    }
    // Slots still in use close from release(); wait until every one has.
    while (this.retiring.size > 0) {
      await Promise.all([...this.retiring].map((s) => s.closing ?? new Promise((r) => setTimeout(r, 5))));
    }
  }
}
