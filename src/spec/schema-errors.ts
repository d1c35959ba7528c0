/**
 * Turns ajv's errors into SpecErrors a person can act on: one error per offending node, phrased
 * as "must be an integer ≥ 1, got 0", located at the node (or at the key, for unknown fields,
 * or at the parent, for missing ones).
 */
import type { ErrorObject } from 'ajv';
import { locate, type ParsedSource } from './parse.ts';
import { humanPathOfPointer, toPointer } from './paths.ts';
import { closest } from './suggest.ts';
import type { SpecError, SpecErrorCode } from './types.ts';

/** What a `$defs` entry of the pipeline schema means, for messages about its pattern. */
const DEF_WORDING: Record<string, { expected: string; code?: SpecErrorCode; hint?: string }> = {
  duration: {
    expected: 'a duration such as 30s, 10m, 2h or 1h30m',
    code: 'bad-duration',
    hint: 'units: d, h, m, s, ms, largest first, e.g. 1h30m',
  },
  slug: { expected: "a name of lowercase letters, digits and '-', starting with a letter", hint: 'e.g. my-pipeline' },
  // At most 64: a stage's id is part of its checkpoint folder's name, with the work's key and a run's own name.
  stageId: { expected: "a stage id of at most 64 lowercase letters, digits, '_' and '-', starting with a letter" },
  paramName: { expected: "a parameter name of letters, digits, '_' and '-', starting with a letter or '_'" },
};

export interface HumanizeOptions {
  parsed: ParsedSource;
  /** Pointer of the validated value inside the document ('' for the whole file). */
  basePointer: string;
  code: SpecErrorCode;
}

