/**
 * Retrain only when it matters: compares a run's source data with the last successful run of the
 * same schedule (or, for runs outside a schedule, the same pipeline; unchanged data and spec →
 * skip), and evaluates optional triggers (production metric below a threshold, label distribution
 * drift).
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
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

/**
 * Whose last successful run a record is: a schedule's (every run it started) or a pipeline's (runs
 * started outside any schedule). The two never share a record, even when a schedule is named like
 * its pipeline.
 */
export type RunOwner = { schedule: string } | { pipeline: string };

export function runOwner(o: { scheduleId?: string; pipeline: string }): RunOwner {
  return o.scheduleId ? { schedule: o.scheduleId } : { pipeline: o.pipeline };
}

/** The record's key: `schedule:<name>` or `pipeline:<name>` (names cannot hold ':'). */
export function runOwnerKey(o: RunOwner): string {
  return 'schedule' in o ? `schedule:${o.schedule}` : `pipeline:${o.pipeline}`;
}

/** The bare name the records were keyed on before owners had namespaces. */
export function legacyRunKey(o: RunOwner): string {
  return 'schedule' in o ? o.schedule : o.pipeline;
}

const SCHEDULED_TIME = String.raw`-\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`;
const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Whether a record written under the old bare-name key belongs to `o`. Old keys were shared: a
 * schedule named like its pipeline wrote where manual runs of the pipeline did, and schedules `x.y`
 * and `x_y` wrote to the same file. The record's run id tells them apart: a schedule's runs are
 * named `<schedule>-<scheduled time>` (e.g. `nightly-2026-11-29T03:00:00Z`), manual runs are not.
 */
export function legacyRecordBelongs(o: RunOwner, rec: RunRecord): boolean {
  if ('schedule' in o) return new RegExp(`^${escapeRe(o.schedule)}${SCHEDULED_TIME}`).test(rec.runId);
  return !new RegExp(SCHEDULED_TIME).test(rec.runId);
}

/**
 * A file name for a key that is the same for no two keys, also where file names ignore case:
 * lowercase letters, digits, '.' and '-' stay, '_' is '__', a capital is '_' and its lowercase
 * letter, anything else is '%' and the hex of each UTF-8 byte.
 */
export function runIndexFileName(key: string): string {
  let out = '';
  for (const ch of key) {
    if (/[a-z0-9.-]/.test(ch)) out += ch;
    else if (ch === '_') out += '__';
    else if (/[A-Z]/.test(ch)) out += `_${ch.toLowerCase()}`;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).padStart(2, '0')}`;
  }
  // Stay well inside the usual 255-byte limit; the hash of the whole key keeps long ones apart.
  if (out.length > 180) out = `${out.slice(0, 140)}%%${createHash('sha256').update(key).digest('hex').slice(0, 32)}`;
  return `${out}.json`;
}

/**
 * Last successful run per schedule and per pipeline, one small JSON file each, replaced atomically.
 * Records written before owners had namespaces (`<name with [^A-Za-z0-9_-] as _>.json`) are read
 * when they provably belong to the owner asked about (`legacyRecordBelongs`), until the first new
 * record replaces them.
 */
export class RunIndex {
  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private path(o: RunOwner): string {
    return join(this.dir, runIndexFileName(runOwnerKey(o)));
  }

  private legacyPath(o: RunOwner): string {
    return join(this.dir, `${legacyRunKey(o).replace(/[^A-Za-z0-9_-]/g, '_')}.json`);
  }

  /** The newer record only, no fallback to the old naming. */
  current(o: RunOwner): RunRecord | undefined {
    const p = this.path(o);
    return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as RunRecord) : undefined;
  }

  /** A record under the old naming that belongs to `o`. */
  legacy(o: RunOwner): RunRecord | undefined {
    const p = this.legacyPath(o);
    if (!existsSync(p)) return undefined;
    const rec = JSON.parse(readFileSync(p, 'utf8')) as RunRecord;
    return legacyRecordBelongs(o, rec) ? rec : undefined;
  }

  last(o: RunOwner): RunRecord | undefined {
    return this.current(o) ?? this.legacy(o);
  }

  record(o: RunOwner, rec: RunRecord): void {
    const p = this.path(o);
    const tmp = `${p}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    // Flushed before the rename: after a power cut the record is the old one or the new one, whole.
    writeFileDurableSync(tmp, JSON.stringify(rec, null, 2));
    renameSync(tmp, p);
    syncDirSync(this.dir);
  }

  /** Drops the owner's record (and an old-named one that belongs to it); true when there was one. */
  forget(o: RunOwner): boolean {
    let had = false;
    if (existsSync(this.path(o))) {
      rmSync(this.path(o));
      had = true;
    }
    if (this.legacy(o)) {
      rmSync(this.legacyPath(o));
      had = true;
    }
    if (had) syncDirSync(this.dir);
    return had;
  }
}

function sumLabels(data: DataFingerprint[]): Record<string, number> {
  // Labels come from the data: a Map, so `constructor` or `__proto__` are counted like any label.
  const out = new Map<string, number>();
  for (const d of data) for (const [k, v] of Object.entries(d.labels)) out.set(k, (out.get(k) ?? 0) + v);
  return Object.fromEntries(out);
}

/**
 * What the metric trigger found on the model: the metric's value, or the version it looked at and
 * the metrics that version has (when it lacks the one asked for). `undefined`: no such model yet.
 */
export type ProductionReading = number | { version: number; value?: number; metrics: string[] };

/**
 * The metric trigger's reading of `version` (what the alias points at now; undefined: no such model yet):
 * the metric's value where the version records it as a number, and the metrics it has.
 */
export function productionReading(
  version: { version: number; metrics: Record<string, unknown> } | undefined,
  metric: string,
): Exclude<ProductionReading, number> | undefined {
  if (!version) return undefined;
  const m = Object.hasOwn(version.metrics, metric) ? version.metrics[metric] : undefined;
  return { version: version.version, value: typeof m === 'number' ? m : undefined, metrics: Object.keys(version.metrics) };
}

/** "has no metric 'f1' (it has f1_macro, accuracy, …)": for the gate's reason and the schedule commands. */
export function missingMetricText(model: string, alias: string, version: number, metric: string, metrics: string[]): string {
  const shown = metrics.slice(0, 6).join(', ') + (metrics.length > 6 ? ', …' : '');
  return `${model}@${alias} (v${version}) has no metric '${metric}' (${metrics.length ? `it has ${shown}` : 'it has no metrics'})`;
}

/**
 * Decides whether a run goes on. Triggers, when any are set, decide on their own: the run goes on
 * if one fires. Otherwise `skipIfUnchanged` skips a run whose spec and data match the last success.
 */
export function decideGate(
  gate: GateSpec,
  current: { specHash: string; data: DataFingerprint[] },
  last: RunRecord | undefined,
  production?: ProductionReading,
): GateDecision {
  const fired: string[] = [];
  const quiet: string[] = [];
  if (gate.metricBelow) {
    const { model, metric, threshold, alias = 'production' } = gate.metricBelow;
    const productionMetric = typeof production === 'object' ? production.value : production;
    if (typeof production === 'object' && production.value === undefined)
      fired.push(missingMetricText(model, alias, production.version, metric, production.metrics));
    else if (productionMetric === undefined) fired.push(`no such model yet: ${model}@${alias}`);
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
