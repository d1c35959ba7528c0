/**
 * A stand-in predictor for server tests: the server is the thing under test there, so the model
 * only has to be observable. It fails loudly if used after close() or closed while busy, which is
 * exactly what a broken hot swap would do.
 */
import type { Prediction, Predictor } from './types.ts';

export class FakePredictor implements Predictor {
  readonly labels = ['short', 'long'];
  inflight = 0;
  closed = false;
  closedWhileBusy = false;
  usedAfterClose = 0;
  calls = 0;
  constructor(
    readonly id: string,
    private readonly delayMs = 0,
    private readonly failOn?: string,
  ) {}

  async predict(texts: string[]): Promise<Prediction[]> {
    if (this.closed) {
      this.usedAfterClose++;
      throw new Error(`${this.id} used after close`);
    }
    this.inflight++;
    this.calls++;
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.closed) {
        this.usedAfterClose++;
        throw new Error(`${this.id} closed during predict`);
      }
      if (this.failOn !== undefined && texts.includes(this.failOn)) throw new Error('model exploded');
      return texts.map((t) => {
        const p = Math.min(1, t.length / 20);
        return { label: p >= 0.5 ? 'long' : 'short', scores: { short: 1 - p, long: p } };
      });
    } finally {
      this.inflight--;
    }
  }

  close(): void {
    if (this.inflight > 0) this.closedWhileBusy = true;
    this.closed = true;
  }
}
