/**
 * Which version a registered version's `production.*` metrics were measured against.
 *
 * evaluate gives gates `production.version` ('name@N': the version its production alias pointed at)
 * and `production.decontaminated` (a boolean) beside production's scores. The registry keeps numbers
 * only, so the register stage stores them as numbers (`registryProductionMetrics`):
 * - `production.version` = N, when `name` is the model being registered (evaluate compared with
 *   another version of the same model); left out when evaluate compared with another model's version,
 *   since N alone would read as a version of this one;
 * - `production.decontaminated` = 1 (scored only on the test rows it was not trained on) or 0 (its
 *   training data could not be read: scored on all test rows);
 * - `production.same_model` = 1 when production's model was the candidate's bytes (evaluate then gives the candidate's
 *   scores as production's instead of scoring them twice); absent otherwise.
 * `models show` says which version production.* refers to, `models diff` gives no deltas between
 * production.* measured against different versions, and `models promote --gate` uses a candidate's
 * own production.* only when they were measured against the version that holds the alias now.
 */
import type { ModelVersion } from './types.ts';

/** Names under `production.` that only evaluate measures: a version's registered metrics lack them. */
const EVALUATE_ONLY = ['rows', 'contaminated_rows', 'decontaminated', 'candidate', 'same_model'];

/** `production.rows`, `production.candidate.f1_macro`, …: a name a holder's registered metrics cannot answer. */
export function isEvaluateOnlyName(name: string): boolean {
  const [head, second] = name.split('.');
  return head === 'production' && second !== undefined && EVALUATE_ONLY.includes(second);
}

/**
 * evaluate's metrics with `production.version` ('name@N') and `production.decontaminated` (boolean) as
 * numbers the registry keeps (see above); everything else as given. `name` is the model being registered.
 */
export function registryProductionMetrics(metrics: Record<string, unknown>, name: string): Record<string, unknown> {
  const p = metrics.production;
  if (p === null || typeof p !== 'object' || Array.isArray(p)) return metrics;
  const { version, decontaminated, same_model, ...rest } = p as Record<string, unknown>;
  const production: Record<string, unknown> = rest;
  const n = typeof version === 'string' ? versionOf(version, name) : undefined;
  if (n !== undefined) production.version = n;
  if (typeof decontaminated === 'boolean') production.decontaminated = decontaminated ? 1 : 0;
  else if (decontaminated !== undefined) production.decontaminated = decontaminated;
  if (typeof same_model === 'boolean') production.same_model = same_model ? 1 : 0;
  else if (same_model !== undefined) production.same_model = same_model;
  return { ...metrics, production };
}

/** N of 'name@N' when the name is `name`. */
function versionOf(ref: string, name: string): number | undefined {
  const at = ref.lastIndexOf('@');
  if (at < 0 || ref.slice(0, at) !== name || !/^[1-9]\d*$/.test(ref.slice(at + 1))) return undefined;
  return Number(ref.slice(at + 1));
}

/**
 * The version `v`'s production.* were measured against: N; null when it has production.* metrics but
 * the registry does not know against which (registered before it was recorded, or compared with another
 * model's version); undefined when it has no production.* metrics (evaluate found no version to compare with).
 */
export function productionMeasuredAgainst(v: Pick<ModelVersion, 'metrics'>): number | null | undefined {
  const version = v.metrics['production.version'];
  if (version !== undefined) return version;
  return Object.keys(v.metrics).some((k) => k.startsWith('production.')) ? null : undefined;
}

/** One line on what `v`'s production.* metrics are, for `models show`; undefined when it has none. */
export function productionNote(v: Pick<ModelVersion, 'metrics'>): string | undefined {
  const against = productionMeasuredAgainst(v);
  if (against === undefined) return undefined;
  const rows = v.metrics['production.rows'];
  const decontaminated = v.metrics['production.decontaminated'];
  const on =
    decontaminated === 0
      ? ', on all test rows (its training data could not be read)'
      : rows !== undefined
        ? `, on the ${rows} test rows it was not trained on`
        : '';
  return against === null
    ? 'production.* measured against a version the registry does not name (registered before it was recorded, or compared with another model)'
    : `production.* measured against v${against}${on}`;
}

/**
 * `v`'s own production.* as evaluate gave them to gates, for a promote gate: the nested metrics with
 * `version` 'name@N' and `decontaminated`, `same_model` booleans again.
 */
export function evaluatedProduction(v: Pick<ModelVersion, 'name' | 'metrics'>, nested: Record<string, unknown>): Record<string, unknown> {
  const p = { ...(nested.production as Record<string, unknown>) };
  if (typeof p.version === 'number') p.version = `${v.name}@${p.version}`;
  if (typeof p.decontaminated === 'number') p.decontaminated = p.decontaminated !== 0;
  if (typeof p.same_model === 'number') p.same_model = p.same_model !== 0;
  return p;
}
