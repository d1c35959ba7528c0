/**
 * Syntax errors in pipeline files, built from the shipped pipelines: a `.json` file is strict JSON
 * (RFC 8259), with JSON errors at their line:column and hints, while everything after parsing
 * (positions of fields, duplicate keys, schema errors) works as for YAML; and a YAML syntax error
 * is reported alone, with a hint that fits it, not followed by errors read from a broken document.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import fc from 'fast-check';
import { parse } from 'yaml';
import { kindRegistry, loadStageKinds } from '../stages/stage-kinds.ts';
import { checkSpecText, loadSpecText } from './load.ts';
import { parseSource } from './parse.ts';
import { toPointer, type Segment } from './paths.ts';
import { assertError, posOf } from './spec-errors.testing.ts';
import type { KindRegistry, SpecError } from './types.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pipelines = join(root, 'pipelines');
const demoYaml = readFileSync(join(pipelines, 'sms-spam.yaml'), 'utf8');
/** The demo pipeline as a JSON file, as someone who prefers JSON would write it. */
const demoJson = JSON.stringify(parse(demoYaml), null, 2) + '\n';
const jsonFile = join(pipelines, 'sms-spam.json');
const yamlFile = join(pipelines, 'sms-spam.yaml');
let registry: KindRegistry;
before(async () => {
  registry = kindRegistry(await loadStageKinds());
});

function edit(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `the pipeline no longer contains ${from}`);
  return text.replace(from, to);
}

function errorsOf(text: string, file: string): SpecError[] {
  const r = loadSpecText(text, file, { ...registry, baseDir: pipelines });
  assert.equal(r.ok, false, `expected ${file} to be rejected`);
  return (r as { errors: SpecError[] }).errors;
}

/**
 * Exactly one error, a JSON syntax error at the start of `at` (or `shift` characters into it), with
 * a hint matching `hint`.
 */
function expectJsonError(text: string, at: string, hint: RegExp, shift = 0): SpecError {
  const errors = errorsOf(text, jsonFile);
  assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
  const e = errors[0]!;
  assert.equal(e.code, 'json-syntax');
  assert.equal(e.path, '');
  assert.match(e.message, /^JSON syntax: \S/);
  assert.match(e.hint ?? '', hint);
  const offset = text.indexOf(at);
  assert.ok(offset >= 0, `the text does not contain ${JSON.stringify(at)}`);
  const before = text.slice(0, offset + shift);
  const where = { line: before.split('\n').length, column: before.length - before.lastIndexOf('\n') };
  assert.deepEqual({ line: e.line, column: e.column }, where, JSON.stringify(e));
  return e;
}