export function humanizeAjvErrors(errors: readonly ErrorObject[], opts: HumanizeOptions): SpecError[] {
  const out: SpecError[] = [];
  const seen = new Set<string>();
  const push = (e: SpecError) => {
    const key = `${e.path}\u0000${e.message}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(e);
    }
  };
  const remaining = resolveAlternatives(errors, opts, push);
  // Property-name errors come twice: the inner keyword (flagged with propertyName) and the wrapper.
  const byPath = new Map<string, ErrorObject[]>();
  for (const e of remaining) {
    if ((e as ErrorObject & { propertyName?: string }).propertyName !== undefined) continue;
    const list = byPath.get(e.instancePath) ?? [];
    list.push(e);
    byPath.set(e.instancePath, list);
  }
  for (const [instancePath, list] of byPath) {
    const valueErrors: ErrorObject[] = [];
    for (const e of list) {
      switch (e.keyword) {
        case 'required':
          push(missingField(e, instancePath, opts));
          break;
        case 'additionalProperties':
        case 'unevaluatedProperties':
          push(unknownField(e, instancePath, opts));
          break;
        case 'propertyNames':
          push(badPropertyName(e, instancePath, opts));
          break;
        default:
          valueErrors.push(e);
      }
    }
    if (valueErrors.length) push(valueError(valueErrors, instancePath, opts));
  }
  return out;
}

/** anyOf/oneOf: report the branch the value was evidently aiming at, or else what was expected. */
function resolveAlternatives(errors: readonly ErrorObject[], opts: HumanizeOptions, push: (e: SpecError) => void): ErrorObject[] {
  const alternatives = errors.filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf');
  if (!alternatives.length) return [...errors];
  const consumed = new Set<ErrorObject>();
  for (const alt of alternatives) {
    const prefix = alt.schemaPath + '/';
    const subs = errors.filter((e) => e !== alt && e.schemaPath.startsWith(prefix));
    subs.forEach((e) => consumed.add(e));
    consumed.add(alt);
    if (alt.keyword === 'oneOf' && (alt.params as { passingSchemas?: unknown }).passingSchemas) {
      push(valueErrorMessage(alt, alt.instancePath, opts, 'must match exactly one of the allowed forms, but matches several'));
      continue;
    }
    const branches = new Map<string, ErrorObject[]>();
    for (const e of subs) {
      const branch = e.schemaPath.slice(prefix.length).split('/')[0]!;
      branches.set(branch, [...(branches.get(branch) ?? []), e]);
    }
    const typeFits = [...branches.values()].filter((b) => !b.some((e) => e.keyword === 'type' && e.instancePath === alt.instancePath));
    if (typeFits.length) {
      typeFits.sort((a, b) => a.length - b.length);
      for (const e of humanizeAjvErrors(typeFits[0]!, opts)) push(e);
    } else {
      const branchSchemas = (alt.schema as unknown[]) ?? [];
      const expected = branchSchemas
        .map((s) => describeExpected(s as Record<string, unknown>))
        .filter(Boolean)
        .join(' or ');
      push(valueErrorMessage(alt, alt.instancePath, opts, `must be ${expected || 'one of the allowed forms'}, got ${show(alt.data)}`));
    }
  }
  return errors.filter((e) => !consumed.has(e));
}

function fullPointer(opts: HumanizeOptions, instancePath: string): string {
  return opts.basePointer + instancePath;
}

function missingField(e: ErrorObject, instancePath: string, opts: HumanizeOptions): SpecError {
  const ptr = fullPointer(opts, instancePath);
  const field = (e.params as { missingProperty: string }).missingProperty;
  const at = locate(opts.parsed, ptr, 'key');
  const described = (e.parentSchema as { properties?: Record<string, { description?: string }> })?.properties?.[field]?.description;
  return {
    file: opts.parsed.file,
    ...lc(at),
    path: humanPathOfPointer(ptr, opts.parsed.data),
    code: opts.code === 'schema' ? 'missing-field' : opts.code,
    message: `missing required field '${field}'`,
    hint: described ? `add '${field}': ${lowerFirst(described)}` : `add '${field}'`,
  };
}

function unknownField(e: ErrorObject, instancePath: string, opts: HumanizeOptions): SpecError {
  const field =
    (e.params as { additionalProperty?: string; unevaluatedProperty?: string }).additionalProperty ??
    (e.params as { unevaluatedProperty: string }).unevaluatedProperty;
  const ptr = fullPointer(opts, instancePath) + toPointer([field]);
  const allowed = Object.keys((e.parentSchema as { properties?: Record<string, unknown> })?.properties ?? {}).filter(
    (k) => k !== '$schema',
  );
  const guess = closest(field, allowed);
  const hint = allowed.length
    ? guess
      ? `did you mean '${guess}'? allowed fields: ${allowed.join(', ')}`
      : `allowed fields: ${allowed.join(', ')}`
    : 'remove it';
  return {
    file: opts.parsed.file,
    ...lc(locate(opts.parsed, ptr, 'key')),
    path: humanPathOfPointer(ptr, opts.parsed.data),
    code: opts.code === 'schema' ? 'unknown-field' : opts.code,
    message: `unknown field '${field}'`,
    hint,
  };
}

function badPropertyName(e: ErrorObject, instancePath: string, opts: HumanizeOptions): SpecError {
  const name = (e.params as { propertyName: string }).propertyName;
  const ptr = fullPointer(opts, instancePath) + toPointer([name]);
  const ref = ((e.parentSchema as { propertyNames?: { $ref?: string } })?.propertyNames?.$ref ?? '').replace('#/$defs/', '');
  const wording = DEF_WORDING[ref];
  return {
    file: opts.parsed.file,
    ...lc(locate(opts.parsed, ptr, 'key')),
    path: humanPathOfPointer(ptr, opts.parsed.data),
    code: opts.code,
    message: `'${name}' is not ${wording?.expected ?? 'an allowed name'}`,
    hint: 'rename it',
  };
}

function valueError(list: ErrorObject[], instancePath: string, opts: HumanizeOptions): SpecError {
  const first = list[0]!;
  const keywords = new Set(list.map((e) => e.keyword));
  const boundKeywords = [
    'type',
    'minimum',
    'maximum',
    'exclusiveMinimum',
    'exclusiveMaximum',
    'pattern',
    'enum',
    'const',
    'multipleOf',
    'format',
  ];
  const defName = /#\/\$defs\/([^/]+)\//.exec(first.schemaPath)?.[1];
  const wording = defName ? DEF_WORDING[defName] : undefined;
  let message: string;
  let hint: string | undefined = wording?.hint;
  if ([...keywords].some((k) => boundKeywords.includes(k))) {
    message = `must be ${describeExpected(first.parentSchema as Record<string, unknown>, defName)}, got ${show(first.data)}`;
    // `table: stages.ingest.outputs.table` is a reference without its ${{ }}: plain text to YAML.
    const bare = typeof first.data === 'string' ? bareReference(first.data) : undefined;
    if (bare) {
      message += `, which looks like a ${bare.what} reference`;
      hint = `write \${{ ${bare.expr} }}`;
    } else if (keywords.has('type') && describeExpected(first.parentSchema as Record<string, unknown>) === 'an artifact reference')
      hint = "write ${{ stages.<id>.outputs.<name> }}: an upstream stage's output";
    else if (
      keywords.has('type') &&
      (first.parentSchema as { type?: unknown }).type === 'string' &&
      (typeof first.data === 'number' || typeof first.data === 'boolean')
    ) {
      // `labels: [0, 1]` and `labels: [true, false]`: YAML reads unquoted digits and true/false as numbers and booleans.
      // As written: `1.0` is the number 1 to YAML, and the label meant is "1.0".
      const loc = opts.parsed.locations.get(fullPointer(opts, first.instancePath));
      const written = loc && loc.end > loc.start ? opts.parsed.text.slice(loc.start, loc.end).trim() : '';
      hint = `quote it to give the text: ${JSON.stringify(/^[^\s"'#,[\]{}]+$/.test(written) ? written : String(first.data))}`;
    }
    if (keywords.has('enum') && typeof first.data === 'string') {
      const allowed = ((first.parentSchema as { enum?: unknown[] }).enum ?? []).filter((v): v is string => typeof v === 'string');
      const guess = closest(first.data, allowed);
      if (guess) hint = `did you mean '${guess}'?`;
    }
  } else {
    message = list.map(otherKeywordMessage).join('; ');
  }
  const code = wording?.code ?? opts.code;
  return valueErrorMessage(first, instancePath, opts, message, hint, code);
}

function valueErrorMessage(
  e: ErrorObject,
  instancePath: string,
  opts: HumanizeOptions,
  message: string,
  hint?: string,
  code: SpecErrorCode = opts.code,
): SpecError {
  const ptr = fullPointer(opts, instancePath);
  const err: SpecError = {
    file: opts.parsed.file,
    ...lc(locate(opts.parsed, ptr)),
    path: humanPathOfPointer(ptr, opts.parsed.data),
    code,
    message,
  };
  if (hint) err.hint = hint;
  return err;
}

function otherKeywordMessage(e: ErrorObject): string {
  const p = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'minLength':
      return p.limit === 1 ? 'must not be empty' : `must be at least ${p.limit} characters long`;
    case 'maxLength':
      return `must be at most ${p.limit} characters long`;
    case 'minItems':
      return `must have at least ${p.limit} item${p.limit === 1 ? '' : 's'}`;
    case 'maxItems':
      return `must have at most ${p.limit} item${p.limit === 1 ? '' : 's'}`;
    case 'uniqueItems':
      return `must not repeat items (items ${p.j} and ${p.i} are the same)`;
    case 'minProperties':
      return `must have at least ${p.limit} entr${p.limit === 1 ? 'y' : 'ies'}`;
    case 'maxProperties':
      return `must have at most ${p.limit} entries`;
    case 'dependentRequired':
      return `must also set '${p.missingProperty}' when '${p.property}' is set`;
    default:
      return e.message ?? `fails the '${e.keyword}' rule`;
  }
}

const TYPE_NOUN: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'a boolean (true or false)',
  object: 'a mapping',
  array: 'a list',
  null: 'null',
};

