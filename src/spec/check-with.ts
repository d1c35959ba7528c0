/**
 * Validates each stage's `with` against its kind's JSON Schema. References are first replaced by
 * stand-ins: a parameter's actual value when it has one, otherwise a value of the reference's type
 * (a table output stands in as an ArtifactRef-shaped object). Errors on a stand-in are reported
 * only when its type cannot fit, as type mismatches; the value itself is unknown until run time.
 */
import type { ErrorObject } from 'ajv';
import { isObject } from './check-stages.ts';
import { type CheckContext, report } from './context.ts';
import { toPointer, type Segment } from './paths.ts';
import { findRefs, forEachString, isWholeRef } from './runtime-refs.ts';
import { withValidator } from './schema.ts';
import { describeExpected, humanizeAjvErrors } from './schema-errors.ts';
import type { StageOutputInfo } from './types.ts';

type StandInKind =
  /** A real value: every schema error applies. */
  | { kind: 'value'; raw: string; note: string }
  /** A value of the right type only: only type errors apply. */
  | { kind: 'typed'; raw: string; note: string }
  /** Nothing is known (e.g. a json output or a broken reference): no error applies. */
  | { kind: 'any' };
type StandIn = StandInKind & { path: Segment[] };

const ARTIFACT_STAND_IN = { uri: 'artifact://sha256/0', sha256: '0'.repeat(64), bytes: 0, mediaType: 'application/octet-stream' };

function outputStandIn(type: StageOutputInfo['type']): unknown {
  switch (type) {
    case 'table':
    case 'artifact':
      return { ...ARTIFACT_STAND_IN };
    case 'string':
      return 'x';
    case 'number':
      return 0;
    case 'boolean':
      return false;
    case 'json':
      return undefined;
  }
}

const PARAM_STAND_IN = { string: 'x', number: 0, integer: 0, boolean: false } as const;

/** Returns the stages whose `with` fits its kind's schema. */
export function checkWith(ctx: CheckContext): Set<string> {
  const valid = new Set<string>();
  for (const [id, stage] of ctx.stages) {
    const kind = typeof stage.uses === 'string' ? ctx.kinds.get(stage.uses) : undefined;
    if (!kind) continue;
    if (stage.with !== undefined && !isObject(stage.with)) continue;
    const original = (stage.with ?? {}) as Record<string, unknown>;
    const value = structuredClone(original);
    const standIns: StandIn[] = [];
    forEachString(original, (text, path) => {
      const s = standInFor(ctx, id, text);
      if (!s) return;
      setAt(value, path, s.value);
      standIns.push({ ...s.standIn, path });
    });
    const validate = withValidator(kind.kind, kind.withSchema);
    if (validate(value)) {
      valid.add(id);
      continue;
    }
    // Errors a stand-in causes only because its value is unknown do not count against the config.
    const reportedBefore = ctx.errors.length;
    const base = ['stages', id, 'with'];
    const plain: ErrorObject[] = [];
    const byStandIn = new Map<StandIn, ErrorObject[]>();
    for (const e of validate.errors ?? []) {
      const s = standIns.find((x) => e.instancePath === toPointer(x.path) || e.instancePath.startsWith(toPointer(x.path) + '/'));
      if (!s) plain.push(e);
      else byStandIn.set(s, [...(byStandIn.get(s) ?? []), e]);
    }
    const humanize = (errs: ErrorObject[]) =>
      humanizeAjvErrors(errs, { parsed: ctx.parsed, basePointer: toPointer(base), code: 'with-schema' });
    ctx.errors.push(...humanize(plain));
    for (const [s, errs] of byStandIn) {
      if (s.kind === 'any') continue;
      const here = errs.filter((e) => e.instancePath === toPointer(s.path));
      const alternatives = here.find((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
      const leaves = here.filter((e) => e !== alternatives && e.keyword !== 'anyOf' && e.keyword !== 'oneOf');
      if (leaves.length && leaves.every((e) => e.keyword === 'type')) {
        const expected = alternatives
          ? (alternatives.schema as Array<Record<string, unknown>>).map((b) => describeExpected(b)).join(' or ')
          : describeExpected(leaves[0]!.parentSchema as Record<string, unknown>);
        report(ctx, [...base, ...s.path], {
          code: 'type-mismatch',
          message: `must be ${expected}, but ${s.note}`,
          hint: 'use a parameter or output of the expected type',
          text: s.raw,
        });
      } else if (s.kind === 'value') {
        for (const e of humanize(errs)) ctx.errors.push({ ...e, hint: e.hint ? `${e.hint}; ${s.note}` : s.note });
      }
    }
    if (ctx.errors.length === reportedBefore) valid.add(id);
  }
  return valid;
}

function standInFor(ctx: CheckContext, stageId: string, text: string): { value: unknown; standIn: StandInKind } | undefined {
  const refs = findRefs(text);
  if (!refs.length) return undefined;
  if (isWholeRef(text, refs)) {
    const t = refs[0]!.target!;
    if (t.kind === 'param') {
      const p = ctx.params.get(t.name);
      if (!p) return { value: text, standIn: { kind: 'any' } };
      if (Object.prototype.hasOwnProperty.call(ctx.paramValues, t.name)) {
        const v = ctx.paramValues[t.name];
        return { value: v, standIn: { kind: 'value', raw: text, note: `${text} is ${p.type} parameter ${JSON.stringify(v)}` } };
      }
      return {
        value: PARAM_STAND_IN[p.type],
        standIn: { kind: 'typed', raw: text, note: `${text} is ${p.type === 'integer' ? 'an' : 'a'} ${p.type} parameter` },
      };
    }
    // A stage using its own output is already an error; its type adds nothing.
    if (t.stage === stageId) return { value: text, standIn: { kind: 'any' } };
    const uses = ctx.stages.get(t.stage)?.uses;
    const output = typeof uses === 'string' ? ctx.kinds.get(uses)?.outputs[t.output] : undefined;
    if (!output || output.type === 'json' || !Object.prototype.hasOwnProperty.call(ctx.kinds.get(uses as string)!.outputs, t.output))
      return { value: text, standIn: { kind: 'any' } };
    return {
      value: outputStandIn(output.type),
      standIn: { kind: 'typed', raw: text, note: `${text} is a${output.type === 'artifact' ? 'n' : ''} ${output.type} output` },
    };
  }
  const allParamsKnown = refs.every(
    (r) => r.target?.kind === 'param' && Object.prototype.hasOwnProperty.call(ctx.paramValues, r.target.name),
  );
  if (allParamsKnown) {
    let out = '';
    let last = 0;
    for (const r of refs) {
      out += text.slice(last, r.index) + String(ctx.paramValues[(r.target as { name: string }).name]);
      last = r.index + r.raw.length;
    }
    out += text.slice(last);
    return { value: out, standIn: { kind: 'value', raw: text, note: `'${text}' becomes '${out}' with the parameters substituted` } };
  }
  return { value: text, standIn: { kind: 'typed', raw: text, note: 'text with embedded references is always a string' } };
}

function setAt(root: Record<string, unknown>, path: Segment[], value: unknown): void {
  let node: any = root;
  for (const s of path.slice(0, -1)) node = node[s];
  node[path[path.length - 1]!] = value;
}
