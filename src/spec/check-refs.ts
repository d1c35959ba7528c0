/**
 * Checks every `${{ … }}` in stage config and queues: the expression is one we understand, the
 * parameter or stage exists, the stage's kind has that output, and the stage is upstream.
 */
import { isObject } from './check-stages.ts';
import { type CheckContext, report } from './context.ts';
import { ancestors, type StageGraph } from './graph.ts';
import type { Segment } from './paths.ts';
import { findRefs, forEachString, type FoundRef } from './runtime-refs.ts';
import { closest, nameList } from './suggest.ts';

/** Ancestor sets per graph, computed once per stage however many references it has. */
const upstreamCache = new WeakMap<StageGraph, Map<string, Set<string>>>();

function upstreamOf(graph: StageGraph, id: string): Set<string> {
  let byStage = upstreamCache.get(graph);
  if (!byStage) upstreamCache.set(graph, (byStage = new Map()));
  let set = byStage.get(id);
  if (!set) byStage.set(id, (set = ancestors(graph, id)));
  return set;
}

const REF_FORMS = 'write ${{ params.<name> }} or ${{ stages.<id>.outputs.<name> }}';

export function checkRefs(ctx: CheckContext): void {
  const data = ctx.parsed.data as Record<string, unknown>;
  if (isObject(data.defaults) && typeof data.defaults.queue === 'string')
    checkString(ctx, undefined, ['defaults', 'queue'], data.defaults.queue, true);
  for (const [id, stage] of ctx.stages) {
    if (typeof stage.queue === 'string') checkString(ctx, id, ['stages', id, 'queue'], stage.queue, true);
    if (isObject(stage.with)) forEachString(stage.with, (text, path) => checkString(ctx, id, ['stages', id, 'with', ...path], text, false));
  }
}

function checkString(ctx: CheckContext, stageId: string | undefined, seg: Segment[], text: string, paramsOnly: boolean): void {
  const seen = new Map<string, number>();
  for (const ref of findRefs(text)) {
    const occurrence = seen.get(ref.raw) ?? 0;
    seen.set(ref.raw, occurrence + 1);
    checkRef(ctx, stageId, seg, ref, occurrence, paramsOnly);
  }
}

function checkRef(
  ctx: CheckContext,
  stageId: string | undefined,
  seg: Segment[],
  ref: FoundRef,
  occurrence: number,
  paramsOnly: boolean,
): void {
  const at = { text: ref.raw, occurrence };
  const t = ref.target;
  if (!t) {
    const unterminated = !ref.raw.endsWith('}}');
    report(ctx, seg, {
      ...at,
      code: 'bad-ref',
      message: unterminated ? `reference '${ref.raw}' is missing its closing '}}'` : `'${ref.raw}' is not a reference tempered understands`,
      hint: REF_FORMS,
    });
    return;
  }
  if (t.kind === 'param') {
    if (!ctx.paramNames.has(t.name)) {
      const known = [...ctx.paramNames];
      const guess = closest(t.name, known);
      report(ctx, seg, {
        ...at,
        code: 'unknown-param',
        message: `unknown parameter '${t.name}' in ${ref.raw}`,
        hint: known.length
          ? `${guess ? `did you mean '${guess}'? ` : ''}parameters are: ${nameList(known)}`
          : `declare it under params:, e.g. params: { ${t.name}: { type: string } }`,
      });
    }
    return;
  }
  if (paramsOnly || stageId === undefined) {
    report(ctx, seg, {
      ...at,
      code: 'bad-ref',
      message: `a queue is chosen before any stage runs, so it cannot use ${ref.raw}`,
      hint: 'use a parameter or a fixed queue name',
    });
    return;
  }
  if (!ctx.graph.needs.has(t.stage)) {
    const others = ctx.graph.ids.filter((s) => s !== stageId);
    const guess = closest(t.stage, others);
    report(ctx, seg, {
      ...at,
      code: 'unknown-stage',
      message: `unknown stage '${t.stage}' in ${ref.raw}`,
      hint: `${guess ? `did you mean '${guess}'? ` : ''}stages are: ${nameList(others)}`,
    });
    return;
  }
  if (t.stage === stageId) {
    report(ctx, seg, {
      ...at,
      code: 'not-upstream',
      message: `stage '${stageId}' cannot use its own output ${ref.raw}`,
      hint: 'use the output of a stage it needs',
    });
    return;
  }
  const uses = ctx.stages.get(t.stage)?.uses;
  const kind = typeof uses === 'string' ? ctx.kinds.get(uses) : undefined;
  if (kind && !Object.prototype.hasOwnProperty.call(kind.outputs, t.output)) {
    const names = Object.keys(kind.outputs);
    const guess = closest(t.output, names);
    report(ctx, seg, {
      ...at,
      code: 'unknown-output',
      message: `stage '${t.stage}' (kind ${kind.kind}) has no output '${t.output}'`,
      hint: `${guess ? `did you mean '${guess}'? ` : ''}its outputs are: ${nameList(names) || 'none'}`,
    });
    return;
  }
  if (!upstreamOf(ctx.graph, stageId).has(t.stage)) {
    report(ctx, seg, {
      ...at,
      code: 'not-upstream',
      message: `stage '${t.stage}' is not upstream of '${stageId}', so its outputs may not exist yet when '${stageId}' runs`,
      hint: `add '${t.stage}' to needs of stage '${stageId}'`,
    });
  }
}
