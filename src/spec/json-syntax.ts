/**
 * Strict JSON (RFC 8259) for `.json` pipeline files. YAML 1.2 reads any JSON text, but it also
 * reads much that is not JSON (single quotes, bare keys, comments, trailing commas), so a `.json`
 * file YAML accepts may be one no JSON tool accepts. The verdict and the value come from
 * JSON.parse, the platform's own JSON parser; the yaml package (parse.ts) then supplies only the
 * positions of the nodes and the duplicate keys JSON.parse silently merges.
 *
 * JSON.parse's messages carry the offset of the problem for most errors ("… in JSON at position N",
 * on newer Node also "(line L column C)"), but not for an unexpected character ("Unexpected token
 * ''', …"… is not valid JSON"). Then the offset is found with JSON.parse too: the longest prefix of
 * the text that JSON.parse still fails on only for ending early is where the text goes wrong.
 */
import type { SpecError } from './types.ts';

export type JsonParseResult = { ok: true; value: unknown } | { ok: false; error: SpecError };

/** Whether `file` is parsed as strict JSON: its name ends in `.json` (any case). */
export function isJsonFile(file: string): boolean {
  return /\.json$/i.test(file);
}

export function parseStrictJson(text: string, file: string): JsonParseResult {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (e) {
    const raw = e instanceof Error ? e.message : String(e);
    const offset = reportedOffset(text, raw) ?? (endOfInput(raw) ? text.length : firstBadOffset(text));
    const { line, column } = positionAt(text, offset);
    return {
      ok: false,
      error: {
        file,
        line,
        column,
        path: '',
        code: 'json-syntax',
        message: `JSON syntax: ${describe(raw)}`,
        hint: jsonHint(text, offset, raw),
      },
    };
  }
}

function endOfInput(message: string): boolean {
  return /end of JSON input/i.test(message);
}

/** The offset JSON.parse's message names, if it names one. */
function reportedOffset(text: string, message: string): number | undefined {
  const at = / at position (\d+)/.exec(message);
  if (at) return Math.min(Number(at[1]), text.length);
  const lc = /\(line (\d+) column (\d+)\)/.exec(message);
  if (!lc) return undefined;
  let start = 0;
  for (let l = 1; l < Number(lc[1]); l++) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) return text.length;
    start = nl + 1;
  }
  return Math.min(start + Number(lc[2]) - 1, text.length);
}

/**
 * Offset of the first character no valid JSON text could have there. A prefix that stops before it
 * fails only for ending early (or parses); one that includes it fails there, before its end.
 * Binary search keeps `lo` such a prefix and `hi` not (the whole text, which failed before its end).
 */
function firstBadOffset(text: string): number {
  let lo = 0;
  let hi = text.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >>> 1;
    if (viablePrefix(text.slice(0, mid))) lo = mid;
    else hi = mid;
  }
  return lo;
}

function viablePrefix(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return true;
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (endOfInput(message)) return true;
    const at = reportedOffset(prefix, message);
    return at !== undefined && at >= prefix.length;
  }
}

/** JSON.parse's message without the offset and the excerpt of the text (we print the position ourselves). */
function describe(raw: string): string {
  const m = raw
    .replace(/,\s*(?:\.\.\.)?"[\s\S]*"(?:\.\.\.)? is not valid JSON$/, '')
    .replace(/ (?:in JSON )?at position \d+(?: \(line \d+ column \d+\))?$/, '')
    .replace(/ \(line \d+ column \d+\)$/, '')
    .trim();
  return m || 'not valid JSON';
}

/** 1-based line and column (UTF-16 units, as in every spec error) of `offset`. */
function positionAt(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, column: offset - lineStart + 1 };
}

/** What to do about the JSON error at `offset`, judged mostly from the text there rather than from the message's wording. */
function jsonHint(text: string, offset: number, raw: string): string {
  const rest = text.slice(offset);
  const ch = rest.charAt(0);
  // The bare word the error is in or just after (`name:` fails at its `a`, `tru}` at the `}`).
  const head = /(?:^|[^\w$.-])([A-Za-z_$][\w$.-]*)$/.exec(text.slice(0, offset))?.[1] ?? '';
  const word = /^[A-Za-z_$]/.test(head + ch) ? head + /^[\w$.-]*/.exec(rest)![0] : '';
  const start = offset - head.length;
  const prefix = text.slice(0, start).replace(/[ \t\n\r]+$/, '');
  const before = prefix.slice(-1);
  // JSON.parse skips whitespace between tokens, so a complaint at a control character is inside a string.
  if (ch !== '' && ch < ' ')
    return 'a JSON string ends on the line it starts on and holds no raw tab: close it with ", or write a line break as \\n and a tab as \\t';
  if (ch === '\\' || text.charAt(offset - 1) === '\\' || /escape/i.test(raw))
    return 'in a JSON string a backslash starts an escape (\\n, \\t, \\", \\\\, \\uXXXX): write \\\\ for a backslash, e.g. in a Windows path';
  if (/^[ \t\n\r]*$/.test(rest)) return 'the file ends before the JSON does: a closing }, ] or " is missing';
  if (/^\s/.test(ch))
    return `JSON allows only plain spaces, tabs and line breaks between values; this is U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
  if (rest.startsWith('//') || rest.startsWith('/*') || ch === '#')
    return 'JSON has no comments: remove it, or write the pipeline as a .yaml file, where # starts a comment';
  if (ch === "'") return 'JSON needs double-quoted keys and strings: write "…", not \'…\'';
  if (before === '' && !/^[{[]/.test(text.charAt(start)))
    return 'a .json pipeline is one JSON object, { "name": …, "stages": { … } }; if this file is YAML, give it a .yaml name';
  if (succeeds(prefix))
    return 'text follows the end of the JSON object: a .json pipeline is one { … }; is a { missing, or a } one too many?';
  if ((ch === '}' || ch === ']') && before === ',')
    return `trailing comma: JSON allows no comma after the last entry; remove the , before this ${ch}`;
  if (ch === ',' && before === ',') return 'two commas in a row: remove one (JSON has no empty entries and no trailing commas)';
  if (ch === ',' && (before === '{' || before === '[')) return `a comma right after ${before}: remove it (JSON has no empty entries)`;
  if (ch === '$') return 'quote references in JSON like any string: "${{ params.x }}"';
  if (/^[+.]/.test(ch) || /number|fractional|exponent|minus/i.test(raw))
    return 'JSON numbers look like 3, -0.5 or 1e-3: no leading + or zeros, a digit on both sides of the point';
  if (word && !/^(?:true|false|null)$/.test(word)) {
    if (/^[ \t\n\r]*:/.test(text.slice(start + word.length))) return `JSON needs double-quoted keys and strings: write "${word}"`;
    if (/^(?:True|False|TRUE|FALSE|yes|no|Yes|No|on|off|None|Null|NULL|nil|undefined|NaN|Infinity)$/.test(word))
      return 'JSON has only true, false and null (lower case), and no NaN or Infinity';
    return `JSON needs double-quoted strings: write "${word}"`;
  }
  if (/Expected ':'/.test(raw)) return 'put a : between a key and its value';
  if (/["\d}\]el]/.test(before) && /["{[\d\-tfn]/.test(ch)) return 'a comma is missing before this: JSON separates entries with commas';
  if (ch === '}' || ch === ']') return `this ${ch} does not close what is open here: check the brackets and braces before it`;
  return 'JSON needs double-quoted keys and strings, a : after each key, commas between entries and none after the last';
}

function succeeds(prefix: string): boolean {
  try {
    JSON.parse(prefix);
    return true;
  } catch {
    return false;
  }
}
