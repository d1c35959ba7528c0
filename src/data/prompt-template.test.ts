/**
 * promptTemplate syntax: `{field}`, `[[ … ]]` optional sections, `{{` / `}}` literal braces. Every
 * malformed template is an error with its 0-based offset (a template used to be matched by two
 * regular expressions, so an unclosed `[[` or a stray `}` was copied into every prompt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  isFieldName,
  isTemplateError,
  jinjaField,
  MAX_TEMPLATE_CHARS,
  parseTemplate,
  type ParsedTemplate,
  type TemplateError,
} from './prompt-template.ts';

function parsed(t: string): ParsedTemplate {
  const p = parseTemplate(t);
  assert.ok(!isTemplateError(p), `${JSON.stringify(t)}: ${JSON.stringify(p)}`);
  return p;
}

function error(t: string, offset: number | undefined, message: RegExp): TemplateError {
  const p = parseTemplate(t);
  assert.ok(isTemplateError(p), `${JSON.stringify(t)} parsed: ${JSON.stringify(p)}`);
  assert.equal(p.offset, offset, `${JSON.stringify(t)}: ${p.message}`);
  assert.match(p.message, message);
  return p;
}

test('fields, optional sections and literal text', () => {
  assert.deepEqual(parsed('{instruction}[[\n\nInput: {input}]]'), {
    sections: [
      { optional: false, pieces: [{ field: 'instruction', at: 0 }] },
      { optional: true, pieces: ['\n\nInput: ', { field: 'input', at: 24 }] },
    ],
    fields: ['instruction', 'input'],
  });
  // Single brackets are text; field names may hold spaces, digits, dots, dashes, parentheses.
  assert.deepEqual(parsed('[1] {Review Text (EN)} {2} {a.b-c_d}').fields, ['Review Text (EN)', '2', 'a.b-c_d']);
  assert.deepEqual(parsed('{a} {a}').fields, ['a']);
});

test('{{ and }} are literal braces, as in Python str.format', () => {
  assert.deepEqual(parsed('Reply as JSON like {{"answer": ...}}. {instruction}').sections, [
    { optional: false, pieces: ['Reply as JSON like {"answer": ...}. ', { field: 'instruction', at: 38 }] },
  ]);
  // Three braces: a literal brace next to a field.
  assert.deepEqual(parsed('{{{x}}}').sections[0]!.pieces, ['{', { field: 'x', at: 2 }, '}']);
});

test('three brackets in a row: the inner pair delimits the section, the outer bracket is text', () => {
  assert.deepEqual(parsed('{q}[[[{ref}]]]').sections, [
    { optional: false, pieces: [{ field: 'q', at: 0 }] },
    { optional: true, pieces: ['[', { field: 'ref', at: 6 }, ']'] },
  ]);
});

test('an unclosed [[, a stray ]], nested [[ and four brackets in a row are errors at their offset', () => {
  const e = error('{instruction}[[\n\nInput: {input}', 13, /^unclosed "\[\[" at character 14 \("\[\[\\n\\nInput: \{input\}"\)/);
  assert.match(e.hint ?? '', /\]\]/);
  // Outside a section, closing brackets are text: code in a prompt.
  assert.deepEqual(parsed('code: a[b[0]] {a}]] ]]]]').sections[0]!.pieces, ['code: a[b[0]] ', { field: 'a', at: 14 }, ']] ]]]]']);
  error(
    '{a}[[ x [[{b}]] ]]',
    8,
    /^"\[\[" at character 9 opens a section inside the one opened at character 4: \[\[ … \]\] sections do not nest/,
  );
  error('{a}[[[[{b}]]]]', 3, /^4 "\[" in a row at character 4/);
  error('{a}[[{b}]]]]', 8, /^4 "\]" in a row at character 9/);
  error('{a}[[ no field ]]', 3, /section at character 4 names no \{field\}, so it would always be kept/);
  error('{a}[[]]', 3, /names no \{field\}/);
});

test('an unclosed {, an empty {}, a stray } and a {…} that is no field name are errors with the escape as hint', () => {
  error('Say {instruction', 4, /^unclosed "\{" at character 5/);
  error('Say {a {b}', 4, /^unclosed "\{" at character 5/);
  assert.match(error('{} {a}', 0, /^empty "\{\}" at character 1/).hint ?? '', /\{\{\}\}/);
  assert.match(error('{a} }', 4, /^"\}" at character 5 closes no "\{"/).hint ?? '', /\{\{ and \}\}/);
  error('{{a}', 3, /^"\}" at character 4 closes no/);
  const json = error(
    'Reply as JSON like {"answer": ...}. {instruction}',
    19,
    /^"\{\\"answer\\": \.\.\.\}" at character 20 is not a \{field\}/,
  );
  assert.match(json.hint ?? '', /\{\{\\"answer\\": \.\.\.\}\}/);
  for (const bad of ['{ a}', '{a }', '{"a"}', '{a\nb}', '{a[[b}'])
    assert.ok(isTemplateError(parseTemplate(`${bad} {ok}`)), `${JSON.stringify(bad)} is not a field name`);
  // A long {…} is quoted shortened in the message.
  const long = error(`{${'x '.repeat(100)}"}`, 0, /is not a \{field\}/);
  assert.ok(long.message.length < 300, long.message);
});

test("Jinja's {{ field }} is an error, not the literal text that drops the field; names may hold : , and '", () => {
  const e = error(
    '{{instruction}}\n\n{input}',
    0,
    /^"\{\{instruction\}\}" at character 1 would be the literal text "\{instruction\}", not the field: write \{instruction\}/,
  );
  assert.match(e.hint ?? '', /literal braces here, as in Python's str.format, not Jinja's/);
  error('Q: {{ question }}', 3, /^"\{\{ question \}\}" at character 4 would be the literal text "\{question\}"/);
  assert.deepEqual(parsed("{q:a} {Rating, 1-5} {user's question}").fields, ['q:a', 'Rating, 1-5', "user's question"]);
});

test('a template without a field is an error without an offset', () => {
  error('just text', undefined, /names no \{field\}/);
  error('{{"a": 1}}', undefined, /names no \{field\}/);
});

test('a template over 65,536 characters is an error: no model context holds the prompt, and dedupe renders it', () => {
  const at = `${'x'.repeat(MAX_TEMPLATE_CHARS - 3)}{q}`;
  assert.ok(!isTemplateError(parseTemplate(at)));
  error(`${at}.`, undefined, /the template has 65537 characters, more than the 65536 a prompt template may have/);
});

test('{{ name }} is found by a scan with the verdict of the regular expression it replaced, in time linear in the template', () => {
  // The expression backtracked cubically on "{{" and a run of spaces (4,000: 30 s); it stays here as the reference.
  const reference = (t: string) => {
    const m = /^\{\{\s*([^{}]+?)\s*\}\}(?!\})/.exec(t);
    return m && isFieldName(m[1]!) ? { text: m[0], name: m[1]! } : null;
  };
  const alphabet = ['{', '}', ' ', 'a', '\n', '"'];
  let compared = 0;
  const walk = (s: string) => {
    const j = jinjaField(s, 0);
    assert.deepEqual(j && isFieldName(j.name) ? j : null, reference(s), JSON.stringify(s));
    compared++;
    if (s.length < 9) for (const c of alphabet) walk(s + c);
  };
  walk('{{');
  assert.equal(compared, (6 ** 8 - 1) / 5);
  // 60,000 spaces: the expression would take days; the scan is immediate, and the verdict the same (not a field).
  const spaces = `{{${' '.repeat(60000)}{x}`;
  assert.equal(jinjaField(spaces, 0), null);
  assert.ok(!isTemplateError(parseTemplate(spaces + '}}')));
});
