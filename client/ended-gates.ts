/**
 * What became of ended runs' gates, by run and execution id (a result never changes, and the Runs page asks every 3 s),
 * kept for at most `kept` runs or the longest listing being marked, whichever is more. First in, first out alone made a
 * listing longer than `kept` (`tempered runs --limit 10000`) read every run's result again each time: each run read
 * pushed out the one the listing would ask for next. A run is kept by the listing that reads it.
 */
export class EndedGates<T> {
  private readonly known = new Map<string, T>();
  constructor(private readonly kept: number) {}

  /** What is known of `key`'s gate, refreshed as recently used. */
  get(key: string): T | undefined {
    if (!this.known.has(key)) return undefined;
    const v = this.known.get(key)!;
    this.known.delete(key);
    this.known.set(key, v);
    return v;
  }

  /** Remembers `key`'s gate, forgetting the least recently used past `kept` or the `listed` runs being marked. */
  set(key: string, value: T, listed: number): void {
    this.known.delete(key);
    this.known.set(key, value);
    const room = Math.max(this.kept, listed);
    for (const old of this.known.keys()) {
      if (this.known.size <= room) break;
      this.known.delete(old);
    }
  }

  get size(): number {
    return this.known.size;
  }
}
