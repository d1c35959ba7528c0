/**
 * `${{ ... }}` references in stage config, and resolving stage-output references at run time.
 *
 * This file runs inside the Temporal workflow sandbox, so it imports nothing at all: no node:*,
 * no packages, no other local files. Keep it that way.
 */

export type RefTarget = { kind: 'param'; name: string } | { kind: 'stage'; stage: string; output: string };

export interface FoundRef {
  /** The reference as written, e.g. `${{ params.lr }}`. */
  raw: string;
  /** Offset of `raw` in the string. */
  index: number;
  /** Undefined when the expression inside the braces is not a reference we understand. */
  target?: RefTarget;
}

export interface StageRef {
  stage: string;
  output: string;
  /** Where the string holding the reference sits inside the config. */
  path: Array<string | number>;
  /** The whole string is this one reference, so it resolves to the raw output value. */
  whole: boolean;
}

const NAME = '[A-Za-z_][A-Za-z0-9_-]*';
const PARAM_EXPR = new RegExp(`^params\\.(${NAME})$`);
const STAGE_EXPR = new RegExp(`^stages\\.(${NAME})\\.outputs\\.(${NAME})$`);

/** Parses the text between `${{` and `}}`. */
export function parseRefExpression(expr: string): RefTarget | undefined {
  const e = expr.trim();
  let m = PARAM_EXPR.exec(e);
  if (m) return { kind: 'param', name: m[1]! };
  m = STAGE_EXPR.exec(e);
  if (m) return { kind: 'stage', stage: m[1]!, output: m[2]! };
  return undefined;
}

/** Every `${{ … }}` in `text`, in order. An opening `${{` without a closing `}}` is reported with no target. */
export function findRefs(text: string): FoundRef[] {
  const out: FoundRef[] = [];
  let from = 0;
  for (;;) {
    const open = text.indexOf('${{', from);
    if (open < 0) return out;
    const close = text.indexOf('}}', open + 3);
    if (close < 0) {
      out.push({ raw: text.slice(open), index: open });
      return out;
    }
    const raw = text.slice(open, close + 2);
    const target = parseRefExpression(text.slice(open + 3, close));
    out.push(target ? { raw, index: open, target } : { raw, index: open });
    from = close + 2;
  }
}

/** Where a parameter's value went when `${{ params.x }}` in a string was filled in. */
export interface FilledParam {
  param: string;
  /** The value's offset and length in the filled string. */
  at: number;
  length: number;
  /** The reference's offset and length in the string as written. */
  rawAt: number;
  rawLength: number;
}

/**
 * `text` with each parameter reference among `refs` replaced by its value as a string, and where each
 * went, so a position in the result can be told in the text as written (writtenOffset).
 */
export function fillParamRefs(
  text: string,
  refs: readonly FoundRef[],
  valueOf: (name: string) => unknown,
): { text: string; filled: FilledParam[] } {
  let out = '';
  let last = 0;
  const filled: FilledParam[] = [];
  for (const r of refs) {
    if (r.target?.kind !== 'param') continue;
    out += text.slice(last, r.index);
    const value = String(valueOf(r.target.name));
    filled.push({ param: r.target.name, at: out.length, length: value.length, rawAt: r.index, rawLength: r.raw.length });
    out += value;
    last = r.index + r.raw.length;
  }
  return { text: out + text.slice(last), filled };
}

/**
 * The offset in the text as written of character `offset` of the filled text, and the parameter whose
 * value holds it, if one does (the offset is then that reference's).
 */
export function writtenOffset(filled: readonly FilledParam[], offset: number): { offset: number; param?: string } {
  let shift = 0;
  for (const f of filled) {
    if (offset < f.at) break;
    if (offset < f.at + f.length) return { offset: f.rawAt, param: f.param };
    shift = f.rawAt + f.rawLength - (f.at + f.length);
  }
  return { offset: offset + shift };
}

