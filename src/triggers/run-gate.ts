/**
 * Retrain only when it matters: compares a run's source data with the last successful run of the
 * same pipeline (unchanged data and spec → skip), and evaluates optional triggers (production
 * metric below a threshold, label distribution drift).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import type { TriggerSpec } from '../spec/types.ts';
import { jensenShannon } from './drift.ts';
import { syncDirSync, writeFileDurableSync } from '../util/durable-write.ts';

export type GateSpec = TriggerSpec;

export interface DataFingerprint {
  stageId: string;
  dataHash: string;
  labels: Record<string, number>;
}

export interface RunRecord {
  runId: string;
  specHash: string;
  data: DataFingerprint[];
  time: string;
}

export interface GateDecision {
  proceed: boolean;
  outcome: 'changed' | 'unchanged' | 'triggered' | 'not-triggered' | 'first-run';
  reason: string;
}

/** Last successful run per pipeline, one small JSON file each, replaced atomically. */
export class RunIndex {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private path(pipeline: string): string {
    return join(this.dir, `${pipeline.replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
  }

  last(pipeline: string): RunRecord | undefined {
    const p = this.path(pipeline);
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as RunRecord) : undefined;
  }

  record(pipeline: string, rec: RunRecord): void {
    const p = this.path(pipeline);
    const tmp = `${p}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    // Flushed before the rename: after a power cut the record is the old one or the new one, whole.
    writeFileDurableSync(tmp, JSON.stringify(rec, null, 2));
    renameSync(tmp, p);
    syncDirSync(this.dir);
  }
}

function sumLabels(data: DataFingerprint[]): Record<string, number> {
  // Labels come from the data: a Map, so `constructor` or `__proto__` are counted like any label.
  const out = new Map<string, number>();
  for (const d of data) for (const [k, v] of Object.entries(d.labels)) out.set(k, (out.get(k) ?? 0) + v);
  return Object.fromEntries(out);
}

/**
 * Decides whether a run goes on. Triggers, when any are set, decide on their own: the run goes on
 * if one fires. Otherwise `skipIfUnchanged` skips a run whose spec and data match the last success.
 */
export function decideGate(
  gate: GateSpec,
  current: { specHash: string; data: DataFingerprint[] },
  last: RunRecord | undefined,
  productionMetric?: number,
): GateDecision {
  const fired: string[] = [];
  const quiet: string[] = [];
  if (gate.metricBelow) {
    const { model, metric, threshold, alias = 'production' } = gate.metricBelow;
    if (productionMetric === undefined) fired.push(`${model}@${alias} has no ${metric} (no such model yet)`);
    else if (productionMetric < threshold) fired.push(`${model}@${alias} ${metric} ${productionMetric.toFixed(4)} < ${threshold}`);
    else quiet.push(`${model}@${alias} ${metric} ${productionMetric.toFixed(4)} ≥ ${threshold}`);
  }
  if (gate.labelDrift) {
    if (!last) fired.push('no earlier successful run to compare label distributions with');
    else {
      const d = jensenShannon(sumLabels(current.data), sumLabels(last.data));
      if (d > gate.labelDrift.threshold)
        fired.push(`label distribution moved: Jensen-Shannon distance ${d.toFixed(4)} > ${gate.labelDrift.threshold}`);
      else quiet.push(`label distribution stable: Jensen-Shannon distance ${d.toFixed(4)} ≤ ${gate.labelDrift.threshold}`);
    }
  }
  if (gate.metricBelow || gate.labelDrift) {
    return fired.length > 0
      ? { proceed: true, outcome: 'triggered', reason: fired.join('; ') }
      : { proceed: false, outcome: 'not-triggered', reason: quiet.join('; ') };
  }
  if (gate.skipIfUnchanged) {
    if (!last) return { proceed: true, outcome: 'first-run', reason: 'no earlier successful run' };
    const sameData =
      JSON.stringify(current.data.map((d) => [d.stageId, d.dataHash])) === JSON.stringify(last.data.map((d) => [d.stageId, d.dataHash]));
    if (sameData && current.specHash === last.specHash)
      return { proceed: false, outcome: 'unchanged', reason: `spec and data match run ${last.runId}` };
    return { proceed: true, outcome: 'changed', reason: sameData ? 'the spec changed' : 'the source data changed' };
  }
  return { proceed: true, outcome: 'changed', reason: 'no gate set' };
}