describe('a .json pipeline is strict JSON', () => {
  test('the demo pipeline written as JSON is valid and plans as the YAML one does', () => {
    const fromJson = loadSpecText(demoJson, jsonFile, { ...registry, baseDir: pipelines });
    const fromYaml = loadSpecText(demoYaml, yamlFile, { ...registry, baseDir: pipelines });
    assert.ok(fromJson.ok && fromYaml.ok, JSON.stringify(!fromJson.ok && fromJson.errors));
    assert.equal(fromJson.plan.specHash, fromYaml.plan.specHash);
  });

  test('an unquoted key and a single-quoted string are JSON errors (YAML accepted them)', () => {
    const text = edit(demoJson, '"name": "sms-spam",', "name: 'sms-spam',");
    expectJsonError(text, "name: 'sms-spam'", /^JSON needs double-quoted keys and strings: write "name"$/);
  });

  test('a single-quoted key or value is an error at its quote', () => {
    expectJsonError(edit(demoJson, '"task": "classification"', '\'task\': "classification"'), "'task'", /double-quoted keys and strings/);
    expectJsonError(
      edit(demoJson, '"task": "classification"', '"task": \'classification\''),
      "'classification'",
      /double-quoted keys and strings/,
    );
  });

  test('a // comment is an error at the comment, and the key after it is not swallowed', () => {
    const text = edit(demoJson, '"task": "classification",', '"task": "classification", // cls');
    expectJsonError(text, '// cls', /^JSON has no comments/);
    expectJsonError(
      edit(demoJson, '"task": "classification",', '"task": "classification", /* cls */'),
      '/* cls */',
      /^JSON has no comments/,
    );
  });

  test('a double comma is a JSON error at the second comma, not a YAML one', () => {
    const text = edit(demoJson, '"task": "classification",', '"task": "classification",,');
    expectJsonError(text, ',,', /two commas in a row/, 1);
    // It used to read `YAML syntax: Unexpected , in flow map`.
    assert.doesNotMatch(errorsOf(text, jsonFile)[0]!.message, /YAML/);
  });

  test('a trailing comma is an error at the bracket it precedes', () => {
    const text = edit(demoJson, '"maxBadFraction": 0.01\n      }', '"maxBadFraction": 0.01,\n      }');
    expectJsonError(text, '0.01,\n      }', /^trailing comma: .* remove the , before this \}$/, '0.01,\n      '.length);
    const list = edit(demoJson, '"spam"\n        ]', '"spam",\n        ]');
    expectJsonError(list, '"spam",\n        ]', /^trailing comma: .* remove the , before this \]$/, '"spam",\n        '.length);
  });

  test('an unquoted ${{ }} reference is an error with a hint to quote it', () => {
    const ref = '"${{ stages.ingest.outputs.table }}"';
    const text = edit(demoJson, ref, ref.slice(1, -1));
    expectJsonError(text, '${{ stages.ingest', /quote references/);
  });

  test('other JSON mistakes: a missing comma, YAML booleans, a Windows path, a leading-dot number, a missing brace, YAML in a .json file', () => {
    expectJsonError(edit(demoJson, '"task": "classification",', '"task": "classification"'), '"labels"', /comma is missing/);
    expectJsonError(edit(demoJson, '"onBadRow": "quarantine"', '"onBadRow": None'), 'None', /only true, false and null/);
    expectJsonError(edit(demoJson, '"onBadRow": "quarantine"', '"onBadRow": "C:\\data"'), 'C:\\data', /backslash starts an escape/, 3);
    expectJsonError(edit(demoJson, '"maxBadFraction": 0.01', '"maxBadFraction": .01'), '.01', /JSON numbers/);
    expectJsonError(edit(demoJson, '"task": "classification",', '"task": "classification\n",'), '\n",', /ends on the line it starts on/);
    const cut = demoJson.replace(/\}\n$/, '');
    expectJsonError(cut, cut, /file ends before the JSON does/, cut.length);
    expectJsonError(demoYaml, '# yaml-language-server', /^JSON has no comments/);
    const yamlBody = demoYaml.replace(/^(#.*\n)+/, '');
    expectJsonError(yamlBody, 'name: sms-spam', /if this file is YAML, give it a \.yaml name/, 1);
    expectJsonError(demoJson + '}\n', demoJson, /text follows the end/, demoJson.length);
  });

  test('the name decides: .JSON is JSON too, and the same lenient text named .yaml is YAML', () => {
    const text = edit(demoJson, '"name": "sms-spam",', "name: 'sms-spam',");
    assert.equal(errorsOf(text, join(pipelines, 'SMS.JSON'))[0]!.code, 'json-syntax');
    assert.equal(loadSpecText(text, yamlFile, { ...registry, baseDir: pipelines }).ok, true);
  });

  test('an empty .json file is still reported as empty', () => {
    const errors = errorsOf(' \n', jsonFile);
    assert.deepEqual(
      errors.map((e) => e.code),
      ['empty-file'],
    );
  });

  test('duplicate keys in valid JSON are still reported at the second one, with their path', () => {
    const text = edit(demoJson, '"task": "classification",', '"task": "classification", "task": "causal-lm",');
    const errors = errorsOf(text, jsonFile);
    assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
    assertError(
      text,
      errors[0]!,
      {
        code: 'duplicate-key',
        path: 'stages.ingest.with.task',
        at: '"task": "causal-lm"',
        message: "duplicate key 'task'; each key may appear only once in a mapping",
      },
      jsonFile,
    );
  });

  test('schema and semantic errors in valid JSON point at their fields', () => {
    let text = edit(demoJson, '"maxBadFraction": 0.01', '"maxBadFraction": 5');
    text = edit(text, '"${{ stages.ingest.outputs.table }}"', '"${{ stages.ingest.outputs.tabel }}"');
    const errors = errorsOf(text, jsonFile);
    assert.deepEqual(
      errors.map((e) => [e.code, e.path]),
      [
        ['with-schema', 'stages.ingest.with.maxBadFraction'],
        ['unknown-output', 'stages.dedupe.with.table'],
      ],
    );
    assert.deepEqual({ line: errors[0]!.line, column: errors[0]!.column }, posOf(text, '5\n'));
    assert.deepEqual({ line: errors[1]!.line, column: errors[1]!.column }, posOf(text, '${{ stages.ingest.outputs.tabel'));
  });

  test('parameters work in a JSON file', () => {
    const r = loadSpecText(demoJson, jsonFile, { ...registry, baseDir: pipelines, paramOverrides: { seed: '7' } });
    assert.ok(r.ok);
    const split = r.plan.stages.find((s) => s.id === 'split')!;
    assert.equal(split.with.seed, 7);
    const bad = loadSpecText(demoJson, jsonFile, { ...registry, baseDir: pipelines, paramOverrides: { seed: 'x' } });
    assert.ok(!bad.ok && bad.errors.some((e) => e.code === 'bad-param-override'));
  });
});

