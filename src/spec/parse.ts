/**
 * Parses a pipeline file (YAML, or strict JSON when its name ends in .json) into plain data plus a
 * map from every node's JSON pointer to where it sits in the file, so later checks can point at the
 * exact line and column. Syntax errors and duplicate keys come back as SpecErrors, never thrown.
 */
import { LineCounter, parseDocument, isAlias, isMap, isPair, isScalar, isSeq, visit, type Document, type Node, type YAMLError } from 'yaml';
import { isJsonFile, parseStrictJson } from './json-syntax.ts';
import { fromPointer, humanPathOfPointer, toHumanPath, toPointer, type Segment } from './paths.ts';
import type { SpecError } from './types.ts';

export interface Pos {
  line: number;
  column: number;
}

export interface NodeLocation {
  /** Where the value starts. */
  value: Pos;
  /** Where its key starts, when the value sits under a mapping key. */
  key?: Pos;
  /** Offsets of the value in the source, for finding text inside a scalar. */
  start: number;
  end: number;
}

export interface ParsedSource {
  file: string;
  text: string;
  data: unknown;
  locations: Map<string, NodeLocation>;
  lineCounter: LineCounter;
}

export type ParseResult = { ok: true; parsed: ParsedSource } | { ok: false; errors: SpecError[] };

export function parseSource(text: string, file: string): ParseResult {
  // A .json file is JSON (RFC 8259): JSON.parse decides whether it is valid and gives its value, as
  // any other JSON tool would (YAML also reads bare keys, single quotes, comments, trailing commas).
  // YAML 1.2 reads every JSON text as the same tree (syntax-errors.test.ts checks this on random
  // JSON of any layout), so the yaml package still supplies the positions of nodes, and the
  // duplicate keys JSON.parse silently merges.
  let json: { value: unknown } | undefined;
  if (isJsonFile(file) && !/^[ \t\n\r]*$/.test(text)) {
    const r = parseStrictJson(text, file);
    if (!r.ok) return { ok: false, errors: [r.error] };
    json = { value: r.value };
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true, keepSourceTokens: false });
  const locations = new Map<string, NodeLocation>();
  if (doc.contents) walk(doc.contents as Node, [], undefined, lineCounter, locations, 0);
  const duplicates = doc.errors.filter((e) => e.code === 'DUPLICATE_KEY');
  const syntax = doc.errors.filter((e) => e.code !== 'DUPLICATE_KEY');
  // (For valid JSON, yaml reports no syntax error; were it to, JSON.parse's verdict stands.)
  if (syntax.length > 0 && !json) {
    // Nothing found in a document with a syntax error can be trusted: the errors after the first
    // are mostly its echoes, and so are duplicate keys and any schema error (an unclosed { swallows
    // the keys after it, which then "repeat" the ones it was meant to sit beside).
    return { ok: false, errors: [yamlError(syntax[0]!, file, lineCounter, locations, text, doc)] };
  }
  // Before duplicates: `{~: x, Null: y}` is two null keys, which yaml calls duplicates; the null is the cause to name.
  const nulls = json ? [] : nullKeys(doc, file, lineCounter);
  const echoes = new Set(nulls.map((n) => n.offset));
  const rest = duplicates.filter((e) => !echoes.has(e.pos[0]));
  if (nulls.length > 0 || rest.length > 0) {
    return {
      ok: false,
      errors: [...nulls.map((n) => n.error), ...rest.map((e) => yamlError(e, file, lineCounter, locations, text, doc))].sort(
        (a, b) => a.line - b.line || a.column - b.column,
      ),
    };
  }
  if (!json) {
    const merges = mergeKeys(doc, file, lineCounter, locations);
    if (merges.length > 0) return { ok: false, errors: merges };
  }
  if (json ? json.value === null : doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) {
    return {
      ok: false,
      errors: [
        {
          file,
          line: 1,
          column: 1,
          path: '',
          code: 'empty-file',
          message: 'the pipeline file is empty',
          hint: 'start with `name: my-pipeline` and a `stages:` map',
        },
      ],
    };
  }
  let data: unknown;
  if (json) data = json.value;
  else
    try {
      data = doc.toJS({ maxAliasCount: 1000 });
    } catch (e) {
      return { ok: false, errors: [{ file, line: 1, column: 1, path: '', code: 'yaml-syntax', message: (e as Error).message }] };
    }
  if (!json) {
    const renamed = renamedKeys(doc, file, lineCounter, locations, data);
    if (renamed.length > 0) return { ok: false, errors: renamed };
  }
  const parsed: ParsedSource = { file, text, data, locations, lineCounter };
  const nonJson = nonJsonValues(parsed);
  return nonJson.length ? { ok: false, errors: nonJson } : { ok: true, parsed };
}

