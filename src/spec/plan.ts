/**
 * Turns a validated spec and resolved parameter values into the plan the workflow runs:
 * parameters substituted, defaults merged, durations in milliseconds, stages in a
 * deterministic topological order, and a hash identifying the resolved spec.
 */
import { canonicalJson, sha256Hex } from '../util/canonical-json.ts';
import { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from './defaults.ts';
import { parseDuration } from './duration.ts';
import { buildGraph, topologicalOrder } from './graph.ts';
import { fillParamRefs, findRefs, isWholeRef } from './runtime-refs.ts';
import type { ParamValue, PipelineSpec, PlannedPipeline, PlannedRetry, PlannedStage, RetrySpec } from './types.ts';

export { DEFAULT_RETRY, DEFAULT_TIMEOUT_MS } from './defaults.ts';

export function planPipeline(spec: PipelineSpec, params: Record<string, ParamValue>): PlannedPipeline {
  const graph = buildGraph(spec.stages);
  const order = topologicalOrder(graph);
  const position = new Map(order.map((id, i) => [id, i]));
  const byPlanOrder = (ids: string[]) => [...ids].sort((a, b) => position.get(a)! - position.get(b)!);
  const defaults = spec.defaults ?? {};
  const stages = order.map((id): PlannedStage => {
    const s = spec.stages[id]!;
    const stage: PlannedStage = {
      id,
      uses: s.uses,
      needs: byPlanOrder(graph.needs.get(id)!),
      with: substituteParams(s.with ?? {}, params) as Record<string, unknown>,
      retry: mergeRetry(defaults.retry, s.retry),
      timeout: ms(s.timeout ?? defaults.timeout) ?? DEFAULT_TIMEOUT_MS,
      cache: s.cache ?? true,
      dependents: byPlanOrder(graph.dependents.get(id)!),
    };
    const heartbeat = ms(s.heartbeatTimeout ?? defaults.heartbeatTimeout);
    if (heartbeat !== undefined) stage.heartbeatTimeout = heartbeat;
    const queue = s.queue ?? defaults.queue;
    if (queue !== undefined) stage.queue = String(substituteParams(queue, params));
    return stage;
  });
  const resolvedParams = Object.fromEntries(Object.keys(spec.params ?? {}).map((k) => [k, params[k]!]));
  const body = {
    name: spec.name,
    params: resolvedParams,
    concurrency: spec.concurrency ?? stages.length,
    onFailure: spec.onFailure ?? 'fail-fast',
    ...(spec.triggers ? { triggers: spec.triggers } : {}),
    stages,
  };
  const plan: PlannedPipeline = {
    name: body.name,
    specHash: sha256Hex(canonicalJson(body)),
    params: body.params,
    concurrency: body.concurrency,
    onFailure: body.onFailure,
    stages,
  };
  if (spec.triggers) plan.triggers = spec.triggers;
  return plan;
}

/** What `specHash` is the hash of: the plan without its hash (`sha256Hex(canonicalJson(specBody(plan))) === plan.specHash`). */
export function specBody(plan: PlannedPipeline): Omit<PlannedPipeline, 'specHash'> {
  const { specHash: _, ...body } = plan;
  return body;
}

function ms(d: string | undefined): number | undefined {
  if (d === undefined) return undefined;
  const v = parseDuration(d);
  if (v === undefined) throw new Error(`planPipeline: '${d}' is not a duration; validate the spec first`);
  return v;
}

function mergeRetry(defaults: RetrySpec | undefined, own: RetrySpec | undefined): PlannedRetry {
  const r = { ...defaults, ...own };
  return {
    maximumAttempts: r.maximumAttempts ?? DEFAULT_RETRY.maximumAttempts,
    initialInterval: ms(r.initialInterval) ?? DEFAULT_RETRY.initialInterval,
    backoffCoefficient: r.backoffCoefficient ?? DEFAULT_RETRY.backoffCoefficient,
    maximumInterval: ms(r.maximumInterval) ?? Math.max(DEFAULT_RETRY.maximumInterval, ms(r.initialInterval) ?? 0),
    nonRetryableErrorTypes: [...(r.nonRetryableErrorTypes ?? DEFAULT_RETRY.nonRetryableErrorTypes)],
  };
}

/**
 * Replaces `${{ params.x }}`: a string that is exactly one reference becomes the typed value,
 * an embedded one is stringified. Stage-output references stay for run time. A parameter with no
 * value is a bug once the spec is validated (`unknown: 'throw'`, planning); validation itself keeps
 * such a reference as written (`'keep'`: a parameter without a default that `validate` was not given).
 */
export function substituteParams(
  value: unknown,
  params: Record<string, ParamValue>,
  o: { unknown: 'throw' | 'keep' } = { unknown: 'throw' },
): unknown {
  if (typeof value === 'string') {
    const known = (name: string) => Object.prototype.hasOwnProperty.call(params, name);
    const refs = findRefs(value).filter((r) => r.target?.kind === 'param' && (o.unknown === 'throw' || known(r.target.name)));
    if (!refs.length) return value;
    const get = (name: string) => {
      if (!known(name)) throw new Error(`planPipeline: no value for parameter '${name}'; validate the spec first`);
      return params[name]!;
    };
    if (isWholeRef(value) && refs.length === 1) return get((refs[0]!.target as { name: string }).name);
    return fillParamRefs(value, refs, get).text;
  }
  if (Array.isArray(value)) return value.map((v) => substituteParams(v, params, o));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, substituteParams(v, params, o)]));
  return value;
}
