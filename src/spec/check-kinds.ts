/**
 * Runs each stage kind's own rules (StageKindInfo.check) on stages whose `with` passed its schema,
 * with parameters substituted and a way to look at the upstream stage an output reference names.
 */
import { type CheckContext, report } from './context.ts';
import { ancestors } from './graph.ts';
import { locate, type Pos } from './parse.ts';
import { toPointer, type Segment } from './paths.ts';
import { fillParamRefs, findRefs, forEachString, isWholeRef, writtenOffset } from './runtime-refs.ts';
import type { KindCheckContext, StageKindInfo, UpstreamOutput } from './types.ts';
import { isObject } from './check-stages.ts';
import { substituteParams } from './plan.ts';

const MAX_UPSTREAM_DEPTH = 32;

export function checkKindRules(ctx: CheckContext, validWith: ReadonlySet<string>, baseDir: string | undefined): void {
  const configs = new Map<string, Record<string, unknown>>();
  const configOf = (id: string) => {
    let c = configs.get(id);
    // `with` as the stage will see it: parameters with a value filled in, stage outputs left as references.
    if (!c)
      configs.set(
        id,
        (c = substituteParams(ctx.stages.get(id)!.with ?? {}, ctx.paramValues, { unknown: 'keep' }) as Record<string, unknown>),
      );
    return c;
  };
  const kindOf = (id: string) => {
    const uses = ctx.stages.get(id)?.uses;
    return typeof uses === 'string' ? ctx.kinds.get(uses) : undefined;
  };
  const contextFor = (stageId: string, depth: number): KindCheckContext => ({
    stageId,
    baseDir,
    upstream(value): UpstreamOutput | undefined {
      if (typeof value !== 'string' || depth > MAX_UPSTREAM_DEPTH) return undefined;
      const refs = findRefs(value);
      const t = isWholeRef(value, refs) ? refs[0]!.target : undefined;
      if (t?.kind !== 'stage' || !validWith.has(t.stage) || !ancestors(ctx.graph, stageId).has(t.stage)) return undefined;
      const kind = kindOf(t.stage);
      if (!kind || !Object.prototype.hasOwnProperty.call(kind.outputs, t.output)) return undefined;
      return { stage: t.stage, output: t.output, kind, config: configOf(t.stage), context: contextFor(t.stage, depth + 1) };
    },
  });
  // A reference to an output the upstream stage's config leaves out fails at run time. Asked once per upstream stage:
  // a stage referenced 10,000 times cost 10,000 calls, each copying a plugin kind's config to fill its defaults.
  const absentOf = new Map<string, ReturnType<NonNullable<StageKindInfo['absentOutputs']>>>();
  const absentOutputs = (stage: string) => {
    if (!absentOf.has(stage)) absentOf.set(stage, kindOf(stage)?.absentOutputs?.(configOf(stage), contextFor(stage, 1)));
    return absentOf.get(stage);
  };
  for (const [id, stage] of ctx.stages) {
    if (!isObject(stage.with)) continue;
    forEachString(stage.with, (text, path) => {
      const seen = new Map<string, number>();
      for (const r of findRefs(text)) {
        const occurrence = seen.get(r.raw) ?? 0;
        seen.set(r.raw, occurrence + 1);
        const t = r.target;
        if (t?.kind !== 'stage' || !validWith.has(t.stage) || !ancestors(ctx.graph, id).has(t.stage)) continue;
        const absent = absentOutputs(t.stage);
        if (absent?.names.includes(t.output)) {
          report(ctx, ['stages', id, 'with', ...path], {
            code: 'unknown-output',
            message: `stage '${t.stage}' does not produce '${t.output}' here: ${absent.because}`,
            text: r.raw,
            occurrence,
          });
        }
      }
    });
  }
  for (const id of ctx.stages.keys()) {
    const kind = kindOf(id);
    if (!kind?.check || !validWith.has(id)) continue;
    for (const issue of kind.check(configOf(id), contextFor(id, 0))) {
      const seg: Segment[] = ['stages', issue.stage ?? id, 'with', ...issue.path];
      const before = ctx.errors.length;
      report(ctx, seg, { code: 'bad-config', message: issue.message, hint: issue.hint });
      if (issue.offset !== undefined) {
        const at = locateInString(ctx, seg, issue.offset);
        Object.assign(ctx.errors[before]!, { line: at.line, column: at.column });
        if (at.note) ctx.errors[before]!.message += ` (${at.note})`;
      }
    }
  }
}

/**
 * Position of character `offset` of the string at `seg` (as the check saw it, parameters filled in), when
 * the file holds the string verbatim (no escapes). Where parameters were filled in, the check's "character
 * N" counts in the filled text: `note` then says where that is in the text as written.
 */
function locateInString(ctx: CheckContext, seg: Segment[], offset: number): Pos & { note?: string } {
  const pointer = toPointer(seg);
  const loc = ctx.parsed.locations.get(pointer);
  let node: unknown = ctx.parsed.data;
  for (const s of seg) node = isObject(node) || Array.isArray(node) ? (node as Record<string, unknown>)[s as string] : undefined;
  if (typeof node !== 'string') return locate(ctx.parsed, pointer);
  let note: string | undefined;
  let at = offset;
  const refs = findRefs(node);
  if (refs.length > 0) {
    const params = ctx.paramValues;
    if (!refs.every((r) => r.target?.kind === 'param' && Object.prototype.hasOwnProperty.call(params, r.target.name)))
      return locate(ctx.parsed, pointer);
    const written = writtenOffset(fillParamRefs(node, refs, (name) => params[name]).filled, offset);
    at = written.offset;
    note = written.param
      ? `inside the value of params.${written.param}, filled in at character ${at + 1} of the template as written`
      : `character ${at + 1} of the template as written, before parameters are filled in`;
  }
  if (loc) {
    const idx = ctx.parsed.text.slice(loc.start, loc.end).indexOf(node);
    if (idx >= 0 && !node.slice(0, at).includes('\n')) {
      const p = ctx.parsed.lineCounter.linePos(loc.start + idx + at);
      return { line: p.line, column: p.col, ...(note ? { note } : {}) };
    }
  }
  return { ...locate(ctx.parsed, pointer), ...(note ? { note } : {}) };
}
