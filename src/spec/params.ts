/**
 * Pipeline parameters: checking declared defaults, parsing `--param k=v` overrides by the
 * declared type, and resolving the final value of every parameter.
 */
import { locate, type ParsedSource } from './parse.ts';
import { toHumanPath, toPointer } from './paths.ts';
import { closest, nameList } from './suggest.ts';
import type { ParamSpec, ParamType, ParamValue, SpecError } from './types.ts';

/** File name used for problems in command-line arguments rather than in the pipeline file. */
export const COMMAND_LINE = '<command line>';

const TYPE_WORD: Record<ParamType, string> = {
  string: 'a string',
  number: 'a number',
  integer: 'an integer',
  boolean: 'a boolean (true or false)',
};

export function fitsType(type: ParamType, v: unknown): v is ParamValue {
  switch (type) {
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'integer':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
  }
}

function showValue(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : JSON.stringify(v);
}

/** Problems with a value for a parameter (type, enum, embedded references), or undefined when it is fine. */
export function paramValueProblem(p: ParamSpec, v: unknown): string | undefined {
  if (!fitsType(p.type, v)) return `must be ${TYPE_WORD[p.type]}, got ${showValue(v)}`;
  if (p.enum && !p.enum.some((e) => e === v)) return `must be one of: ${p.enum.map((e) => String(e)).join(', ')}; got ${showValue(v)}`;
  // A value is substituted into stage config at plan time; letting it carry a reference would smuggle in an unchecked one.
  if (typeof v === 'string' && v.includes('${{')) return `must not contain '\${{', got ${showValue(v)}`;
  return undefined;
}

/** Parses command-line text as a value of the parameter's type. */
export function parseParamText(type: ParamType, text: string): { ok: true; value: ParamValue } | { ok: false; message: string } {
  switch (type) {
    case 'string':
      return { ok: true, value: text };
    case 'number': {
      // Number() would also take hex, binary and '' (as 0); a parameter should read as a decimal.
      const n = /^\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*$/.test(text) ? Number(text) : NaN;
      return Number.isFinite(n) ? { ok: true, value: n } : { ok: false, message: `must be a number, got '${text}'` };
    }
    case 'integer': {
      const n = /^\s*[-+]?\d+\s*$/.test(text) ? Number(text) : NaN;
      return Number.isSafeInteger(n) ? { ok: true, value: n } : { ok: false, message: `must be an integer, got '${text}'` };
    }
    case 'boolean':
      if (text === 'true') return { ok: true, value: true };
      if (text === 'false') return { ok: true, value: false };
      return { ok: false, message: `must be true or false, got '${text}'` };
  }
}

function isParamSpec(v: unknown): v is ParamSpec {
  return v !== null && typeof v === 'object' && ['string', 'number', 'integer', 'boolean'].includes((v as ParamSpec).type);
}

/** Well-formed parameter declarations of a (possibly invalid) document. */
export function declaredParams(data: unknown): Map<string, ParamSpec> {
  const out = new Map<string, ParamSpec>();
  const params = (data as { params?: unknown } | null)?.params;
  if (params && typeof params === 'object' && !Array.isArray(params))
    for (const [k, v] of Object.entries(params)) if (isParamSpec(v)) out.set(k, v);
  return out;
}

/** Declared defaults and enum values must themselves be valid values of the declared type. */
export function checkParamDeclarations(params: Map<string, ParamSpec>, parsed: ParsedSource): SpecError[] {
  const errors: SpecError[] = [];
  for (const [name, p] of params) {
    if (Array.isArray(p.enum)) {
      p.enum.forEach((v, i) => {
        if (!fitsType(p.type, v)) {
          const seg = ['params', name, 'enum', i];
          errors.push({
            file: parsed.file,
            ...locate(parsed, toPointer(seg)),
            path: toHumanPath(seg),
            code: 'bad-param-default',
            message: `enum value ${showValue(v)} is not ${TYPE_WORD[p.type]}`,
            hint: `the parameter is declared as type ${p.type}`,
          });
        }
      });
    }
    if (p.default !== undefined) {
      const problem = paramValueProblem(p, p.default);
      if (problem) {
        const seg = ['params', name, 'default'];
        errors.push({
          file: parsed.file,
          ...locate(parsed, toPointer(seg)),
          path: toHumanPath(seg),
          code: 'bad-param-default',
          message: `default ${problem}`,
          hint: `the parameter is declared as type ${p.type}${p.enum ? ' with an enum' : ''}; change the default or the type`,
        });
      }
    }
  }
  return errors;
}

