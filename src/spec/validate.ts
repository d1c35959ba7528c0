/**
 * Validation of a parsed pipeline file: the JSON Schema first, then the semantic checks, all of
 * them run so every problem is reported at once. Checks read the data defensively because it
 * may have failed the schema.
 */
import { checkCycles, checkDurations, checkKinds, checkNeeds, isObject } from './check-stages.ts';
import { checkKindRules } from './check-kinds.ts';
import { checkRefs } from './check-refs.ts';
import { checkWith } from './check-with.ts';
import type { CheckContext } from './context.ts';
import { buildGraph } from './graph.ts';
import { checkParamDeclarations, declaredParams, resolveParams } from './params.ts';
import type { ParsedSource } from './parse.ts';
import { validatePipelineSchema } from './schema.ts';
import { humanizeAjvErrors } from './schema-errors.ts';
import type { KindRegistry, ParamValue, PipelineSpec, SpecError } from './types.ts';

export interface ValidateOptions extends KindRegistry {
  /** `--param` values, as text; see parseParamOverrides. */
  paramOverrides?: Record<string, string>;
  /** Report parameters without default or override (default true; false for checking a file alone). */
  requireParams?: boolean;
  /** Folder the file's relative paths resolve against, when it is on this machine's disk (enables checks of local paths). */
  baseDir?: string;
}

export type ValidateResult = { ok: true; spec: PipelineSpec; params: Record<string, ParamValue> } | { ok: false; errors: SpecError[] };

export function validateParsed(parsed: ParsedSource, opts: ValidateOptions): ValidateResult {
  const errors: SpecError[] = [];
  const validate = validatePipelineSchema();
  if (!validate(parsed.data)) errors.push(...humanizeAjvErrors(validate.errors ?? [], { parsed, basePointer: '', code: 'schema' }));
  const data = isObject(parsed.data) ? parsed.data : {};
  const stagesValue = isObject(data.stages) ? data.stages : {};
  const stages = new Map<string, Record<string, unknown>>();
  for (const [id, s] of Object.entries(stagesValue)) if (isObject(s)) stages.set(id, s);
  // Malformed stages still exist as needs targets; only their own checks are skipped.
  const graphInput = Object.fromEntries(Object.keys(stagesValue).map((id) => [id, stages.get(id) ?? {}]));
  const params = declaredParams(data);
  errors.push(...checkParamDeclarations(params, parsed));
  const resolved = resolveParams(params, opts.paramOverrides ?? {}, parsed);
  errors.push(...resolved.errors.filter((e) => opts.requireParams !== false || e.code !== 'missing-param'));
  const ctx: CheckContext = {
    parsed,
    kinds: opts.kinds,
    unavailable: opts.knownButUnavailable ?? new Set(),
    params,
    paramNames: new Set(isObject(data.params) ? Object.keys(data.params) : []),
    paramValues: resolved.values,
    stages,
    graph: buildGraph(graphInput),
    errors,
  };
  checkKinds(ctx);
  checkNeeds(ctx);
  checkCycles(ctx);
  checkDurations(ctx);
  checkRefs(ctx);
  checkKindRules(ctx, checkWith(ctx), opts.baseDir);
  if (errors.length) return { ok: false, errors: sortErrors(errors) };
  return { ok: true, spec: parsed.data as PipelineSpec, params: resolved.values };
}

/** File order, then command-line problems; stable, so errors at one spot keep the order they were found in. */
export function sortErrors(errors: SpecError[]): SpecError[] {
  const rank = (e: SpecError) => (e.line === 0 ? Number.MAX_SAFE_INTEGER : e.line);
  return errors
    .map((e, i) => [e, i] as const)
    .sort(([a, i], [b, j]) => rank(a) - rank(b) || a.column - b.column || i - j)
    .map(([e]) => e);
}
