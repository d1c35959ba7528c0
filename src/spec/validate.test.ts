/**
 * Bad pipeline files, one or more per class of mistake. Each case asserts the error's code, path,
 * message and exact line:column; the expected position is found by searching the fixture for the
 * text the error must point at, so the assertion does not depend on counting by hand.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { assertError, errorsOf, expectOnly, posOf, yaml } from './spec-errors.testing.ts';
import type { StageKindInfo } from './types.ts';

const INGEST = `  ingest:\n    uses: ingest\n    with: { source: a.csv }\n`;

describe('YAML and JSON syntax', () => {
  test('an unterminated flow sequence is a syntax error at the line yaml stops at', () => {
    const text = 'name: p\nstages: [ingest\nparams: {}\n';
    const errors = errorsOf(text);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'yaml-syntax');
    assert.match(errors[0]!.message, /^YAML syntax: Flow sequence .* end with a \]$/);
    assert.deepEqual([errors[0]!.line, errors[0]!.column], [3, 1]);
  });

  test('a tab used as indentation is reported where it is', () => {
    const text = 'name: p\n\tstages: {}\n';
    const [e] = errorsOf(text);
    assert.deepEqual(
      { code: e!.code, line: e!.line, column: e!.column, message: e!.message },
      { code: 'yaml-syntax', line: 2, column: 1, message: 'YAML syntax: Tabs are not allowed as indentation' },
    );
  });

  test('a duplicate key points at the second occurrence and names the key and its path', () => {
    const text = yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with: { source: a.csv }
          uses: dedupe
    `;
    expectOnly(text, {
      code: 'duplicate-key',
      path: 'stages.ingest.uses',
      at: 'uses: dedupe',
      message: "duplicate key 'uses'; each key may appear only once in a mapping",
      hint: /remove or rename/,
    });
  });

  test('duplicate keys in a JSON file are reported with their position', () => {
    const text =
      '{\n  "name": "p",\n  "stages": {\n    "a": {"uses": "ingest", "with": {"source": "x"}},\n    "a": {"uses": "ingest"}\n  }\n}\n';
    const errors = errorsOf(text, 'p.json');
    assert.equal(errors.length, 1);
    assertError(
      text,
      errors[0]!,
      {
        code: 'duplicate-key',
        path: 'stages.a',
        at: '"a"',
        nth: 1,
        message: "duplicate key 'a'; each key may appear only once in a mapping",
      },
      'p.json',
    );
  });

  test('a missing comma in a JSON file points at the token after it, reporting only the first syntax error', () => {
    const text = '{"name": "p" "stages": {}}\n';
    const errors = errorsOf(text, 'p.json');
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'json-syntax');
    assert.match(errors[0]!.message, /^JSON syntax: /);
    assert.match(errors[0]!.hint ?? '', /comma is missing/);
    assert.deepEqual([errors[0]!.line, errors[0]!.column], [1, 14]);
  });

  test('an unquoted reference inside a flow sequence gets a hint about quoting', () => {
    const text = 'name: p\nstages:\n  a: { uses: ingest, with: { source: x, tags: [e${{ params.n }}] } }\n';
    const errors = errorsOf(text);
    assert.equal(errors.length, 1);
    assert.equal(errors[0]!.code, 'yaml-syntax');
    assert.equal(errors[0]!.line, 3);
    assert.match(errors[0]!.hint ?? '', /quote strings that contain \$\{\{/);
  });

  test('values JSON cannot carry (.inf, !!set) are rejected where they are', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n    with:\n      source: a.csv\n      limit: .inf\n      tags: !!set { a, b }\n`;
    const errors = errorsOf(text);
    assert.equal(errors.length, 2);
    assertError(text, errors[0]!, {
      code: 'bad-value',
      path: 'stages.ingest.with.limit',
      at: '.inf',
      message: 'Infinity is not allowed; use a finite number',
    });
    assertError(text, errors[1]!, {
      code: 'bad-value',
      path: 'stages.ingest.with.tags',
      at: '{ a, b }',
      message: 'a Set value is not allowed; use plain strings, numbers, booleans, lists and mappings',
    });
  });

  // labelMap: {1.0: "1"} was the key "1": the map rewrote "1" to itself and left every "1.0" row as it was.
  test('a plain key YAML reads as a number written otherwise (1.0, 01, 1e2) is an error at the key; 0, -1 and quoted keys are keys', () => {
    const at = (key: string) => yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with: { source: a.csv, tags: { ${key}: x } }
    `;
    for (const [key, number] of [
      ['1.0', '1'],
      ['01', '1'],
      ['1e2', '100'],
    ])
      expectOnly(at(key), {
        code: 'number-key',
        path: `stages.ingest.with.tags["${number}"]`,
        at: `${key}: x`,
        message: `key ${key} is the number ${number} to YAML, so the key is "${number}", not "${key}"`,
        hint: `quote it to keep the text: "${key}"`,
      });
    for (const key of ['0', '-1', '"1.0"', "'01'", 'true']) assert.ok(!errorsOf(at(key)).some((e) => e.code === 'number-key'), key);
    // pandas writes a bool column to CSV as True/False: labelMap: {True: positive} was the key "true", matching no row.
    for (const [key, message, path] of [
      ['True', 'key True is the boolean true to YAML, so the key is "true", not "True"', 'tags.true'],
      ['FALSE', 'key FALSE is the boolean false to YAML, so the key is "false", not "FALSE"', 'tags.false'],
    ])
      expectOnly(at(key!), {
        code: 'number-key',
        path: `stages.ingest.with.${path}`,
        at: `${key}: x`,
        message,
        hint: `quote it to keep the text: "${key}"`,
      });
  });

  // labelMap: {~: x, Null: y} was the key "" twice (the second replacing the first), matching no row, without a word.
  test('a plain key YAML reads as null (~, null, Null, NULL, or none) is an error at each such key; quoted, it is a key', () => {
    const at = (keys: string) => yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with: { source: a.csv, tags: { ${keys} } }
    `;
    for (const key of ['~', 'null', 'Null', 'NULL'])
      expectOnly(at(`${key}: x`), {
        code: 'null-key',
        path: 'stages.ingest.with.tags[""]',
        at: `${key}: x`,
        message: `key ${key} is null to YAML, so the key is "", not "${key}" (and a second null key in the mapping replaces it)`,
        hint: `quote it to keep the text: "${key}"`,
      });
    // Two null keys: each is named, not a duplicate key "Null" that the file does not hold twice.
    const two = at('~: x, Null: y');
    const errors = errorsOf(two);
    assert.deepEqual(
      errors.map((e) => e.code),
      ['null-key', 'null-key'],
    );
    assertError(two, errors[0]!, { code: 'null-key', path: 'stages.ingest.with.tags[""]', at: '~: x', message: /^key ~ is null/ });
    assertError(two, errors[1]!, { code: 'null-key', path: 'stages.ingest.with.tags[""]', at: 'Null: y', message: /^key Null is null/ });
    expectOnly(at('? : x'), {
      code: 'null-key',
      path: 'stages.ingest.with.tags[""]',
      at: ': x',
      message: 'a key left empty is null to YAML, so the key is "" (and a second such key in the mapping replaces it)',
    });
    // In a list too, with the path as the data has it; a duplicate key that is no null is still one.
    const listed = yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with: { source: a.csv, tags: [a, { null: x, b: 1, b: 2 }] }
    `;
    const both = errorsOf(listed);
    assert.deepEqual(
      both.map((e) => [e.code, e.path]),
      [
        ['null-key', 'stages.ingest.with.tags[1][""]'],
        ['duplicate-key', 'stages.ingest.with.tags[1].b'],
      ],
    );
    for (const key of ['"~"', "'null'", '"Null"']) assert.ok(!errorsOf(at(`${key}: x`)).some((e) => e.code === 'null-key'), key);
  });

  // YAML 1.2 has no merge keys: `<<` was an unknown field, and the fields it was meant to bring in "missing".
  test('a merge key (<<) is one error at the key, and a quoted "<<" is a key like any other', () => {
    const text = yaml`
      name: p
      x-stage: &base
        uses: ingest
        with: { source: a.csv }
      stages:
        ingest:
          <<: *base
          needs: []
    `;
    expectOnly(text, {
      code: 'merge-key',
      path: 'stages.ingest["<<"]',
      at: '<<',
      message: 'YAML merge keys (<<) are not supported: write the fields out, or use params',
      hint: 'an alias still stands for a whole value (retry: &r { … } on one stage, retry: *r on another); defaults: gives every stage a retry, timeout and queue',
    });
    const quoted = errorsOf(text.replace('<<: *base', '"<<": *base'));
    assert.ok(!quoted.some((e) => e.code === 'merge-key'), JSON.stringify(quoted));
    assert.ok(
      quoted.some((e) => e.code === 'unknown-field' && e.message === "unknown field '<<'"),
      JSON.stringify(quoted),
    );
  });

  test('an alias bomb is refused quickly', () => {
    let text = 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
    for (let i = 1; i < 12; i++)
      text += `a${i}: &a${i} [${Array(10)
        .fill(`*a${i - 1}`)
        .join(', ')}]\n`;
    const started = Date.now();
    const errors = errorsOf(text);
    assert.ok(Date.now() - started < 2000);
    assert.deepEqual(
      errors.map((e) => [e.code, e.line, e.column]),
      [['yaml-syntax', 1, 1]],
    );
    assert.match(errors[0]!.message, /alias/);
  });

  test('an error inside aliased content is reported at the anchor and at the alias', () => {
    const text = 'name: p\nstages:\n  a: &s\n    uses: ingest\n    with: { source: x, limit: 0 }\n  b: *s\n';
    const errors = errorsOf(text);
    assert.equal(errors.length, 2);
    assertError(text, errors[0]!, {
      code: 'with-schema',
      path: 'stages.a.with.limit',
      at: '0 }',
      message: 'must be an integer ≥ 1, got 0',
    });
    assertError(text, errors[1]!, { code: 'with-schema', path: 'stages.b.with.limit', at: '*s', message: 'must be an integer ≥ 1, got 0' });
  });

  test('an empty file says so', () => {
    for (const text of ['', '# only a comment\n', '~\n']) {
      const errors = errorsOf(text);
      assert.deepEqual(
        errors.map((e) => [e.code, e.line, e.column, e.message]),
        [['empty-file', 1, 1, 'the pipeline file is empty']],
      );
    }
  });
});

describe('schema', () => {
  test('a file that is a list, not a mapping', () => {
    expectOnly('- name: p\n', { code: 'schema', path: '', at: '- name', message: 'must be a mapping, got a list' });
  });

  test('unknown top-level key suggests the right one, and the missing stages are reported too', () => {
    const text = yaml`
      name: p
      stage:
        ingest: { uses: ingest }
    `;
    const errors = errorsOf(text);
    assert.equal(errors.length, 2);
    assertError(text, errors[0]!, {
      code: 'missing-field',
      path: '',
      at: 'name',
      message: "missing required field 'stages'",
      hint: /^add 'stages'/,
    });
    assertError(text, errors[1]!, {
      code: 'unknown-field',
      path: 'stage',
      at: 'stage:',
      message: "unknown field 'stage'",
      hint: /^did you mean 'stages'\? allowed fields: name, description, params, stages/,
    });
  });

  test('a stage without uses points at the stage key', () => {
    const text = yaml`
      name: p
      stages:
        ingest:
          with: { source: a.csv }
    `;
    expectOnly(text, {
      code: 'missing-field',
      path: 'stages.ingest',
      at: 'ingest:',
      message: "missing required field 'uses'",
      hint: /^add 'uses': stage kind/,
    });
  });

  test('a misspelt stage field suggests the right one', () => {
    const text = `name: p\nstages:\n${INGEST}    timout: 10m\n`;
    expectOnly(text, {
      code: 'unknown-field',
      path: 'stages.ingest.timout',
      at: 'timout',
      message: "unknown field 'timout'",
      hint: /^did you mean 'timeout'\?/,
    });
  });

  test('wrong type for concurrency', () => {
    const text = `name: p\nconcurrency: two\nstages:\n${INGEST}`;
    expectOnly(text, { code: 'schema', path: 'concurrency', at: 'two', message: "must be an integer ≥ 1, got 'two'" });
  });

  test('concurrency below one', () => {
    const text = `name: p\nconcurrency: 0\nstages:\n${INGEST}`;
    expectOnly(text, { code: 'schema', path: 'concurrency', at: '0', message: 'must be an integer ≥ 1, got 0' });
  });

  test('a pipeline name that is not a slug', () => {
    const text = `name: My Pipeline\nstages:\n${INGEST}`;
    expectOnly(text, {
      code: 'schema',
      path: 'name',
      at: 'My Pipeline',
      message: "must be a name of lowercase letters, digits and '-', starting with a letter, got 'My Pipeline'",
      hint: 'e.g. my-pipeline',
    });
  });

  test('a stage id with capitals points at the key', () => {
    const text = `name: p\nstages:\n  Ingest:\n    uses: ingest\n    with: { source: a.csv }\n`;
    expectOnly(text, {
      code: 'schema',
      path: 'stages.Ingest',
      at: 'Ingest',
      message: "'Ingest' is not a stage id of at most 64 lowercase letters, digits, '_' and '-', starting with a letter",
    });
  });

  test('a stage id past 64 characters points at the key: it names folders, with the work key and run name, that must fit 255 bytes', () => {
    const id = `s${'x'.repeat(64)}`;
    const text = `name: p\nstages:\n  ${id}:\n    uses: ingest\n    with: { source: a.csv }\n`;
    expectOnly(text, {
      code: 'schema',
      path: `stages.${id}`,
      at: id,
      message: `'${id}' is not a stage id of at most 64 lowercase letters, digits, '_' and '-', starting with a letter`,
    });
  });

  test('onFailure outside its enum suggests the closest value', () => {
    const text = `name: p\nonFailure: fail-fsat\nstages:\n${INGEST}`;
    expectOnly(text, {
      code: 'schema',
      path: 'onFailure',
      at: 'fail-fsat',
      message: "must be one of: fail-fast, finish-independent, got 'fail-fsat'",
      hint: "did you mean 'fail-fast'?",
    });
  });

  test('an empty stages map', () => {
    expectOnly('name: p\nstages: {}\n', { code: 'schema', path: 'stages', at: '{}', message: 'must have at least 1 entry' });
  });

  test('needs listing the same stage twice', () => {
    const text = `name: p\nstages:\n${INGEST}  dedupe:\n    uses: dedupe\n    needs: [ingest, ingest]\n    with: { table: "\${{ stages.ingest.outputs.table }}" }\n`;
    expectOnly(text, {
      code: 'schema',
      path: 'stages.dedupe.needs',
      at: '[ingest, ingest]',
      message: 'must not repeat items (items 0 and 1 are the same)',
    });
  });

  test('an empty `retry:` points at its key', () => {
    const text = `name: p\nstages:\n${INGEST}    retry:\n`;
    expectOnly(text, { code: 'schema', path: 'stages.ingest.retry', at: 'retry', message: 'must be a mapping, got null' });
  });
});

describe('durations and retry policies', () => {
  test('a duration in words', () => {
    const text = `name: p\nstages:\n${INGEST}    timeout: 10 minutes\n`;
    expectOnly(text, {
      code: 'bad-duration',
      path: 'stages.ingest.timeout',
      at: '10 minutes',
      message: "must be a duration such as 30s, 10m, 2h or 1h30m, got '10 minutes'",
      hint: /1h30m/,
    });
  });

  test('units in the wrong order', () => {
    const text = `name: p\ndefaults:\n  heartbeatTimeout: 30m1h\nstages:\n${INGEST}`;
    expectOnly(text, {
      code: 'bad-duration',
      path: 'defaults.heartbeatTimeout',
      at: '30m1h',
      message: "must be a duration such as 30s, 10m, 2h or 1h30m, got '30m1h'",
    });
  });

  test('a zero timeout', () => {
    const text = `name: p\nstages:\n${INGEST}    timeout: 0s\n`;
    expectOnly(text, { code: 'bad-duration', path: 'stages.ingest.timeout', at: '0s', message: "must be longer than zero, got '0s'" });
  });

  test('retry values out of range are all reported', () => {
    const text = `name: p\nstages:\n${INGEST}    retry: { maximumAttempts: 1.5, backoffCoefficient: 0.5, initialInterval: 1h, maximumInterval: 10s, jitter: 1 }\n`;
    const errors = errorsOf(text);
    assert.equal(errors.length, 4, JSON.stringify(errors, null, 1));
    assertError(text, errors[0]!, {
      code: 'schema',
      path: 'stages.ingest.retry.maximumAttempts',
      at: '1.5',
      message: 'must be an integer ≥ 1, got 1.5',
    });
    assertError(text, errors[1]!, {
      code: 'schema',
      path: 'stages.ingest.retry.backoffCoefficient',
      at: '0.5',
      message: 'must be a number ≥ 1, got 0.5',
    });
    assertError(text, errors[2]!, {
      code: 'bad-retry',
      path: 'stages.ingest.retry.maximumInterval',
      at: '10s',
      message: 'maximumInterval (10s) must not be shorter than initialInterval (1h)',
    });
    assertError(text, errors[3]!, {
      code: 'unknown-field',
      path: 'stages.ingest.retry.jitter',
      at: 'jitter',
      message: "unknown field 'jitter'",
      hint: /allowed fields: maximumAttempts, initialInterval/,
    });
  });

  test('a stage retry that conflicts with the defaults it inherits', () => {
    const text = `name: p\ndefaults:\n  retry: { initialInterval: 5m }\nstages:\n${INGEST}    retry: { maximumInterval: 1m }\n`;
    expectOnly(text, {
      code: 'bad-retry',
      path: 'stages.ingest.retry.maximumInterval',
      at: '1m }',
      message: 'maximumInterval (1m) must not be shorter than initialInterval (5m)',
    });
  });
});

describe('stage kinds and with-schemas', () => {
  /** Runs `fn` with TEMPERED_PLUGINS as given (undefined: unset), as the validating process would have it. */
  const withPlugins = (value: string | undefined, fn: () => void) => {
    const saved = process.env.TEMPERED_PLUGINS;
    if (value === undefined) delete process.env.TEMPERED_PLUGINS;
    else process.env.TEMPERED_PLUGINS = value;
    try {
      fn();
    } finally {
      if (saved === undefined) delete process.env.TEMPERED_PLUGINS;
      else process.env.TEMPERED_PLUGINS = saved;
    }
  };
  const NO_PLUGINS =
    'custom stage kinds load from the modules named in TEMPERED_PLUGINS (comma-separated, each exporting stageKinds()), on this machine and on every worker (not set here, so only built-in kinds are known)';

  test('unknown kind suggests the closest one and lists what exists', () => {
    const text = `name: p\nstages:\n  t:\n    uses: trian\n`;
    withPlugins(undefined, () =>
      expectOnly(text, {
        code: 'unknown-kind',
        path: 'stages.t.uses',
        at: 'trian',
        message: "unknown stage kind 'trian'",
        hint: `did you mean 'train'? available: ingest, dedupe, split, train, evaluate, register; ${NO_PLUGINS}`,
      }),
    );
  });

  test('unknown kind with nothing close lists the kinds only, and says custom kinds come from TEMPERED_PLUGINS', () => {
    const text = `name: p\nstages:\n  t:\n    uses: quantize\n`;
    withPlugins(undefined, () =>
      expectOnly(text, {
        code: 'unknown-kind',
        path: 'stages.t.uses',
        at: 'quantize',
        message: "unknown stage kind 'quantize'",
        hint: `available: ingest, dedupe, split, train, evaluate, register; ${NO_PLUGINS}`,
      }),
    );
  });

  test('unknown kind names the TEMPERED_PLUGINS modules this process loaded', () => {
    const text = `name: p\nstages:\n  t:\n    uses: filter\n`;
    withPlugins(' ./plugins/text.ts, /opt/kinds.js ,', () =>
      expectOnly(text, {
        code: 'unknown-kind',
        path: 'stages.t.uses',
        at: 'filter',
        message: "unknown stage kind 'filter'",
        hint: /^available: ingest, .*; custom stage kinds load from the modules named in TEMPERED_PLUGINS .*\(loaded here: \.\/plugins\/text\.ts, \/opt\/kinds\.js\)$/,
      }),
    );
  });

  test('a known kind this version does not provide', () => {
    const text = `name: p\nstages:\n  ship:\n    uses: deploy\n`;
    expectOnly(text, {
      code: 'kind-unavailable',
      path: 'stages.ship.uses',
      at: 'deploy',
      message: "stage kind 'deploy' is not available in this version",
    });
  });

  test('a with value outside the kind schema is reported at that value', () => {
    const text = yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with:
            source: a.csv
            limit: -5
    `;
    expectOnly(text, { code: 'with-schema', path: 'stages.ingest.with.limit', at: '-5', message: 'must be an integer ≥ 1, got -5' });
  });

  test('a nested with value, and an enum with a suggestion', () => {
    const text = `name: p\nstages:\n${INGEST}  train:\n    uses: train\n    needs: ingest\n    with:\n      data: \${{ stages.ingest.outputs.table }}\n      optimizer: { name: adamv, betas: [0.9, high] }\n`;
    const errors = errorsOf(text);
    assert.equal(errors.length, 2, JSON.stringify(errors, null, 1));
    assertError(text, errors[0]!, {
      code: 'with-schema',
      path: 'stages.train.with.optimizer.name',
      at: 'adamv',
      message: "must be one of: sgd, adamw, got 'adamv'",
      hint: "did you mean 'adamw'?",
    });
    assertError(text, errors[1]!, {
      code: 'with-schema',
      path: 'stages.train.with.optimizer.betas[1]',
      at: 'high',
      message: "must be a number, got 'high'",
    });
  });

  test('anyOf in a kind schema: the branch the value aims at is reported, or else every form', () => {
    const text = (seed: string) =>
      `name: p\nparams:\n  flag: { type: boolean, default: true }\n  mode: { type: string, default: manual }\nstages:\n${INGEST}  split:\n    uses: split\n    needs: ingest\n    with:\n      table: \${{ stages.ingest.outputs.table }}\n      seed: ${seed}\n`;
    expectOnly(text('manual'), {
      code: 'with-schema',
      path: 'stages.split.with.seed',
      at: 'manual',
      nth: 1,
      message: "must be a string matching /^auto$/, got 'manual'",
    });
    expectOnly(text('1.5'), {
      code: 'with-schema',
      path: 'stages.split.with.seed',
      at: '1.5',
      message: 'must be an integer or a string matching /^auto$/, got 1.5',
    });
    expectOnly(text('${{ params.flag }}'), {
      code: 'type-mismatch',
      path: 'stages.split.with.seed',
      at: '${{ params.flag',
      message: 'must be an integer or a string matching /^auto$/, but ${{ params.flag }} is boolean parameter true',
    });
    // The type fits one branch, so the value decides: 'manual' fails the pattern.
    expectOnly(text('${{ params.mode }}'), {
      code: 'with-schema',
      path: 'stages.split.with.seed',
      at: '${{ params.mode',
      message: "must be a string matching /^auto$/, got 'manual'",
      hint: '${{ params.mode }} is string parameter "manual"',
    });
    assert.equal(loadCheck(text('${{ params.mode }}').replace('default: manual', 'default: auto')).length, 0);
  });

  test('an unknown with field points at its key', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n    with:\n      source: a.csv\n      sep: ";"\n`;
    expectOnly(text, {
      code: 'with-schema',
      path: 'stages.ingest.with.sep',
      at: 'sep',
      message: "unknown field 'sep'",
      hint: /allowed fields: source, format, limit/,
    });
  });

  test('a missing required with field points at the with key', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n    with:\n      format: csv\n`;
    expectOnly(text, { code: 'with-schema', path: 'stages.ingest.with', at: 'with', message: "missing required field 'source'" });
  });

  test('a stage without with at all is checked against the kind schema too', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n`;
    expectOnly(text, { code: 'with-schema', path: 'stages.ingest.with', at: 'ingest:', message: "missing required field 'source'" });
  });
});

