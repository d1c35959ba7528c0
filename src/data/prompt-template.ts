/**
 * The instruction task's `promptTemplate`: `{field}` is replaced by the source field's text, a
 * `[[ … ]]` section is dropped when a field inside it is missing, null or blank, and `{{` / `}}`
 * are a literal `{` / `}`. Parsed once, at `tempered validate` and before ingest reads a row, so
 * a malformed template is an error naming its position instead of text copied into every prompt.
 *
 * Brackets: `[[` opens a section and `]]` closes it; a single `[` or `]`, and `]]` outside a
 * section (`a[b[0]]`), are text. Of three in a row, the section's delimiter is the pair on the
 * inside (`[[[{x}]]]` is the section `[{x}]`); four or more `[` in a row are an error, as are nested
 * sections: there is no escape for `[[`.
 */

/** A `{field}` of the template, with its 0-based offset in the template. */
export interface TemplateField {
  field: string;
  at: number;
}

export interface TemplateSection {
  /** A `[[ … ]]` section: dropped when one of its fields is missing or blank. */
  optional: boolean;
  /** Literal text and fields, in order. */
  pieces: Array<string | TemplateField>;
}

export interface ParsedTemplate {
  sections: TemplateSection[];
  /** Every field named, in order of first use. */
  fields: string[];
}

export interface TemplateError {
  message: string;
  /** 0-based offset in the template of the character the problem is at, when it is at one. */
  offset?: number;
  hint?: string;
}

/**
 * What a `{…}` may hold: any text but braces, brackets, double quotes and control characters, without
 * surrounding spaces (a column may be called `q:a` or `Rating, 1-5`; a JSON example has double quotes).
 */
