/**
 * Validates each stage's `with` against its kind's JSON Schema. References are first replaced by
 * stand-ins: a parameter's actual value when it has one, otherwise a value of the reference's type
 * (a table output stands in as an ArtifactRef-shaped object). Errors on a stand-in are reported
 * only when its type cannot fit, as type mismatches; the value itself is unknown until run time.
 */
import type { ErrorObject } from 'ajv';
import { isObject } from './check-stages.ts';
import { type CheckContext, report } from './context.ts';
import { ancestors } from './graph.ts';
import { toPointer, type Segment } from './paths.ts';
import { findRefs, forEachString, isWholeRef } from './runtime-refs.ts';
import { withValidator } from './schema.ts';
import { describeExpected, humanizeAjvErrors } from './schema-errors.ts';
import { closest } from './suggest.ts';
import { TAKES_KEYWORD, type StageOutputInfo } from './types.ts';

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
      if (!takesOutput(ctx, id, kind.withSchema, text, path)) {
        // Refused already, and the stand-in's schema errors would only say the same less clearly.
        standIns.push({ kind: 'any', path });
        return;
      }
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

const OUTPUT_NOUN: Record<StageOutputInfo['type'], string> = {
  table: 'a table',
  artifact: 'an artifact',
  json: 'a json document',
  string: 'a string',
  number: 'a number',
  boolean: 'a boolean',
};

/**
 * False (and reported) when `text` is a whole reference to a stage output whose type the schema node
 * at `path` does not take (TAKES_KEYWORD): e.g. split's json `folds` where a table is read, which
 * fits the artifact-reference schema and would fail only inside the stage.
 */
function takesOutput(ctx: CheckContext, stageId: string, schema: object, text: string, path: Segment[]): boolean {
  const refs = findRefs(text);
  if (!isWholeRef(text, refs)) return true;
  const t = refs[0]!.target!;
  if (t.kind !== 'stage' || t.stage === stageId) return true;
  const takes = (schemaAt(schema, path) as Record<string, unknown> | undefined)?.[TAKES_KEYWORD];
  if (!Array.isArray(takes)) return true;
  const uses = ctx.stages.get(t.stage)?.uses;
  const upstream = typeof uses === 'string' ? ctx.kinds.get(uses) : undefined;
  if (!upstream || !Object.prototype.hasOwnProperty.call(upstream.outputs, t.output)) return true;
  const output = upstream.outputs[t.output]!;
  if (takes.includes(output.type)) return true;
  const field = [...path].reverse().find((s): s is string => typeof s === 'string') ?? 'this field';
  const wanted = (takes as StageOutputInfo['type'][]).map((x) => OUTPUT_NOUN[x] ?? x).join(' or ');
  report(ctx, ['stages', stageId, 'with', ...path], {
    code: 'type-mismatch',
    message: `${field} takes ${wanted}, but ${text} is a${output.type === 'artifact' ? 'n' : ''} ${output.type} output${output.description ? ` (${output.description})` : ''}`,
    hint: likelyOutput(ctx, stageId, t.stage, field, takes) ?? `use ${wanted} output of a stage '${stageId}' needs`,
    text,
  });
  return false;
}

/**
 * The output most likely meant, as `e.g. ${{ … }}`: one of the right type of the same stage named like the
 * field (test → outputs.test), else one named like the field of another upstream stage (metrics →
 * evaluate's), else the same stage's outputs of that type.
 */
function likelyOutput(ctx: CheckContext, stageId: string, stage: string, field: string, takes: unknown[]): string | undefined {
  const fitting = (id: string) => {
    const uses = ctx.stages.get(id)?.uses;
    const kind = typeof uses === 'string' ? ctx.kinds.get(uses) : undefined;
    return Object.entries(kind?.outputs ?? {})
      .filter(([, o]) => takes.includes(o.type))
      .map(([name]) => name);
  };
  const ref = (id: string, output: string) => `\${{ stages.${id}.outputs.${output} }}`;
  const own = fitting(stage);
  const named = own.includes(field) ? field : closest(field, own);
  if (named) return `e.g. ${ref(stage, named)}`;
  for (const id of ctx.graph.ids)
    if (id !== stage && ancestors(ctx.graph, stageId).has(id) && fitting(id).includes(field)) return `e.g. ${ref(id, field)}`;
  return own.length ? `stage '${stage}' has these: ${own.map((o) => ref(stage, o)).join(', ')}` : undefined;
}

/** The schema node that validates the value at `path` (through properties, additionalProperties and items), if the schema says. */
function schemaAt(schema: unknown, path: readonly Segment[]): unknown {
  let node = schema as Record<string, unknown> | undefined;
  for (const s of path) {
    if (!node || typeof node !== 'object') return undefined;
    const props = node.properties as Record<string, unknown> | undefined;
    if (typeof s === 'string' && props && Object.prototype.hasOwnProperty.call(props, s)) node = props[s] as Record<string, unknown>;
    else if (typeof s === 'string' && node.additionalProperties && typeof node.additionalProperties === 'object')
      node = node.additionalProperties as Record<string, unknown>;
    else if (typeof s === 'number' && node.items && typeof node.items === 'object') node = node.items as Record<string, unknown>;
    else return undefined;
  }
  return node;
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