describe('JSON error positions', () => {
  // JSON.parse names no position for an unexpected character; each of these is located by
  // searching for the longest prefix that is still the start of some JSON text.
  const cases: Array<[text: string, at: string, hint: RegExp]> = [
    ['{"a": [1, 2,]}', ']', /trailing comma/],
    ['{"a": tru}', '}', /write "tru"/],
    ['{"a": True}', 'True', /lower case/],
    ['{"a": NaN}', 'NaN', /no NaN/],
    ['{"a": value}', 'value', /write "value"/],
    ['{"a": +1}', '+1', /JSON numbers/],
    ['# c\n{}', '#', /no comments/],
    ['{"a":\n  1,\n  "b": \'x\'}', "'x'", /double-quoted/],
    ['name: p\nstages: {}\n', 'ame', /give it a \.yaml name/],
    ['\u00a0{}', '\u00a0', /U\+00A0/],
    // JSON.parse names these positions itself.
    ['{"a": 1,\n  "b": 2,\n}', '}', /trailing comma/],
    ['{"a" 1}', '1', /a : between a key and its value/],
    ['{"a": 01}', '1}', /JSON numbers/],
    ['[1, 2] [3]', '[3]', /text follows the end/],
    ['{"a": [1, 2}', '}', /does not close/],
  ];
  for (const [text, at, hint] of cases)
    test(JSON.stringify(text), () => {
      const r = parseSource(text, 'p.json');
      assert.ok(!r.ok);
      assert.equal(r.errors.length, 1);
      assertError(text, r.errors[0]!, { code: 'json-syntax', path: '', at, message: /^JSON syntax: \S/, hint }, 'p.json');
    });

  test('a file with Windows line endings gets the same line and column', () => {
    const text = '{\r\n  "a": 1,\r\n  \'b\': 2\r\n}\r\n';
    const r = parseSource(text, 'p.json');
    assert.ok(!r.ok);
    assert.deepEqual([r.errors[0]!.line, r.errors[0]!.column], [3, 3]);
  });
});

