/**
 * What changed between two versions of a model: parameters, metrics, data and artifacts. Differences of
 * production.* are given only where both sides were measured against the same version.
 */
import { canonicalJson } from '../util/canonical-json.ts';
import { productionMeasuredAgainst } from './production.ts';
import type { DataRef, ModelVersion, VersionDiff } from './types.ts';

/** Nested params → dotted keys; arrays are compared whole. */
export function flattenParams(v: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const entries = Object.entries(v as Record<string, unknown>);
    if (entries.length === 0 && prefix) out[prefix] = {};
    for (const [k, x] of entries) flattenParams(x, prefix ? `${prefix}.${k}` : k, out);
  } else if (prefix) {
    out[prefix] = v;
  }
  return out;
}

const byKey = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

export function diffModelVersions(a: ModelVersion, b: ModelVersion): VersionDiff {
  const pa = flattenParams(a.params);
  const pb = flattenParams(b.params);
  const params: VersionDiff['params'] = [];
  for (const key of [...new Set([...Object.keys(pa), ...Object.keys(pb)])].sort(byKey)) {
    const inA = Object.hasOwn(pa, key);
    const inB = Object.hasOwn(pb, key);
    if (inA && inB && canonicalJson(pa[key]) === canonicalJson(pb[key])) continue;
    params.push({ key, ...(inA ? { a: pa[key] } : {}), ...(inB ? { b: pb[key] } : {}) });
  }

  // Which version each side's production.* were measured against: scores against different versions
  // (or an unknown one) are different comparisons, and their difference means nothing.
  const against = { a: productionMeasuredAgainst(a), b: productionMeasuredAgainst(b) };
  const production: VersionDiff['production'] =
    against.a === undefined && against.b === undefined
      ? undefined
      : {
          ...(against.a !== undefined ? { a: against.a } : {}),
          ...(against.b !== undefined ? { b: against.b } : {}),
          comparable: typeof against.a === 'number' && against.a === against.b,
        };
  const noDelta = (name: string) =>
    name === 'production.version' || (production !== undefined && !production.comparable && name.startsWith('production.'));
  const metrics: VersionDiff['metrics'] = [...new Set([...Object.keys(a.metrics), ...Object.keys(b.metrics)])].sort(byKey).map((name) => {
    const x = a.metrics[name];
    const y = b.metrics[name];
    return {
      name,
      ...(x !== undefined ? { a: x } : {}),
      ...(y !== undefined ? { b: y } : {}),
      ...(x !== undefined && y !== undefined && !noDelta(name) ? { delta: y - x } : {}),
    };
  });

  const shaA = new Set(a.lineage.data.map((d) => d.sha256));
  const shaB = new Set(b.lineage.data.map((d) => d.sha256));
  // A data set of the same name with other bytes (a retrain's new split) is a change, not an unrelated pair.
  const once = (refs: DataRef[]) => {
    const count = new Map<string, number>();
    for (const d of refs) count.set(d.name, (count.get(d.name) ?? 0) + 1);
    return new Map(refs.filter((d) => count.get(d.name) === 1).map((d) => [d.name, d] as const));
  };
  const onceA = once(a.lineage.data);
  const data = {
    added: b.lineage.data.filter((d) => !shaA.has(d.sha256)),
    removed: a.lineage.data.filter((d) => !shaB.has(d.sha256)),
    unchanged: b.lineage.data.filter((d) => shaA.has(d.sha256)),
    changed: [...once(b.lineage.data).values()].flatMap((y) => {
      const x = onceA.get(y.name);
      return x && x.sha256 !== y.sha256 && !shaA.has(y.sha256) && !shaB.has(x.sha256) ? [{ name: y.name, a: x, b: y }] : [];
    }),
  };

  const artA = new Map(a.artifacts.map((x) => [x.role, x.sha256] as const));
  const artB = new Map(b.artifacts.map((x) => [x.role, x.sha256] as const));
  const artifacts = [...new Set([...artA.keys(), ...artB.keys()])].sort(byKey).map((role) => {
    const x = artA.get(role);
    const y = artB.get(role);
    return { role, ...(x ? { a: x } : {}), ...(y ? { b: y } : {}), changed: x !== y };
  });

  return {
    name: a.name,
    a: a.version,
    b: b.version,
    params,
    metrics,
    ...(production ? { production } : {}),
    data,
    artifacts,
    specHashChanged: a.lineage.specHash !== b.lineage.specHash,
    codeVersionChanged: (a.lineage.codeVersion ?? null) !== (b.lineage.codeVersion ?? null),
    baseModelChanged: canonicalJson(a.lineage.baseModel ?? null) !== canonicalJson(b.lineage.baseModel ?? null),
  };
}

/**
 * What both sides' production.* were measured against, in words; undefined when one side has none.
 * `models diff` and the dashboard's version diff both print it, since their deltas hang on it.
 */
export function productionComparisonNote(d: VersionDiff): string | undefined {
  const p = d.production;
  if (!p || p.a === undefined || p.b === undefined) return undefined;
  if (p.comparable) return `production.* of both measured against v${p.a}`;
  const against = (x: number | null) => (x === null ? 'a version the registry does not name' : `v${x}`);
  return `production.* measured against different versions: v${d.a}'s against ${against(p.a)}, v${d.b}'s against ${against(p.b)}; no differences given`;
}