describe('needs and cycles', () => {
  test('an unknown need suggests the closest stage', () => {
    const text = `name: p\nstages:\n${INGEST}  split:\n    uses: split\n    needs: [ingst]\n    with: { table: "\${{ stages.ingest.outputs.table }}" }\n`;
    const errors = errorsOf(text);
    assertError(text, errors[0]!, {
      code: 'unknown-need',
      path: 'stages.split.needs[0]',
      at: 'ingst',
      message: "unknown stage 'ingst'",
      hint: "did you mean 'ingest'? stages are: ingest",
    });
    // Without the need, ingest is not upstream either: the reference is reported as well.
    assertError(text, errors[1]!, {
      code: 'not-upstream',
      path: 'stages.split.with.table',
      at: '${{',
      message: "stage 'ingest' is not upstream of 'split', so its outputs may not exist yet when 'split' runs",
      hint: "add 'ingest' to needs of stage 'split'",
    });
    assert.equal(errors.length, 2);
  });

  test('needs written as one string', () => {
    const text = `name: p\nstages:\n${INGEST}  other:\n    uses: ingest\n    needs: nothing\n    with: { source: b.csv }\n`;
    expectOnly(text, {
      code: 'unknown-need',
      path: 'stages.other.needs',
      at: 'nothing',
      message: "unknown stage 'nothing'",
      hint: 'stages are: ingest',
    });
  });

  test('a malformed stage is still a known need target', () => {
    const text = `name: p\nstages:\n${INGEST}  broken: 5\n  other:\n    uses: ingest\n    needs: broken\n    with: { source: b.csv }\n`;
    expectOnly(text, { code: 'schema', path: 'stages.broken', at: '5', message: 'must be a mapping, got 5' });
  });

  test('a stage needing itself', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n    needs: [ingest]\n    with: { source: a.csv }\n`;
    expectOnly(text, { code: 'self-need', path: 'stages.ingest.needs[0]', at: 'ingest]', message: "stage 'ingest' cannot need itself" });
  });

  test('a two-stage cycle is named', () => {
    const text = yaml`
      name: p
      stages:
        a:
          uses: ingest
          needs: b
          with: { source: x }
        b:
          uses: ingest
          needs: [a]
          with: { source: y }
    `;
    expectOnly(text, {
      code: 'cycle',
      path: 'stages.a.needs',
      at: 'b\n',
      message: 'cycle: a → b → a',
      hint: /remove one of these needs, e\.g\. 'b' from stages\.a\.needs/,
    });
  });

  test('a three-stage cycle is named in the direction work flows, starting at the first-declared stage', () => {
    const text = yaml`
      name: p
      stages:
        root:
          uses: ingest
          with: { source: x }
        c:
          uses: ingest
          needs: [b, root]
          with: { source: x }
        a:
          uses: ingest
          needs: [c]
          with: { source: x }
        b:
          uses: ingest
          needs: [a]
          with: { source: x }
    `;
    expectOnly(text, { code: 'cycle', path: 'stages.c.needs[0]', at: 'b, root', message: 'cycle: c → a → b → c' });
  });

  test('two separate cycles are both reported', () => {
    const text = `name: p\nstages:\n  a: { uses: ingest, needs: b, with: { source: x } }\n  b: { uses: ingest, needs: a, with: { source: x } }\n  c: { uses: ingest, needs: d, with: { source: x } }\n  d: { uses: ingest, needs: c, with: { source: x } }\n`;
    const errors = errorsOf(text);
    assert.deepEqual(
      errors.map((e) => [e.code, e.message, e.line]),
      [
        ['cycle', 'cycle: a → b → a', 3],
        ['cycle', 'cycle: c → d → c', 5],
      ],
    );
  });
});

describe('references', () => {
  const twoStages = (withLine: string, needs = 'ingest') =>
    `name: p\nparams:\n  lr: { type: number, default: 0.01 }\n  model: { type: string, default: tiny }\nstages:\n${INGEST}  train:\n    uses: train\n    needs: ${needs}\n    with:\n      data: \${{ stages.ingest.outputs.table }}\n${withLine}\n`;

  test('an unknown parameter, with a suggestion', () => {
    const text = twoStages('      lr: ${{ params.lt }}');
    expectOnly(text, {
      code: 'unknown-param',
      path: 'stages.train.with.lr',
      at: '${{ params.lt',
      message: "unknown parameter 'lt' in ${{ params.lt }}",
      hint: "did you mean 'lr'? parameters are: lr, model",
    });
  });

  test('an unknown output of a known stage, with a suggestion', () => {
    const text = twoStages('      tags: ["${{ stages.ingest.outputs.tabel }}"]');
    expectOnly(text, {
      code: 'unknown-output',
      path: 'stages.train.with.tags[0]',
      at: '${{ stages.ingest.outputs.tabel',
      message: "stage 'ingest' (kind ingest) has no output 'tabel'",
      hint: "did you mean 'table'? its outputs are: table, rows",
    });
  });

  test('an unknown stage in a reference', () => {
    const text = twoStages('      model: "${{ stages.ingets.outputs.table }}"');
    expectOnly(text, {
      code: 'unknown-stage',
      path: 'stages.train.with.model',
      at: '${{ stages.ingets',
      message: "unknown stage 'ingets' in ${{ stages.ingets.outputs.table }}",
      hint: "did you mean 'ingest'? stages are: ingest",
    });
  });

  test('a stage that is not upstream: the hint says what to add to needs', () => {
    const text = yaml`
      name: p
      stages:
        ingest:
          uses: ingest
          with: { source: a.csv }
        other:
          uses: ingest
          with: { source: b.csv }
        train:
          uses: train
          needs: ingest
          with:
            data: \${{ stages.ingest.outputs.table }}
            run: rows-\${{ stages.other.outputs.rows }}
    `;
    expectOnly(text, {
      code: 'not-upstream',
      path: 'stages.train.with.run',
      at: '${{ stages.other',
      message: "stage 'other' is not upstream of 'train', so its outputs may not exist yet when 'train' runs",
      hint: "add 'other' to needs of stage 'train'",
    });
  });

  test('a transitive ancestor is upstream', () => {
    const text = `name: p\nstages:\n${INGEST}  dedupe:\n    uses: dedupe\n    needs: ingest\n    with: { table: "\${{ stages.ingest.outputs.table }}" }\n  split:\n    uses: split\n    needs: dedupe\n    with: { table: "\${{ stages.ingest.outputs.table }}" }\n`;
    assert.equal(errorsOf(text.replace('needs: dedupe', 'needs: [dedupe, nope]')).filter((e) => e.code === 'not-upstream').length, 0);
  });

  test('a stage using its own output', () => {
    const text = `name: p\nstages:\n  ingest:\n    uses: ingest\n    with: { source: "\${{ stages.ingest.outputs.rows }}" }\n`;
    expectOnly(text, {
      code: 'not-upstream',
      path: 'stages.ingest.with.source',
      at: '${{',
      message: "stage 'ingest' cannot use its own output ${{ stages.ingest.outputs.rows }}",
    });
  });

  test('an expression that is not a reference, and one never closed', () => {
    const text = twoStages('      model: "${{ param.model }}"\n      run: "x-${{ params.model"');
    const errors = errorsOf(text);
    assert.equal(errors.length, 2, JSON.stringify(errors, null, 1));
    assertError(text, errors[0]!, {
      code: 'bad-ref',
      path: 'stages.train.with.model',
      at: '${{ param.',
      message: "'${{ param.model }}' is not a reference tempered understands",
      hint: 'write ${{ params.<name> }} or ${{ stages.<id>.outputs.<name> }}',
    });
    assertError(text, errors[1]!, {
      code: 'bad-ref',
      path: 'stages.train.with.run',
      at: '${{ params.model"',
      message: "reference '${{ params.model' is missing its closing '}}'",
    });
  });

  test('a queue cannot use stage outputs', () => {
    const text = twoStages('    queue: "${{ stages.ingest.outputs.rows }}"').replace(
      '      data: ${{ stages.ingest.outputs.table }}\n    queue',
      '      data: ${{ stages.ingest.outputs.table }}\n    queue',
    );
    expectOnly(text, {
      code: 'bad-ref',
      path: 'stages.train.queue',
      at: '${{ stages.ingest.outputs.rows',
      message: 'a queue is chosen before any stage runs, so it cannot use ${{ stages.ingest.outputs.rows }}',
    });
  });

  test('a string parameter where the kind wants a number', () => {
    const text = twoStages('      lr: ${{ params.model }}');
    expectOnly(text, {
      code: 'type-mismatch',
      path: 'stages.train.with.lr',
      at: '${{ params.model',
      message: 'must be a number > 0, but ${{ params.model }} is string parameter "tiny"',
    });
  });

  test('a string parameter without a value where the kind wants a number', () => {
    const text = twoStages('      lr: ${{ params.name }}').replace('params:\n', 'params:\n  name: { type: string }\n');
    const errors = errorsOf(text, 'p.yaml', { name: 'x' });
    assert.equal(errors.length, 1);
    assertError(text, errors[0]!, {
      code: 'type-mismatch',
      path: 'stages.train.with.lr',
      at: '${{ params.name',
      message: 'must be a number > 0, but ${{ params.name }} is string parameter "x"',
    });
    const unvalued = loadCheck(text);
    assert.deepEqual(
      unvalued.map((e) => [e.code, e.message]),
      [['type-mismatch', 'must be a number > 0, but ${{ params.name }} is a string parameter']],
    );
  });

  test('a table output where the kind wants a number', () => {
    const text = twoStages('      epochs: ${{ stages.ingest.outputs.table }}');
    expectOnly(text, {
      code: 'type-mismatch',
      path: 'stages.train.with.epochs',
      at: '${{ stages.ingest.outputs.table }}',
      nth: 1,
      message: 'must be an integer ≥ 1, but ${{ stages.ingest.outputs.table }} is a table output',
    });
  });

  test('a number output where the kind wants a table', () => {
    const text = twoStages('').replace('data: ${{ stages.ingest.outputs.table }}', 'data: ${{ stages.ingest.outputs.rows }}');
    expectOnly(text, {
      code: 'type-mismatch',
      path: 'stages.train.with.data',
      at: '${{ stages.ingest.outputs.rows',
      message: 'must be an artifact reference, but ${{ stages.ingest.outputs.rows }} is a number output',
    });
  });

  // Without ${{ }} a reference is plain text to YAML: "must be a mapping" said nothing of what to write.
  test('a reference written without ${{ }}', () => {
    const text = twoStages('      lr: params.lr').replace('data: ${{ stages.ingest.outputs.table }}', 'data: stages.ingest.outputs.table');
    const errors = errorsOf(text);
    assert.equal(errors.length, 2, JSON.stringify(errors));
    assertError(text, errors[0]!, {
      code: 'with-schema',
      path: 'stages.train.with.data',
      at: 'stages.ingest.outputs.table',
      message: "must be an artifact reference, got 'stages.ingest.outputs.table', which looks like a stage output reference",
      hint: 'write ${{ stages.ingest.outputs.table }}',
    });
    assertError(text, errors[1]!, {
      code: 'with-schema',
      path: 'stages.train.with.lr',
      at: 'params.lr',
      message: "must be a number > 0, got 'params.lr', which looks like a parameter reference",
      hint: 'write ${{ params.lr }}',
    });
    const file = twoStages('').replace('data: ${{ stages.ingest.outputs.table }}', 'data: train.arrow');
    expectOnly(file, {
      code: 'with-schema',
      path: 'stages.train.with.data',
      at: 'train.arrow',
      message: "must be an artifact reference, got 'train.arrow'",
      hint: "write ${{ stages.<id>.outputs.<name> }}: an upstream stage's output",
    });
  });

  test('text with an embedded reference where the kind wants a number', () => {
    const text = twoStages('      epochs: "n${{ stages.ingest.outputs.rows }}"');
    expectOnly(text, {
      code: 'type-mismatch',
      path: 'stages.train.with.epochs',
      at: 'n${{',
      message: 'must be an integer ≥ 1, but text with embedded references is always a string',
    });
  });

  test('a parameter value outside the kind schema names where the value came from', () => {
    const text = twoStages('      lr: ${{ params.lr }}').replace('default: 0.01', 'default: -1');
    expectOnly(text, {
      code: 'with-schema',
      path: 'stages.train.with.lr',
      at: '${{ params.lr',
      message: 'must be a number > 0, got -1',
      hint: '${{ params.lr }} is number parameter -1',
    });
  });

  test('a json output is accepted wherever it is used', () => {
    const text = `name: p\nstages:\n${INGEST}  train:\n    uses: train\n    needs: ingest\n    with: { data: "\${{ stages.ingest.outputs.table }}" }\n  reg:\n    uses: register\n    needs: train\n    with: { model: "\${{ stages.train.outputs.model }}", name: "\${{ stages.train.outputs.metrics }}" }\n`;
    assert.equal(errorsOf(text.replace('needs: train', 'needs: [train, zzz]')).length, 1);
  });
});

describe('parameters', () => {
  const withParams = (params: string) => `name: p\nparams:\n${params}\nstages:\n${INGEST}`;

  test('a default of the wrong type', () => {
    const text = withParams('  epochs: { type: integer, default: 2.5 }');
    expectOnly(text, {
      code: 'bad-param-default',
      path: 'params.epochs.default',
      at: '2.5',
      message: 'default must be an integer, got 2.5',
    });
  });

  test('a default outside the enum', () => {
    const text = withParams('  size: { type: string, enum: [small, large], default: medium }');
    expectOnly(text, {
      code: 'bad-param-default',
      path: 'params.size.default',
      at: 'medium',
      message: "default must be one of: small, large; got 'medium'",
    });
  });

  test('an enum value of the wrong type', () => {
    const text = withParams('  size: { type: number, enum: [1, big], default: 1 }');
    expectOnly(text, { code: 'bad-param-default', path: 'params.size.enum[1]', at: 'big', message: "enum value 'big' is not a number" });
  });

  test('an unknown parameter type is reported once, not again where the parameter is used', () => {
    const text = withParams('  size: { type: float, default: 1 }').replace('source: a.csv', 'source: "${{ params.size }}"');
    expectOnly(text, {
      code: 'schema',
      path: 'params.size.type',
      at: 'float',
      message: "must be one of: string, number, integer, boolean, got 'float'",
    });
  });

  test('a required parameter that was not given', () => {
    const text = withParams('  lr: { type: number, default: 0.1 }\n  epochs: { type: integer }');
    expectOnly(text, {
      code: 'missing-param',
      path: 'params.epochs',
      at: 'epochs',
      message: "parameter 'epochs' has no default and was not given",
      hint: 'pass --param epochs=<integer> or add a default',
    });
  });

  test('an override that does not parse as the declared type', () => {
    const text = withParams('  lr: { type: number, default: 0.1 }');
    const errors = errorsOf(text, 'p.yaml', { lr: 'abc' });
    assert.deepEqual(errors, [
      {
        file: '<command line>',
        line: 0,
        column: 0,
        path: 'params.lr',
        code: 'bad-param-override',
        message: "--param lr must be a number, got 'abc'",
        hint: 'lr is declared as type number in p.yaml',
      },
    ]);
  });

  test('overrides of each type', () => {
    const text = withParams(
      '  n: { type: integer, default: 1 }\n  on: { type: boolean, default: true }\n  mode: { type: string, enum: [a, b], default: a }',
    );
    const errors = errorsOf(text, 'p.yaml', { n: '1.5', on: 'yes', mode: 'c' });
    assert.deepEqual(
      errors.map((e) => e.message),
      [
        "--param n must be an integer, got '1.5'",
        "--param on must be true or false, got 'yes'",
        "--param mode must be one of: a, b; got 'c'",
      ],
    );
  });

  test('an override of a parameter that does not exist', () => {
    const text = withParams('  lr: { type: number, default: 0.1 }');
    const errors = errorsOf(text, 'p.yaml', { lt: '0.2' });
    assert.deepEqual(
      errors.map((e) => [e.code, e.path, e.message, e.hint]),
      [['unknown-param', 'params.lt', "unknown parameter 'lt' in --param", "did you mean 'lr'? parameters are: lr"]],
    );
  });

  test('an override of a setting the file writes as a literal says how to make it a parameter', () => {
    // The demo pipeline declares seed and model only: `--param lr=…` is the first thing a sweep tries.
    const text = withParams('  seed: { type: integer, default: 1 }');
    const errors = errorsOf(text, 'p.yaml', { lr: '0.2' });
    assert.deepEqual(
      errors.map((e) => [e.code, e.path, e.hint]),
      [
        [
          'unknown-param',
          'params.lr',
          'parameters are: seed; --param sets only declared ones: to vary a stage setting, declare it under params: in p.yaml (e.g. lr: { type: number, default: 0.001 }) and write ${{ params.lr }} in its place',
        ],
      ],
    );
  });
});

describe('many errors at once', () => {
  test('every problem in the file is reported, in file order', () => {
    const text = yaml`
      name: Bad
      params:
        lr: { type: number, default: fast }
      stages:
        ingest:
          uses: ingset
        split:
          uses: split
          needs: [ingest, splt]
          timeout: 5 min
          with:
            table: \${{ stages.ingest.outputs.table }}
            testFraction: 2
        train:
          uses: train
          needs: [split]
          with:
            data: \${{ stages.split.outputs.trian }}
            lr: \${{ params.lr }}
    `;
    const errors = errorsOf(text);
    assert.deepEqual(
      errors.map((e) => [e.code, e.path]),
      [
        ['schema', 'name'],
        ['bad-param-default', 'params.lr.default'],
        ['unknown-kind', 'stages.ingest.uses'],
        ['unknown-need', 'stages.split.needs[1]'],
        ['bad-duration', 'stages.split.timeout'],
        ['with-schema', 'stages.split.with.testFraction'],
        ['unknown-output', 'stages.train.with.data'],
      ],
    );
    for (const e of errors) assert.ok(e.line > 0 && e.column > 0);
    assert.deepEqual(posOf(text, 'splt'), { line: errors[3]!.line, column: errors[3]!.column });
  });

  test('a JSON file reports schema and semantic errors at their positions', () => {
    const text =
      '{\n  "name": "p",\n  "concurrency": -1,\n  "stages": {\n    "ingest": {"uses": "ingest", "with": {"source": 5}},\n    "train": {"uses": "train", "needs": ["ingest"], "with": {"data": "${{ stages.ingest.outputs.tbl }}"}}\n  }\n}\n';
    const errors = errorsOf(text, 'p.json');
    assert.equal(errors.length, 3, JSON.stringify(errors, null, 1));
    assertError(text, errors[0]!, { code: 'schema', path: 'concurrency', at: '-1', message: 'must be an integer ≥ 1, got -1' }, 'p.json');
    assertError(
      text,
      errors[1]!,
      { code: 'with-schema', path: 'stages.ingest.with.source', at: '5}', message: 'must be a string, got 5' },
      'p.json',
    );
    assertError(
      text,
      errors[2]!,
      { code: 'unknown-output', path: 'stages.train.with.data', at: '${{', message: "stage 'ingest' (kind ingest) has no output 'tbl'" },
      'p.json',
    );
  });

  test('a number or true/false where text is wanted says to quote it (labels: [0, 1] is two numbers to YAML)', () => {
    // The hint quotes what was written: 1.0 is the number 1 to YAML, and the text meant is "1.0".
    for (const [value, read] of [
      ['0', '0'],
      ['1.5', '1.5'],
      ['1.0', '1'],
      ['true', 'true'],
    ])
      expectOnly(`name: p\nstages:\n  ingest:\n    uses: ingest\n    with: { source: ${value} }\n`, {
        code: 'with-schema',
        path: 'stages.ingest.with.source',
        at: `${value} }`,
        message: `must be a string, got ${read}`,
        hint: `quote it to give the text: "${value}"`,
      });
  });
});

import { checkSpecText } from './load.ts';
import { registry } from './kinds.testing.ts';
function loadCheck(text: string) {
  const r = checkSpecText(text, 'p.yaml', registry);
  return r.ok ? [] : r.errors;
}

// A stage referenced 10,000 times was asked 10,000 times, each call copying a plugin kind's config to fill its
// defaults: validate of a 1.4 MB pipeline took 7.5 s instead of 1.2 s.
test("a stage kind's absentOutputs is asked once per upstream stage, however often its outputs are referenced", () => {
  let asked = 0;
  const counted: StageKindInfo = {
    kind: 'counted',
    description: 'd',
    codeVersion: 'c1',
    withSchema: { type: 'object' },
    outputs: { n: { type: 'number' }, m: { type: 'number' } },
    absentOutputs: () => (asked++, { names: ['m'], because: 'm is never made here' }),
  };
  const kinds = new Map([...registry.kinds, ['counted', counted]]);
  const refs = Array.from({ length: 50 }, (_, i) => `      r${i}: \${{ stages.up.outputs.n }}`).join('\n');
  const text = `name: p\nstages:\n  up:\n    uses: counted\n  down:\n    uses: counted\n    needs: [up]\n    with:\n${refs}\n      bad: \${{ stages.up.outputs.m }}\n`;
  const r = checkSpecText(text, 'p.yaml', { ...registry, kinds });
  assert.equal(r.ok, false);
  assert.deepEqual(r.ok ? [] : r.errors.map((e) => e.message), ["stage 'up' does not produce 'm' here: m is never made here"]);
  assert.equal(asked, 1);
});