/**
 * `<<: *defaults` is a YAML 1.1 merge key; YAML 1.2, which tempered reads, has none, so it would be a
 * field named '<<' (an unknown field, and the fields it was meant to bring in missing). Said once, at
 * the key, and nothing after it: the other errors would all be its echoes.
 */
function mergeKeys(doc: Document, file: string, lc: LineCounter, locations: Map<string, NodeLocation>): SpecError[] {
  const errors: SpecError[] = [];
  visit(doc, {
    Pair(_, pair) {
      const k = pair.key;
      // A quoted '<<' is a key like any other.
      if (!isScalar(k) || k.value !== '<<' || k.type !== 'PLAIN' || !k.range) return;
      const at = lc.linePos(k.range[0]);
      let path = '';
      for (const [pointer, loc] of locations)
        if (loc.key && loc.key.line === at.line && loc.key.column === at.col) path = humanPath(pointer);
      errors.push({
        file,
        line: at.line,
        column: at.col,
        path,
        code: 'merge-key',
        message: 'YAML merge keys (<<) are not supported: write the fields out, or use params',
        hint: 'an alias still stands for a whole value (retry: &r { … } on one stage, retry: *r on another); defaults: gives every stage a retry, timeout and queue',
      });
    },
  });
  return errors;
}

/**
 * A plain key YAML reads as a number whose digits differ from what was written: `labelMap: {1.0: "1"}` is the key "1"
 * (and `01`, `1e2`, `0x1F` are "1", "100", "31"), so the map rewrote "1" to itself and every "1.0" row stayed as it
 * was, without a word. Likewise a boolean written otherwise: `True`, how pandas writes a bool column to CSV, is the key
 * "true". Said at the key, with the quoting that keeps the text.
 */
function renamedKeys(doc: Document, file: string, lc: LineCounter, locations: Map<string, NodeLocation>, data: unknown): SpecError[] {
  const errors: SpecError[] = [];
  visit(doc, {
    Pair(_, pair) {
      const k = pair.key;
      if (!isScalar(k) || k.type !== 'PLAIN' || !k.range || k.source === undefined) return;
      const v = k.value;
      if (typeof v !== 'number' && typeof v !== 'boolean') return;
      const key = String(v);
      if (key === k.source) return;
      const what = `the ${typeof v} ${key}`;
      const at = lc.linePos(k.range[0]);
      let path = '';
      for (const [pointer, loc] of locations)
        if (loc.key && loc.key.line === at.line && loc.key.column === at.col) path = humanPathOfPointer(pointer, data);
      errors.push({
        file,
        line: at.line,
        column: at.col,
        path,
        code: 'number-key',
        message: `key ${k.source} is ${what} to YAML, so the key is ${JSON.stringify(key)}, not ${JSON.stringify(k.source)}`,
        hint: `quote it to keep the text: ${JSON.stringify(k.source)}`,
      });
    },
  });
  return errors;
}

/**
 * A plain key YAML reads as null (`~`, `null`, `Null`, `NULL`, or none at all: `? : x`), which becomes the key "":
 * `labelMap: {~: unknown}` mapped the label "" (no row has one) and left every "~" row as it was, and a second null
 * key in the map overwrote the first. Said at the key, with the quoting that keeps the text; `offset` is the key's, for
 * the duplicate-key error yaml gives the second one, which this explains.
 */
function nullKeys(doc: Document, file: string, lc: LineCounter): { offset: number; error: SpecError }[] {
  const out: { offset: number; error: SpecError }[] = [];
  visit(doc, {
    Pair(_, pair, ancestors) {
      const k = pair.key;
      if (!isScalar(k) || k.type !== 'PLAIN' || k.value !== null || !k.range) return;
      // The path as the data has it: each enclosing pair's key as toJS writes it (null as ""), each list's index.
      const segments: Segment[] = [];
      ancestors.forEach((a, i) => {
        if (isPair(a)) segments.push(isScalar(a.key) ? (a.key.value === null ? '' : String(a.key.value)) : String(a.key));
        else if (isSeq(a)) segments.push(a.items.indexOf(ancestors[i + 1] as never));
      });
      const at = lc.linePos(k.range[0]);
      const source = k.source ?? '';
      out.push({
        offset: k.range[0],
        error: {
          file,
          line: at.line,
          column: at.col,
          path: toHumanPath([...segments, '']),
          code: 'null-key',
          message:
            source === ''
              ? 'a key left empty is null to YAML, so the key is "" (and a second such key in the mapping replaces it)'
              : `key ${source} is null to YAML, so the key is "", not ${JSON.stringify(source)} (and a second null key in the mapping replaces it)`,
          hint: source === '' ? 'write the key; quote it ("") for an empty one' : `quote it to keep the text: ${JSON.stringify(source)}`,
        },
      });
    },
  });
  return out;
}