/** Splits `--param k=v` arguments; `v` may itself contain '='. */
export function parseParamOverrides(args: readonly string[]): { overrides: Record<string, string>; errors: SpecError[] } {
  const overrides: Record<string, string> = {};
  const errors: SpecError[] = [];
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_-]*$/.test(name)) {
      errors.push({
        file: COMMAND_LINE,
        line: 0,
        column: 0,
        path: '--param',
        code: 'bad-param-override',
        message: `'${arg}' is not of the form name=value`,
        hint: 'write --param name=value, e.g. --param lr=0.001',
      });
      continue;
    }
    if (Object.prototype.hasOwnProperty.call(overrides, name)) {
      errors.push({
        file: COMMAND_LINE,
        line: 0,
        column: 0,
        path: `params.${name}`,
        code: 'bad-param-override',
        message: `parameter '${name}' is given more than once`,
        hint: 'pass each --param once; to run once per value (a sweep), submit with --sweep',
      });
      continue;
    }
    overrides[name] = arg.slice(eq + 1);
  }
  return { overrides, errors };
}

/**
 * The runs of `submit --sweep`: a parameter given more than once takes each of its values in turn, and every
 * combination is one run's `--param` arguments (the first parameter named varies slowest; a value repeated counts
 * once). Malformed arguments are passed on for parseParamOverrides to report.
 */
export function expandParamSweep(args: readonly string[]): string[][] {
  const byName = new Map<string, Set<string>>();
  for (const arg of args) {
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    byName.set(name, (byName.get(name) ?? new Set()).add(arg));
  }
  let runs: string[][] = [[]];
  for (const values of byName.values()) runs = runs.flatMap((run) => [...values].map((v) => [...run, v]));
  return runs;
}

/** Final value of every parameter: override, else default; a parameter with neither is an error. */
export function resolveParams(
  params: Map<string, ParamSpec>,
  overrides: Record<string, string>,
  parsed: ParsedSource,
): { values: Record<string, ParamValue>; errors: SpecError[] } {
  const values: Record<string, ParamValue> = {};
  const errors: SpecError[] = [];
  for (const name of Object.keys(overrides)) {
    if (params.has(name)) continue;
    const guess = closest(name, params.keys());
    const known = [...params.keys()];
    errors.push({
      file: COMMAND_LINE,
      line: 0,
      column: 0,
      path: `params.${name}`,
      code: 'unknown-param',
      message: `unknown parameter '${name}' in --param`,
      // A setting the file writes as a literal (the demo's lr, its LoRA r) cannot be overridden: say how to make it one.
      hint: guess
        ? `did you mean '${guess}'? parameters are: ${nameList(known)}`
        : `${known.length ? `parameters are: ${nameList(known)}` : `${parsed.file} declares no parameters`}; --param sets only declared ones: to vary a stage setting, declare it under params: in ${parsed.file} (e.g. ${name}: { type: number, default: 0.001 }) and write \${{ params.${name} }} in its place`,
    });
  }
  for (const [name, p] of params) {
    const seg = ['params', name];
    if (Object.prototype.hasOwnProperty.call(overrides, name)) {
      const text = overrides[name]!;
      const parsedValue = parseParamText(p.type, text);
      const problem = parsedValue.ok ? paramValueProblem(p, parsedValue.value) : parsedValue.message;
      if (problem || !parsedValue.ok) {
        errors.push({
          file: COMMAND_LINE,
          line: 0,
          column: 0,
          path: toHumanPath(seg),
          code: 'bad-param-override',
          message: `--param ${name} ${problem}`,
          hint: `${name} is declared as type ${p.type}${p.enum ? ` with values ${p.enum.join(', ')}` : ''} in ${parsed.file}`,
        });
        continue;
      }
      values[name] = parsedValue.value;
    } else if (p.default !== undefined) {
      if (!paramValueProblem(p, p.default)) values[name] = p.default;
    } else {
      errors.push({
        file: parsed.file,
        ...locate(parsed, toPointer(seg), 'key'),
        path: toHumanPath(seg),
        code: 'missing-param',
        message: `parameter '${name}' has no default and was not given`,
        hint: `pass --param ${name}=<${p.type}> or add a default`,
      });
    }
  }
  return { values, errors };
}