/** "an integer ≥ 1", "one of: fail-fast, finish-independent", "a duration such as 30s …". */
export function describeExpected(schema: Record<string, unknown> | undefined, defName?: string): string {
  if (!schema) return 'a valid value';
  if (Array.isArray(schema.enum))
    return schema.enum.length === 1
      ? show(schema.enum[0])
      : `one of: ${schema.enum.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ')}`;
  if ('const' in schema) return show(schema.const);
  const ref = typeof schema.$ref === 'string' ? schema.$ref.replace('#/$defs/', '') : undefined;
  const wording = DEF_WORDING[defName ?? ''] ?? DEF_WORDING[ref ?? ''];
  if (wording) return wording.expected;
  // An artifact reference is a mapping only under the hood: people write ${{ stages.<id>.outputs.<name> }}.
  if (schema.type === 'object' && isObjectSchema(schema.properties) && 'uri' in schema.properties) return 'an artifact reference';
  const types = schema.type === undefined ? [] : Array.isArray(schema.type) ? (schema.type as string[]) : [schema.type as string];
  let text = types.map((t) => TYPE_NOUN[t] ?? t).join(' or ') || 'a value';
  const bounds: string[] = [];
  if (typeof schema.minimum === 'number') bounds.push(`≥ ${schema.minimum}`);
  if (typeof schema.exclusiveMinimum === 'number') bounds.push(`> ${schema.exclusiveMinimum}`);
  if (typeof schema.maximum === 'number') bounds.push(`≤ ${schema.maximum}`);
  if (typeof schema.exclusiveMaximum === 'number') bounds.push(`< ${schema.exclusiveMaximum}`);
  if (typeof schema.multipleOf === 'number') bounds.push(`that is a multiple of ${schema.multipleOf}`);
  if (bounds.length) text += ' ' + bounds.join(' and ');
  if (typeof schema.pattern === 'string') text += ` matching /${schema.pattern}/`;
  if (typeof schema.format === 'string') text += ` in ${schema.format} format`;
  return text;
}

/** `stages.<id>.outputs.<name>` or `params.<name>` written without `${{ }}` (possibly with stray braces or spaces). */
function bareReference(text: string): { what: string; expr: string } | undefined {
  const expr = text
    .trim()
    .replace(/^\$?\{+\s*/, '')
    .replace(/\s*\}+$/, '');
  if (/^stages\.[A-Za-z_][A-Za-z0-9_-]*\.outputs\.[A-Za-z_][A-Za-z0-9_-]*$/.test(expr)) return { what: 'stage output', expr };
  if (/^params\.[A-Za-z_][A-Za-z0-9_-]*$/.test(expr)) return { what: 'parameter', expr };
  return undefined;
}

function isObjectSchema(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return `'${v}'`;
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function lc(p: { line: number; column: number }): { line: number; column: number } {
  return { line: p.line, column: p.column };
}

function lowerFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}
