/**
 * Holds the predictor being served and replaces it when the alias moves, without failing a
 * request: the new predictor is loaded completely before the reference is switched, requests
 * hold a lease on the predictor they started with, and the old one is closed only after its last
 * lease is released.
 */
import type { ResolveCurrent, ServedModel } from './types.ts';

interface Slot<P> {
  key: string;
  predictor: P;
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
  onSwap?: (from: string, to: string) => void;
  onError?: (err: unknown, phase: 'resolve' | 'load' | 'close') => void;
}

export class HotSwapModel<P extends ServedModel = ServedModel> {
  private slot: Slot<P> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private polling: Promise<boolean> | null = null;
  private stopped = false;
  private readonly retiring = new Set<Slot<P>>();
  swaps = 0;
  failures = 0;

  constructor(private readonly resolveCurrent: ResolveCurrent<P>, private readonly opts: HotSwapOptions) {}

  /** Loads the first model; throws if it cannot, since there is nothing to serve. */
  async start(): Promise<void> {
    const cur = await this.resolveCurrent();
    const predictor = await cur.load();
    this.slot = { key: cur.key, predictor, inflight: 0, retired: false };
    this.schedule();
  }

  get current(): P {
    if (!this.slot) throw new Error('model not loaded yet: call start() first');
    return this.slot.predictor;
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
      void this.pollOnce().finally(() => this.schedule());
    }, this.opts.pollMs);
    // Polling alone must not keep a process alive; the HTTP server does that.
    this.timer.unref();
  }

  /** Checks once for a new model; resolves true if it swapped. Overlapping calls share one check. */
  pollOnce(): Promise<boolean> {
    this.polling ??= this.check().finally(() => {
      this.polling = null;
    });
    return this.polling;
  }

  private async check(): Promise<boolean> {
    let cur;
    try {
      cur = await this.resolveCurrent();
    } catch (e) {
      this.failures++;
      this.opts.onError?.(e, 'resolve');
      return false;
    }
    if (!this.slot || cur.key === this.slot.key || this.stopped) return false;
    let predictor: P;
    try {
      predictor = await cur.load();
    } catch (e) {
      // Keep serving the old model; the next poll tries again.
      this.failures++;
      this.opts.onError?.(e, 'load');
      return false;
    }
    if (this.stopped) {
      await this.safeClose(predictor);
      return false;
    }
    const old = this.slot;
    this.slot = { key: cur.key, predictor, inflight: 0, retired: false };
    this.swaps++;
    old.retired = true;
    this.retiring.add(old);
    if (old.inflight === 0) void this.closeSlot(old);
    this.opts.onSwap?.(old.key, cur.key);
    return true;
  }

  private closeSlot(slot: Slot<P>): Promise<void> {
    slot.closing ??= this.safeClose(slot.predictor).finally(() => this.retiring.delete(slot));
    return slot.closing;
  }

  private async safeClose(p: P): Promise<void> {
    try {
      await p.close();
    } catch (e) {
      this.opts.onError?.(e, 'close');
    }
  }

  /** Stops polling, waits for in-flight requests to release their leases, closes everything. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.polling;
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