const NOT_IN_NAME = /[{}[\]"\p{Cc}]/u;

export function isFieldName(name: string): boolean {
  return name !== '' && name.trim() === name && !NOT_IN_NAME.test(name);
}

export const FIELD_NAME_RULE =
  'a field name is any text without braces, brackets, double quotes or line breaks, and without surrounding spaces';
const BRACE_ESCAPE = 'write {{ and }} for a literal { and }, e.g. "Reply as JSON like {{\\"answer\\": ...}}. {instruction}"';

/** A short, quoted excerpt of the template from `at`, for messages. */
function near(t: string, at: number, len = 24): string {
  const s = t.slice(at, at + len);
  return JSON.stringify(at + len < t.length ? `${s}…` : s);
}

/**
 * Longest template: a prompt of 64 Ki characters is already longer than the context of the models tempered trains.
 * Bounded because near-duplicate detection renders a table's template several times (src/data/template-shingles.ts),
 * and a table's template may come from a file.
 */
export const MAX_TEMPLATE_CHARS = 65536;

/**
 * `{{ name }}` at `i`: the text up to the first brace after `{{` is the name, padded by spaces, when that brace opens
 * a `}}` that no third `}` follows. A scan to that brace, not a regular expression: `{{` then a long run of spaces
 * made a backtracking one take cubic time (4,000 spaces 30 s), and a template may come from a table's metadata.
 */
export function jinjaField(t: string, i: number): { text: string; name: string } | null {
  if (t[i] !== '{' || t[i + 1] !== '{') return null;
  let j = i + 2;
  while (j < t.length && t[j] !== '{' && t[j] !== '}') j++;
  if (j === i + 2 || t[j] !== '}' || t[j + 1] !== '}' || t[j + 2] === '}') return null;
  return { text: t.slice(i, j + 2), name: t.slice(i + 2, j).trim() };
}

/** The template's structure, or the first thing wrong with it (with its offset). */
export function parseTemplate(t: string): ParsedTemplate | TemplateError {
  if (t.length > MAX_TEMPLATE_CHARS)
    return {
      message: `the template has ${t.length} characters, more than the ${MAX_TEMPLATE_CHARS} a prompt template may have`,
      hint: "a prompt this long leaves no room for the input in a model's context: shorten it",
    };
  const sections: TemplateSection[] = [];
  const fields: string[] = [];
  let cur: TemplateSection = { optional: false, pieces: [] };
  let sectionAt = -1;
  let sectionHasField = false;
  let text = '';
  const flush = () => {
    if (text) cur.pieces.push(text);
    text = '';
  };
  const endSection = (optional: boolean) => {
    flush();
    if (cur.pieces.length > 0) sections.push(cur);
    cur = { optional, pieces: [] };
  };
  const at = (i: number) => `at character ${i + 1}`;

  let i = 0;
  while (i < t.length) {
    const c = t[i]!;
    if (c === '{') {
      // `{{name}}` is Jinja's way to write a field, and here the literal text `{name}`: a prompt that
      // silently lacked the field.
      const jinja = jinjaField(t, i);
      if (jinja && isFieldName(jinja.name))
        return {
          message: `${JSON.stringify(jinja.text)} ${at(i)} would be the literal text "{${jinja.name}}", not the field: write {${jinja.name}}`,
          offset: i,
          hint: "{{ and }} are literal braces here, as in Python's str.format, not Jinja's {{ field }}",
        };
      if (t[i + 1] === '{') {
        text += '{';
        i += 2;
        continue;
      }
      const close = t.indexOf('}', i + 1);
      const reopen = t.indexOf('{', i + 1);
      if (close < 0 || (reopen >= 0 && reopen < close))
        return {
          message: `unclosed "{" ${at(i)} (${near(t, i)}): a field is written {name}`,
          offset: i,
          hint: `close it with "}", or ${BRACE_ESCAPE}`,
        };
      const name = t.slice(i + 1, close);
      if (name === '')
        return {
          message: `empty "{}" ${at(i)}: name a field inside, e.g. {instruction}`,
          offset: i,
          hint: 'write {{}} for literal braces',
        };
      if (!isFieldName(name))
        return {
          message: `${JSON.stringify(close - i < 40 ? t.slice(i, close + 1) : `${t.slice(i, i + 39)}…`)} ${at(i)} is not a {field}: ${FIELD_NAME_RULE}`,
          offset: i,
          hint: BRACE_ESCAPE,
        };
      flush();
      cur.pieces.push({ field: name, at: i });
      if (!fields.includes(name)) fields.push(name);
      sectionHasField = true;
      i = close + 1;
      continue;
    }
    if (c === '}') {
      if (t[i + 1] === '}') {
        text += '}';
        i += 2;
        continue;
      }
      return { message: `"}" ${at(i)} closes no "{"`, offset: i, hint: BRACE_ESCAPE };
    }
    if (c === '[' || c === ']') {
      let run = 1;
      while (t[i + run] === c) run++;
      // Outside a section, closing brackets are text (`a[b[0]]`): only "[[" opens something.
      if (run === 1 || (c === ']' && !cur.optional)) {
        text += c.repeat(run);
        i += run;
        continue;
      }
      if (run > 3)
        return {
          message: `${run} "${c}" in a row ${at(i)}: [[ … ]] sections do not nest, and "${c}${c}" has no escape`,
          offset: i,
          hint: 'an optional section is one [[ … ]] with a {field} inside; put literal brackets in a field instead',
        };
      if (c === '[') {
        if (cur.optional)
          return {
            message: `"[[" ${at(i)} opens a section inside the one opened at character ${sectionAt + 1}: [[ … ]] sections do not nest`,
            offset: i,
            hint: 'close the first section with "]]" before opening another',
          };
        endSection(true);
        sectionAt = i;
        sectionHasField = false;
        if (run === 3) text += '[';
      } else {
        // The closing pair is the inner one: `]]]` is a literal `]` followed by the end of the section.
        if (run === 3) text += ']';
        if (!sectionHasField)
          return {
            message: `the [[ … ]] section ${at(sectionAt)} names no {field}, so it would always be kept`,
            offset: sectionAt,
            hint: 'a section is dropped when a field inside it is missing or blank: put a {field} inside, or remove the brackets',
          };
        endSection(false);
      }
      i += run;
      continue;
    }
    text += c;
    i++;
  }
  if (cur.optional)
    return {
      message: `unclosed "[[" ${at(sectionAt)} (${near(t, sectionAt)}): an optional section ends with "]]"`,
      offset: sectionAt,
      hint: 'close it, e.g. "{instruction}[[\\n\\nInput: {input}]]"',
    };
  endSection(false);
  if (fields.length === 0) return { message: 'promptTemplate names no {field}', hint: 'e.g. "{instruction}[[\\n\\n{input}]]"' };
  return { sections, fields };
}

export function isTemplateError(p: ParsedTemplate | TemplateError): p is TemplateError {
  return 'message' in p;
}
