/**
 * The paths where JSON values differ: the dashboard's compare of runs' specs and `tempered models diff`'s spec and
 * training lines. Here, apart from both, so the CLI does not load the dashboard's data module for it.
 */
export interface SpecDiffLine {
  path: string;
  /** The value at `path` in each compared spec, in order (undefined where a spec lacks it). */
  values: unknown[];
  /** Where a spec lacks the path, by position (JSON has no undefined: `values` reads null there); only when one does. */
  absent?: boolean[];
}

const branch = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * Paths whose values are not the same in all of the given JSON values (the planned specs of runs): down to the leaves
 * where every spec has the branch, and one line for a whole branch that a spec lacks or holds as another kind of value
 * (a stage only one run has is one line, not one per setting).
 */
export function jsonDiff(values: unknown[], path = '', out: SpecDiffLine[] = []): SpecDiffLine[] {
  if (new Set(values.map((x) => JSON.stringify(x) ?? 'undefined')).size <= 1) return out;
  if (values.every((v) => branch(v) && Array.isArray(v) === Array.isArray(values[0]))) {
    const keys = [...new Set(values.flatMap((v) => Object.keys(v as object)))];
    if (!Array.isArray(values[0])) keys.sort();
    for (const k of keys)
      jsonDiff(
        values.map((v) => (v as Record<string, unknown>)[k]),
        path ? `${path}.${k}` : k,
        out,
      );
    return out;
  }
  const absent = values.map((v) => v === undefined);
  out.push({ path, values, ...(absent.some(Boolean) ? { absent } : {}) });
  return out;
}
