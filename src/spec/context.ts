/** What the semantic checks share: the parsed file, the registry, parameters and the stage graph. */
import type { StageGraph } from './graph.ts';
import { locate, locateText, type ParsedSource, type Pos } from './parse.ts';
import { toHumanPath, toPointer, type Segment } from './paths.ts';
import type { ParamSpec, ParamValue, SpecError, SpecErrorCode, StageKindInfo } from './types.ts';

export interface CheckContext {
  parsed: ParsedSource;
  kinds: ReadonlyMap<string, StageKindInfo>;
  unavailable: ReadonlySet<string>;
  /** Well-formed parameter declarations. */
  params: Map<string, ParamSpec>;
  /** Every declared parameter name, including malformed declarations (already reported by the schema). */
  paramNames: Set<string>;
  /** Values of the parameters that have one (override or valid default). */
  paramValues: Record<string, ParamValue>;
  /** Stages whose value is a mapping, in declaration order. */
  stages: Map<string, Record<string, unknown>>;
  graph: StageGraph;
  errors: SpecError[];
}

export interface Report {
  code: SpecErrorCode;
  message: string;
  hint?: string;
  /** Point at the key instead of the value (unknown or missing fields, declarations). */
  at?: 'value' | 'key';
  /** Point at this text inside the string value (a reference), when it appears there verbatim. */
  text?: string;
  occurrence?: number;
}

export function report(ctx: CheckContext, segments: readonly Segment[], r: Report): void {
  const pointer = toPointer(segments);
  const pos: Pos =
    r.text !== undefined ? locateText(ctx.parsed, pointer, r.text, r.occurrence ?? 0) : locate(ctx.parsed, pointer, r.at ?? 'value');
  const err: SpecError = {
    file: ctx.parsed.file,
    line: pos.line,
    column: pos.column,
    path: toHumanPath(segments),
    code: r.code,
    message: r.message,
  };
  if (r.hint) err.hint = r.hint;
  ctx.errors.push(err);
}
