/**
 * Just enough of the Prometheus text exposition format (version 0.0.4) for the server's
 * counters, gauges and one latency histogram. Series are printed in a stable order.
 */

export type Labels = Record<string, string>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels).sort();
  return keys.length ? `{${keys.map((k) => `${k}="${escapeLabel(labels[k]!)}"`).join(',')}}` : '';
}

function fmt(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  return String(n);
}

interface Metric {
  render(): string[];
}

export class Counter implements Metric {
  private readonly values = new Map<string, { value: number }>();
  /** `unlabelled` counters print 0 before their first increment, so dashboards see the series. */
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly unlabelled = false,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    this.cell(labelText(labels)).value += by;
  }
  /**
   * One series, for a caller that counts it often (a stream's tokens, one at a time): its increments add to a
   * number, with no label text formatted each time, and a scrape sees each of them at once.
   */
  series(labels: Labels = {}): { inc(by?: number): void } {
    const cell = this.cell(labelText(labels));
    return {
      inc: (by = 1) => {
        cell.value += by;
      },
    };
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  private cell(k: string): { value: number } {
    let c = this.values.get(k);
    if (!c) this.values.set(k, (c = { value: 0 }));
    return c;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0 && this.unlabelled) out.push(`${this.name} 0`);
    for (const k of [...this.values.keys()].sort()) out.push(`${this.name}${k} ${fmt(this.values.get(k)!.value)}`);
    return out;
  }
}

/**
 * A value read when scraped (uptime, current model); `counter` for a count kept elsewhere (swaps, a pool's batches),
 * which Prometheus's rate() then reads right, a reset (a new pool after a swap) included.
 */
export class Gauge implements Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => { labels?: Labels; value: number }[],
    private readonly type: 'gauge' | 'counter' = 'gauge',
  ) {}
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} ${this.type}`];
    for (const s of this.read()) out.push(`${this.name}${labelText(s.labels ?? {})} ${fmt(s.value)}`);
    return out;
  }
}

export class Histogram implements Metric {
  private readonly series = new Map<string, { counts: number[]; sum: number; count: number; labels: Labels }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {}
  observe(labels: Labels, value: number): void {
    const k = labelText(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { counts: new Array<number>(this.buckets.length).fill(0), sum: 0, count: 0, labels };
      this.series.set(k, s);
    }
    // Non-cumulative per bucket here; render() accumulates, as the format requires.
    const i = this.buckets.findIndex((b) => value <= b);
    if (i >= 0) s.counts[i]!++;
    s.sum += value;
    s.count++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const k of [...this.series.keys()].sort()) {
      const s = this.series.get(k)!;
      let cum = 0;
      this.buckets.forEach((b, i) => {
        cum += s.counts[i]!;
        out.push(`${this.name}_bucket${labelText({ ...s.labels, le: fmt(b) })} ${cum}`);
      });
      out.push(`${this.name}_bucket${labelText({ ...s.labels, le: '+Inf' })} ${s.count}`);
      out.push(`${this.name}_sum${k} ${fmt(s.sum)}`);
      out.push(`${this.name}_count${k} ${s.count}`);
    }
    return out;
  }
}

export class MetricsRegistry {
  private readonly metrics: Metric[] = [];
  add<M extends Metric>(m: M): M {
    this.metrics.push(m);
    return m;
  }
  render(): string {
    return this.metrics.flatMap((m) => m.render()).join('\n') + '\n';
  }
}

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