/** True when `text` is exactly one reference and nothing else. */
export function isWholeRef(text: string, refs: readonly FoundRef[] = findRefs(text)): boolean {
  return refs.length === 1 && refs[0]!.index === 0 && refs[0]!.raw.length === text.length && refs[0]!.target !== undefined;
}

/** True when `value` holds a `${{ … }}` anywhere, so it is known only at run time. */
export function hasRefs(value: unknown): boolean {
  if (typeof value === 'string') return value.includes('${{');
  if (Array.isArray(value)) return value.some(hasRefs);
  if (value !== null && typeof value === 'object') return Object.values(value).some(hasRefs);
  return false;
}

/** Calls `visit` for every string inside `value` (object keys are not visited). */
export function forEachString(
  value: unknown,
  visit: (text: string, path: Array<string | number>) => void,
  path: Array<string | number> = [],
): void {
  if (typeof value === 'string') visit(value, path);
  else if (Array.isArray(value)) value.forEach((v, i) => forEachString(v, visit, [...path, i]));
  else if (value !== null && typeof value === 'object') for (const [k, v] of Object.entries(value)) forEachString(v, visit, [...path, k]);
}

/** Stage-output references left in a planned stage's config, in document order. */
export function listStageRefs(withConfig: unknown): StageRef[] {
  const out: StageRef[] = [];
  forEachString(withConfig, (text, path) => {
    const refs = findRefs(text);
    const whole = isWholeRef(text, refs);
    for (const r of refs) if (r.target?.kind === 'stage') out.push({ stage: r.target.stage, output: r.target.output, path, whole });
  });
  return out;
}

/** A stage-output reference that cannot be resolved: the upstream stage did not produce that output. */
export class StageRefError extends Error {
  override name = 'StageRefError';
}

/**
 * Replaces `${{ stages.<id>.outputs.<name> }}` with the upstream stage's output. A string that is
 * exactly one reference becomes the raw value (e.g. an ArtifactRef object); a reference embedded
 * in longer text is stringified (objects as JSON). Returns a new value; the input is not changed.
 */
export function resolveStageRefs(
  withConfig: unknown,
  outputsByStage: Record<string, Record<string, unknown>>,
  path: Array<string | number> = [],
): unknown {
  if (typeof withConfig === 'string') return resolveString(withConfig, outputsByStage, path);
  if (Array.isArray(withConfig)) return withConfig.map((v, i) => resolveStageRefs(v, outputsByStage, [...path, i]));
  if (withConfig !== null && typeof withConfig === 'object') {
    const out: Record<string, unknown> = {};
    // defineProperty, not assignment: a key named __proto__ in the file must stay a key (this module
    // imports nothing, so it cannot share src/util/own-key.ts).
    for (const [k, v] of Object.entries(withConfig)) {
      Object.defineProperty(out, k, {
        value: resolveStageRefs(v, outputsByStage, [...path, k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return withConfig;
}

function resolveString(text: string, outputsByStage: Record<string, Record<string, unknown>>, path: Array<string | number>): unknown {
  const refs = findRefs(text).filter((r) => r.target?.kind === 'stage');
  if (!refs.length) return text;
  const value = (r: FoundRef): unknown => {
    const t = r.target as { stage: string; output: string };
    const outputs = Object.prototype.hasOwnProperty.call(outputsByStage, t.stage) ? outputsByStage[t.stage] : undefined;
    if (!outputs || !Object.prototype.hasOwnProperty.call(outputs, t.output)) {
      const where = path.length ? ` (in with.${path.join('.')})` : '';
      throw new StageRefError(
        `${r.raw}${where}: stage '${t.stage}' ${outputs ? `has no output '${t.output}'; it produced: ${Object.keys(outputs).join(', ') || 'nothing'}` : 'has not produced outputs'}`,
      );
    }
    return outputs[t.output];
  };
  if (isWholeRef(text) && refs.length === 1) return value(refs[0]!);
  let out = '';
  let last = 0;
  for (const r of refs) {
    out += text.slice(last, r.index) + embed(value(r));
    last = r.index + r.raw.length;
  }
  return out + text.slice(last);
}

function embed(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v !== null && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
