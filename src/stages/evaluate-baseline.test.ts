/**
 * A classifier's frozen-feature baseline is scored once for the same base model, train and test rows and settings: the
 * trials of a hyperparameter sweep each ran the evaluate stage, and each embedded every train row with the base model
 * again for the same logistic regression (115 of evaluate's 137 s on the demo's split). Real tiny BERT, real training,
 * the real evaluate stage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportTinyClassifier } from '../serve/tiny-classifier.testing.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { loopbackHub } from '../models/loopback-hub.testing.ts';
import { humanBytes } from '../util/human-bytes.ts';
import { DATA_ROOTS_ENV } from '../data/roots.ts';
import { InputError } from '../errors.ts';
import { evaluateStage } from './evaluate.ts';
import { stageTestbed } from './stage-context.testing.ts';
import type { ArtifactRef } from '../types.ts';

const ARROW = 'application/vnd.apache.arrow.file';

test('the baseline of the same base model, rows and settings is scored once; another seed or test table scores it again', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-baseline-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const testbed = stageTestbed(root, 'w');
  const { store, read } = testbed;
  const modelDir = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const labels = ['negative', 'positive'];
  const trainPath = writeTextTable(join(root, 'train.arrow'), syntheticRows(96, 1));
  const train = await store.putFile(trainPath, { mediaType: ARROW });
  const test1 = await store.putFile(writeTextTable(join(root, 'test.arrow'), syntheticRows(24, 9)), { mediaType: ARROW });
  const test2 = await store.putFile(writeTextTable(join(root, 'test2.arrow'), syntheticRows(24, 10)), { mediaType: ARROW });
  // A trial's fine-tuned model (the baseline does not depend on which: it is the base model's features).
  const trial = async (name: string) => store.putTree(await exportTinyClassifier(join(root, name), { modelDir }));
  const evaluate = async (model: ArtifactRef, test: ArtifactRef, seed = 0) => {
    const messages: string[] = [];
    const ctx = testbed.ctx('evaluate', 'r1', (p) => void (p.message && messages.push(p.message)));
    const out = await evaluateStage.run({ model, test, baseline: { model: modelDir, train, seed }, threads: 1 }, ctx);
    const baselineModel = (read(out.report) as { baseline_model?: { source: string; revision: string } }).baseline_model;
    return { baseline: read(out.metrics).baseline as Record<string, unknown>, baselineModel, f1: out.f1_macro, messages };
  };
  const embedded = (messages: string[]) => messages.some((m) => /frozen-feature baseline: base model embeddings/.test(m));

  const [a, b] = [await trial('a'), await trial('b')];
  const first = await evaluate(a, test1);
  assert.ok(embedded(first.messages), first.messages.join('\n'));
  // A memo last used 40 days ago: the hit marks it used now, so `store gc` (baseline-memos.ts) keeps it.
  const [firstMemo] = readdirSync(join(root, 'w', 'baselines')).map((n) => join(root, 'w', 'baselines', n));
  const longAgo = new Date(Date.now() - 40 * 86_400_000);
  utimesSync(firstMemo!, longAgo, longAgo);
  const second = await evaluate(b, test1);
  assert.ok(statSync(firstMemo!).mtimeMs > Date.now() - 3_600_000, 'the hit left the memo looking unused');
  assert.ok(!embedded(second.messages), `the second trial embedded the train rows again:\n${second.messages.join('\n')}`);
  assert.ok(second.messages.some((m) => /frozen-feature baseline: the same as scored before/.test(m)));
  assert.deepEqual(second.baseline, first.baseline);
  assert.equal(typeof second.f1, 'number');
  // The report names the baseline's model as evaluate resolved it, scored or from the memo: the scores alone do not.
  assert.ok(first.baselineModel?.source.includes(modelDir), JSON.stringify(first.baselineModel));
  assert.equal(first.baselineModel?.revision, 'local');
  assert.deepEqual(second.baselineModel, first.baselineModel);

  // What the baseline depends on changes: it is scored again, and kept beside the first.
  assert.ok(embedded((await evaluate(a, test1, 5)).messages));
  assert.ok(embedded((await evaluate(a, test2)).messages));
  const kept = readdirSync(join(root, 'w', 'baselines'));
  assert.equal(kept.length, 3, kept.join(', '));

  // A kept file cut short is a miss, scored again and replaced, never an error.
  const memo = join(root, 'w', 'baselines', kept[0]!);
  writeFileSync(memo, '{"acc');
  const again = [await evaluate(b, test1), await evaluate(b, test1, 5), await evaluate(b, test2)];
  assert.equal(again.filter((e) => embedded(e.messages)).length, 1);
  assert.deepEqual(JSON.parse(readFileSync(memo, 'utf8')).labels, labels);

  // A worker that lists its data roots reads a local base model only under them (src/stages/model-roots.test.ts), its
  // memo of that model's scores too: the refusal names the field, not the scores of another team's model.
  const saved = process.env[DATA_ROOTS_ENV];
  const data = join(root, 'data');
  mkdirSync(data);
  process.env[DATA_ROOTS_ENV] = data;
  try {
    await assert.rejects(
      evaluate(b, test1),
      (e: unknown) =>
        e instanceof InputError &&
        e.where === 'evaluate.baseline.model' &&
        e.message.includes(`resolves to ${realpathSync(modelDir)}, which is outside the allowed data roots`),
    );
  } finally {
    if (saved === undefined) delete process.env[DATA_ROOTS_ENV];
    else process.env[DATA_ROOTS_ENV] = saved;
  }
});

test('a baseline that cannot be kept (no room, no folder) is reported, and the evaluation still ends with it', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-baseline-nowrite-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const testbed = stageTestbed(root, 'w');
  const modelDir = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const train = await testbed.store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(48, 1)), { mediaType: ARROW });
  const test1 = await testbed.store.putFile(writeTextTable(join(root, 'test.arrow'), syntheticRows(16, 9)), { mediaType: ARROW });
  const model = await testbed.store.putTree(await exportTinyClassifier(join(root, 'a'), { modelDir }));
  // A file where the memo's folder goes: as root no permission stops a write, but this does, on any disk.
  writeFileSync(join(root, 'w', 'baselines'), '');
  const messages: string[] = [];
  const ctx = testbed.ctx('evaluate', 'r1', (p) => void (p.message && messages.push(p.message)));
  const out = await evaluateStage.run({ model, test: test1, baseline: { model: modelDir, train, seed: 0 }, threads: 1 }, ctx);
  assert.equal(typeof (testbed.read(out.metrics).baseline as Record<string, unknown>).accuracy, 'number');
  assert.ok(
    messages.some((m) => /frozen-feature baseline not kept for the next evaluation: .*baselines/.test(m)),
    messages.join('\n'),
  );
});

// The base model of a first run (an hf: source of hundreds of MB) downloaded for minutes with nothing in the stage log.
test('a base model not in the cache yet is downloaded saying so in the stage log and progress, and nothing once it is', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-download-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const testbed = stageTestbed(root, 'w');
  const { store, logs } = testbed;
  const modelDir = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const { url, files } = await loopbackHub(t, modelDir, 'org/tiny-bert');
  const endpoint = process.env.HF_ENDPOINT;
  process.env.HF_ENDPOINT = url;
  t.after(() => (endpoint === undefined ? delete process.env.HF_ENDPOINT : (process.env.HF_ENDPOINT = endpoint)));

  const train = await store.putFile(writeTextTable(join(root, 'train.arrow'), syntheticRows(32, 1)), { mediaType: ARROW });
  const test1 = await store.putFile(writeTextTable(join(root, 'test.arrow'), syntheticRows(8, 9)), { mediaType: ARROW });
  const model = await store.putTree(await exportTinyClassifier(join(root, 'a'), { modelDir }));
  const evaluate = async (seed: number) => {
    const messages: string[] = [];
    logs.length = 0;
    const ctx = testbed.ctx('evaluate', 'r1', (p) => void (p.message && messages.push(p.message)));
    await evaluateStage.run({ model, test: test1, baseline: { model: 'hf:org/tiny-bert', train, seed }, threads: 1 }, ctx);
    return { messages, logs: [...logs] };
  };
  const first = await evaluate(0);
  // Each file as it starts (the tiny model's in a few milliseconds: no 5 s mark reached), its size as people read it.
  assert.deepEqual(
    first.logs.filter((l) => l.includes('downloading')),
    ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors'].map(
      (f) => `downloading hf:org/tiny-bert ${f} (${humanBytes(files.get(f)!.length)})`,
    ),
  );
  assert.ok(
    first.messages.some((m) => m.startsWith('base model: downloading hf:org/tiny-bert model.safetensors')),
    first.messages.join('\n'),
  );
  // Another seed scores the baseline again, from the cached download.
  const again = await evaluate(1);
  assert.deepEqual(
    again.logs.filter((l) => l.includes('downloading')),
    [],
  );
});