/** Deepest nesting of lists and mappings a pipeline file may have. */
const MAX_NESTING = 100;

/**
 * Values YAML can express but JSON cannot (.inf, .nan, !!binary, !!set, …) would break hashing and
 * Temporal payloads, so they are rejected where they appear.
 */
function nonJsonValues(parsed: ParsedSource): SpecError[] {
  const errors: SpecError[] = [];
  const visit = (v: unknown, path: Segment[]): void => {
    let problem: string | undefined;
    // No pipeline nests this deep; every later walk of the document (schema, hashing) recurses too.
    if (path.length > MAX_NESTING && v !== null && typeof v === 'object') problem = `nested more than ${MAX_NESTING} levels deep`;
    else if (typeof v === 'number' && !Number.isFinite(v)) problem = `${v} is not allowed; use a finite number`;
    else if (typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function') problem = `a ${typeof v} is not allowed`;
    else if (v !== null && typeof v === 'object') {
      if (Array.isArray(v)) v.forEach((x, i) => visit(x, [...path, i]));
      else if (Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== null)
        problem = `a ${(v as object).constructor?.name ?? 'non-JSON'} value is not allowed; use plain strings, numbers, booleans, lists and mappings`;
      else for (const [k, x] of Object.entries(v)) visit(x, [...path, k]);
    }
    if (problem) {
      const at = locate(parsed, toPointer(path));
      errors.push({ file: parsed.file, line: at.line, column: at.column, path: toHumanPath(path), code: 'bad-value', message: problem });
    }
  };
  visit(parsed.data, []);
  return errors;
}

function yamlError(
  e: YAMLError,
  file: string,
  lc: LineCounter,
  locations: Map<string, NodeLocation>,
  text: string,
  doc: Document,
): SpecError {
  const at = lc.linePos(e.pos[0]);
  // yaml's messages end with ` at line L, column C:` and a source excerpt; we print the position ourselves.
  const message = e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '');
  if (e.code === 'DUPLICATE_KEY') {
    // The later of two equal keys overwrote the earlier one's entry, so its key position is the error's.
    let path = '';
    for (const [pointer, loc] of locations) if (loc.key && loc.key.line === at.line && loc.key.column === at.col) path = humanPath(pointer);
    const key = /^("(?:[^"\\]|\\.)*"|'[^']*'|[^:\s,{}[\]]+)/.exec(text.slice(e.pos[0]))?.[1] ?? '';
    return {
      file,
      line: at.line,
      column: at.col,
      path,
      code: 'duplicate-key',
      message: `duplicate key '${key.replace(/^["']|["']$/g, '')}'; each key may appear only once in a mapping`,
      hint: 'remove or rename one of the repeated keys',
    };
  }
  const err: SpecError = { file, line: at.line, column: at.col, path: '', code: 'yaml-syntax', message: `YAML syntax: ${message}` };
  const hint = yamlHint(e, text, lc, doc);
  if (hint) err.hint = hint;
  return err;
}

/** A hint that fits the syntax error, or none. */
function yamlHint(e: YAMLError, text: string, lc: LineCounter, doc: Document): string | undefined {
  const offset = e.pos[0];
  // `{` and `}` are flow indicators, so an unquoted reference inside [ ] or { } breaks the parse
  // where the reference is; an error elsewhere on its line (or after an unclosed { above) has
  // another cause.
  if (insideReference(text, offset)) return 'inside [ ] or { }, quote strings that contain ${{ … }}, e.g. ["${{ params.x }}"]';
  // "Flow map … must end with a }": yaml notices where the next line starts, not where the { is.
  const unclosed = /must be sufficiently indented and end with a ([}\]])/.exec(e.message);
  if (unclosed) {
    const closer = unclosed[1]!;
    let opener: [number, number] | undefined;
    visit(doc, {
      Collection(_, node) {
        const r = node.range;
        if (!node.flow || !r || r[0] >= offset || r[2] < offset || (closer === '}') !== isMap(node)) return;
        if (!opener || r[0] > opener[0]) opener = [r[0], r[2]];
      },
    });
    if (opener) {
      const p = lc.linePos(opener[0]);
      return `the ${closer === '}' ? '{' : '['} at line ${p.line}, column ${p.col} is not closed: end it with ${closer} (a ${closer === '}' ? '{ … }' : '[ … ]'} that goes on over several lines must be indented more than its key)`;
    }
    return `close the ${closer === '}' ? '{' : '['} … ${closer} before this line`;
  }
  if (e.code === 'TAB_AS_INDENT') return 'indent with spaces; YAML does not allow tabs for indentation';
  return undefined;
}

