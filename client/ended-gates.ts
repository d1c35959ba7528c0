/**
 * What became of ended runs' gates, by run and execution id (a result never changes, and the Runs page asks every 3 s),
 * kept for at most `kept` runs or the longest listing being marked, whichever is more, least recently used first: the
 * dashboard's page (at most 1,001 runs, asked every 3 s) stays known while other listings come and go, where first in,
 * first out pushed it out first. The longest listing counts for a process that lists more than `kept` runs again and
 * again (a library caller: `tempered runs` lists once per process, the dashboard 1,001 at most), where each run read
 * would push out the one the listing asks for next. A run is kept by the listing that reads it.
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