describe('JSON files: properties', () => {
  const SEED = 20261204;
  const WS = fc.constantFrom('', ' ', '\n', '\t', '\r\n', '\n    ', ' \t ');
  /** JSON texts of any layout: JSON.stringify's, or whitespace sprinkled around every punctuation mark. */
  const jsonText = fc
    .tuple(fc.jsonValue({ maxDepth: 4 }), fc.array(WS, { minLength: 16, maxLength: 16 }), fc.nat(2))
    .map(([v, ws, layout]) => {
      const compact = JSON.stringify(v);
      if (layout === 0) return compact;
      if (layout === 1) return JSON.stringify(v, null, '\t');
      let i = 0;
      let inString = false;
      let out = '';
      for (let k = 0; k < compact.length; k++) {
        const c = compact[k]!;
        if (inString && c === '\\') {
          out += c + compact[++k]!;
          continue;
        }
        if (c === '"') inString = !inString;
        out += !inString && /[,:[\]{}]/.test(c) ? ws[i++ % 16]! + c + ws[(i * 7) % 16]! : c;
      }
      return out;
    });

  test('any JSON text is accepted with the value JSON.parse gives, and every node is located where it is', () => {
    fc.assert(
      fc.property(jsonText, (text) => {
        const r = parseSource(text, 'p.json');
        if (JSON.parse(text) === null) {
          // As `null` or `~` in YAML: nothing to validate.
          assert.deepEqual(!r.ok && r.errors.map((e) => e.code), ['empty-file']);
          return;
        }
        assert.ok(r.ok, `rejected: ${JSON.stringify(!r.ok && r.errors)}`);
        assert.deepEqual(r.parsed.data, JSON.parse(text));
        const visit = (v: unknown, path: Segment[]): void => {
          const loc = r.parsed.locations.get(toPointer(path));
          assert.ok(loc, `no location for ${toPointer(path)}`);
          if (v !== null && typeof v === 'object') {
            assert.equal(text[loc.start], Array.isArray(v) ? '[' : '{');
            if (Array.isArray(v)) v.forEach((x, i) => visit(x, [...path, i]));
            else for (const [k, x] of Object.entries(v)) visit(x, [...path, k]);
          } else assert.deepEqual(JSON.parse(text.slice(loc.start, loc.end)), v);
        };
        visit(r.parsed.data, []);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  test('an edit that breaks a JSON text gives one JSON error, never before the edit, with a hint', () => {
    const breaking = fc.constantFrom(',', "'", '//', '#', '}', ']', '{', ':', 'x', '"', '\n"', '01', '.', 'True', '${{');
    fc.assert(
      fc.property(jsonText, breaking, fc.nat(), fc.boolean(), (text, insert, n, replace) => {
        const at = n % (text.length + 1);
        const broken = text.slice(0, at) + insert + text.slice(at + (replace ? 1 : 0));
        let valid = true;
        try {
          JSON.parse(broken);
        } catch {
          valid = false;
        }
        const r = parseSource(broken, 'p.json');
        if (valid) return;
        assert.ok(!r.ok);
        assert.equal(r.errors.length, 1, JSON.stringify(r.errors));
        const e = r.errors[0]!;
        assert.equal(e.code, 'json-syntax');
        assert.ok(e.hint && e.hint.length > 0);
        const lines = broken.split('\n');
        assert.ok(e.line >= 1 && e.line <= lines.length && e.column >= 1 && e.column <= lines[e.line - 1]!.length + 1, JSON.stringify(e));
        // The text before the edit is the start of a valid JSON text, so the parser cannot fail there.
        const offset = lines.slice(0, e.line - 1).reduce((sum, l) => sum + l.length + 1, 0) + e.column - 1;
        assert.ok(offset >= at, `error at ${offset}, before the edit at ${at}: ${JSON.stringify(broken)}`);
      }),
      { seed: SEED, numRuns: 600 },
    );
  });
});

describe('a YAML syntax error is reported alone, with a hint that fits it', () => {
  test('an unclosed { in the demo: one error, pointing at the {, and no invented duplicate keys', () => {
    const text = edit(demoYaml, 'ratios: { train: 0.8, validation: 0.1, test: 0.1 }', 'ratios: { train: 0.8, validation: 0.1, test: 0.1');
    const errors = errorsOf(text, yamlFile);
    assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
    const open = posOf(text, '{ train: 0.8');
    assertError(
      text,
      errors[0]!,
      {
        code: 'yaml-syntax',
        path: '',
        at: 'seed: ${{ params.seed }}',
        message: /^YAML syntax: Flow map .* end with a \}$/,
        hint: new RegExp(`^the \\{ at line ${open.line}, column ${open.column} is not closed: end it with \\}`),
      },
      yamlFile,
    );
    assert.doesNotMatch(errors[0]!.hint!, /quote/);
  });

  test('the same in the tiny test fixture, checked without planning', () => {
    const fixture = join(root, 'tests', 'fixtures', 'tiny-pipeline.yaml');
    const text = edit(readFileSync(fixture, 'utf8'), 'test: 0.2 }', 'test: 0.2');
    const r = checkSpecText(text, fixture, registry);
    assert.ok(!r.ok);
    assert.deepEqual(
      r.errors.map((e) => [e.code, e.line]),
      [['yaml-syntax', posOf(text, 'seed: ${{').line]],
    );
    assert.match(
      r.errors[0]!.hint ?? '',
      new RegExp(`^the \\{ at line ${posOf(text, '{ train').line}, column ${posOf(text, '{ train').column} is not closed`),
    );
  });

  test('an unclosed [ in the demo: one error, pointing at the [', () => {
    const text = edit(demoYaml, 'labels: [ham, spam]', 'labels: [ham, spam');
    const errors = errorsOf(text, yamlFile);
    assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
    const open = posOf(text, '[ham');
    assert.equal(errors[0]!.code, 'yaml-syntax');
    assert.equal(
      errors[0]!.hint,
      `the [ at line ${open.line}, column ${open.column} is not closed: end it with ] (a [ … ] that goes on over several lines must be indented more than its key)`,
    );
  });

  test('a syntax error hides duplicate keys and schema errors elsewhere in the file', () => {
    let text = edit(demoYaml, 'conflicts: majority', 'conflicts: majority\n      conflicts: first');
    text = edit(text, 'maxBadFraction: 0.01', 'maxBadFraction: 5');
    text = edit(text, 'labels: [ham, spam]', 'labels: [ham, spam');
    assert.deepEqual(
      errorsOf(text, yamlFile).map((e) => e.code),
      ['yaml-syntax'],
    );
  });

  test('the quoting hint is given for an unquoted ${{ }} inside [ ] or { }', () => {
    for (const [from, to] of [
      ['needs: split\n', 'needs: [${{ params.seed }}]\n'],
      ['ratios: { train: 0.8, validation: 0.1, test: 0.1 }', 'ratios: { train: ${{ params.seed }}, validation: 0.1, test: 0.1 }'],
    ] as const) {
      const errors = errorsOf(edit(demoYaml, from, to), yamlFile);
      assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
      assert.match(errors[0]!.hint ?? '', /quote strings that contain \$\{\{/);
    }
  });
});

test('a document nested deeper than any pipeline is one error at the place it goes too deep, not a stack overflow (JSON and YAML)', () => {
  for (const [file, depth] of [
    [jsonFile, 3000],
    [yamlFile, 3000],
    [jsonFile, 150],
  ] as const) {
    assert.match(demoJson, /"description": "[^"]*"/);
    const text = demoJson.replace(/"description": "[^"]*"/, `"description": ${'['.repeat(depth)}${']'.repeat(depth)}`);
    const errors = errorsOf(text, file);
    assert.equal(errors.length, 1, `${file} ${depth}: ${JSON.stringify(errors).slice(0, 300)}`);
    assert.match(errors[0]!.message, /nested more than 100 levels deep|yaml|YAML/, `${file} ${depth}`);
  }
});