/** Whether `offset` falls inside a `${{ … }}` (from its `$` to the end of its `}}`) on its line. */
function insideReference(text: string, offset: number): boolean {
  const lineStart = text.lastIndexOf('\n', offset - 1) + 1;
  const nl = text.indexOf('\n', offset);
  const lineEnd = nl < 0 ? text.length : nl;
  for (let s = text.indexOf('${{', lineStart); s >= 0 && s < lineEnd; s = text.indexOf('${{', s + 3)) {
    const close = text.indexOf('}}', s + 3);
    const end = close < 0 || close >= lineEnd ? lineEnd : close + 2;
    if (offset >= s && offset <= end) return true;
  }
  return false;
}

function humanPath(pointer: string): string {
  return toHumanPath(fromPointer(pointer).map((s) => (/^\d+$/.test(s) ? Number(s) : s)));
}

const MAX_DEPTH = 200;

function walk(
  node: Node | null | undefined,
  path: Segment[],
  key: Pos | undefined,
  lc: LineCounter,
  out: Map<string, NodeLocation>,
  depth: number,
): void {
  if (depth > MAX_DEPTH) return;
  // Aliased content is not walked again: its nodes already have locations at the anchor, errors
  // below an alias point at the alias itself, and re-walking would let an alias bomb explode here.
  const target: unknown = isAlias(node) ? undefined : node;
  const range = (node as Node | null | undefined)?.range;
  const emptyValue = !node || (isScalar(node) && node.value === null && (node.source === '' || node.source === undefined));
  let value: Pos;
  if (range && !(emptyValue && key)) {
    const p = lc.linePos(range[0]);
    value = { line: p.line, column: p.col };
  } else {
    // `key:` with nothing after it: the key is the best place to point at.
    value = key ?? { line: 1, column: 1 };
  }
  out.set(toPointer(path), { value, key, start: range?.[0] ?? 0, end: range?.[1] ?? 0 });
  if (isMap(target)) {
    for (const item of target.items) {
      if (!isPair(item)) continue;
      const k = item.key as Node | null;
      const name = isScalar(k) ? String(k.value) : String(k);
      const kp = k?.range ? lc.linePos(k.range[0]) : undefined;
      walk(item.value as Node | null, [...path, name], kp ? { line: kp.line, column: kp.col } : value, lc, out, depth + 1);
    }
  } else if (isSeq(target)) {
    target.items.forEach((item, i) => walk(item as Node | null, [...path, i], undefined, lc, out, depth + 1));
  }
}

/** Where to report a problem with the node at `pointer`, falling back to the nearest located ancestor. */
export function locate(parsed: ParsedSource, pointer: string, at: 'value' | 'key' = 'value'): Pos {
  let p = pointer;
  for (;;) {
    const loc = parsed.locations.get(p);
    if (loc) return at === 'key' && loc.key ? loc.key : loc.value;
    if (p === '') return { line: 1, column: 1 };
    p = p.slice(0, p.lastIndexOf('/'));
  }
}

/** Position of `needle` inside the scalar at `pointer`, when it appears there verbatim. */
export function locateText(parsed: ParsedSource, pointer: string, needle: string, occurrence = 0): Pos {
  const loc = parsed.locations.get(pointer);
  if (loc && loc.end > loc.start) {
    const slice = parsed.text.slice(loc.start, loc.end);
    let idx = -1;
    for (let i = 0; i <= occurrence; i++) {
      idx = slice.indexOf(needle, idx + 1);
      if (idx < 0) break;
    }
    if (idx >= 0) {
      const p = parsed.lineCounter.linePos(loc.start + idx);
      return { line: p.line, column: p.col };
    }
  }
  return locate(parsed, pointer);
}
