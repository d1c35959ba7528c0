/**
 * A registered version carries the validation scores its training ended with (val_f1_macro, val_accuracy, val_loss;
 * a causal LM's val_loss only), beside evaluate's test metrics: what the trials of a sweep are chosen on, shown by
 * `models show`, `models diff` and the dashboard's Models page. Real tiny models trained by the train stage on onnxruntime, registered by the
 * register stage into a real SQLite registry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { columnValues, readArrowBatches } from '../src/data/arrow-io.ts';
import { syntheticRows, writeTextTable } from '../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir, tinyGpt2Dir } from '../src/models/tiny.testing.ts';
import { openRegistry } from '../src/registry/registry.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { MEDIA, type ArtifactRef } from '../src/types.ts';
import { runCliInProcess as runCli } from './helpers/cli.ts';
import { registerStage } from '../src/stages/register.ts';
import { trainStage, type TrainConfig } from '../src/stages/train.ts';
import { tinyClassifierTrainConfig, tinyLoraTrainConfig, writeRepeatTable } from '../src/stages/train-config.testing.ts';
import { testStageContext } from '../src/stages/stage-context.testing.ts';
import { exportedValidation } from '../src/finetune/loop.ts';
import { compareTrialRuns } from '../src/eval/trial-artifacts.ts';
import { statePaths } from '../src/state-paths.ts';
import { listModelViews, UiDatabases } from '../ui/data.ts';

const root = mkdtempSync(join(tmpdir(), 'tempered-register-val-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));
const store = new ArtifactStore(join(root, 'store'));
const ctx = (stageId: string, runId: string, cacheKey?: string) =>
  testStageContext({ root, store, baseDir: root, stageId, runId, ...(cacheKey ? { cacheKey } : {}) });

/** The last value of each validation column of a train stage's history (NaN where a step did not evaluate). */
async function lastValidation(history: ArtifactRef): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for await (const b of readArrowBatches(await store.localPath(history.uri)))
    for (const col of ['val_f1_macro', 'val_accuracy', 'val_loss'])
      for (const x of columnValues(b, col) as number[]) if (!Number.isNaN(x)) out[col] = x;
  return out;
}

async function trainAndRegister(name: string, runId: string, cfg: TrainConfig, metrics: Record<string, number>) {
  const trained = await trainStage.run(cfg, ctx('train', runId, runId.padEnd(64, '0')));
  const registered = await registerStage.run(
    { name, model: trained.model as ArtifactRef, metrics: await store.putJson(metrics) },
    ctx('register', runId),
  );
  return { trained, validation: await lastValidation(trained.history as ArtifactRef), version: registered.version as number };
}

test("a classifier's version carries its training's final validation scores beside evaluate's test metrics; models show and diff list them", async () => {
  const model = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const table = (file: string, n: number, seed: number) =>
    store.putFile(writeTextTable(join(root, file), syntheticRows(n, seed)), { mediaType: MEDIA.arrow });
  const [train, validation] = [await table('train.arrow', 80, 5), await table('validation.arrow', 24, 6)];
  const cfg = (lr: number) => tinyClassifierTrainConfig(model, train, { lr, validation, evalEvery: 3, seed: 3 });
  const a = await trainAndRegister('cls', 'run-a', cfg(1e-2), { f1_macro: 0.5, accuracy: 0.6, loss: 0.7 });
  const b = await trainAndRegister('cls', 'run-b', cfg(3e-2), { f1_macro: 0.55, accuracy: 0.65, loss: 0.6 });
  assert.deepEqual(Object.keys(a.validation).sort(), ['val_accuracy', 'val_f1_macro', 'val_loss']);

  const reg = await openRegistry(join(root, 'registry.db'));
  try {
    const v = await reg.getVersion('cls', a.version);
    // Step 8's evaluation, the last: what the train stage's history (and runs --compare) ends with.
    for (const [k, x] of Object.entries(a.validation)) assert.equal(v.metrics[k], x, k);
    assert.equal(v.metrics.f1_macro, 0.5, "evaluate's test metrics keep their names");
    assert.equal(v.metrics.loss, 0.7);
  } finally {
    await reg.close();
  }

  const env = { TEMPERED_HOME: root };
  const show = await runCli(['models', 'show', `cls@${a.version}`], env);
  assert.equal(show.code, 0, show.stderr);
  assert.match(show.stdout, new RegExp(`\\n  val_f1_macro +${a.validation.val_f1_macro!.toFixed(4)}\\n`));
  assert.match(
    show.stdout,
    /val_\*: the exported weights' on the validation rows \(early stopping's best step, else the last evaluation\)/,
  );
  const diff = await runCli(['models', 'diff', 'cls', String(a.version), String(b.version)], env);
  assert.equal(diff.code, 0, diff.stderr);
  assert.match(diff.stdout, new RegExp(`\\n  val_loss +${a.validation.val_loss!.toFixed(4)} → ${b.validation.val_loss!.toFixed(4)}  \\(`));

  // A promotion by hand can be gated on them.
  const promote = await runCli(['models', 'promote', `cls@${a.version}`, '--gate', `val_f1_macro >= ${a.validation.val_f1_macro}`], env);
  assert.equal(promote.code, 0, promote.stderr);
  assert.match(promote.stdout, /gate passed/);
  // The Models page's rows: a column for the validation F1 and loss beside the test metrics.
  const dbs = new UiDatabases(statePaths(root, {}));
  try {
    const row = (await listModelViews(dbs)).find((m) => m.name === 'cls')!.versions.find((r) => r.version === a.version)!;
    assert.equal(row.metrics.val_f1_macro, a.validation.val_f1_macro);
    assert.equal(row.metrics.val_loss, a.validation.val_loss);
  } finally {
    await dbs.close();
  }
});

test("runs --compare and the dashboard's trials give an early-stopped run its exported model's validation scores, as its version has them", async () => {
  const model = tinyBertDir(join(root, 'bert-es'), 7, TINY_MINILM);
  const table = (file: string, n: number, seed: number) =>
    store.putFile(writeTextTable(join(root, file), syntheticRows(n, seed)), { mediaType: MEDIA.arrow });
  const [train, validation] = [await table('train-es.arrow', 80, 5), await table('validation-es.arrow', 24, 6)];
  const cfg = tinyClassifierTrainConfig(model, train, {
    validation,
    evalEvery: 1,
    seed: 3,
    earlyStopping: { metric: 'loss', patience: 2 },
  });
  const es = await trainAndRegister('cls-es', 'run-es', cfg, { f1_macro: 0.5 });
  const reg = await openRegistry(join(root, 'registry.db'));
  const registered = await reg.getVersion('cls-es', es.version).finally(() => reg.close());
  // Stopped at step 6 with step 4's weights: the history's last evaluation is of weights that were not exported.
  assert.equal(es.trained.steps, 6);
  assert.notEqual(registered.metrics.val_loss, es.validation.val_loss);

  const stages = [{ id: 'train', uses: 'train', state: 'succeeded', outputs: es.trained }];
  const cmp = await compareTrialRuns(store, [{ runId: 'run-es', state: 'succeeded', params: {}, stages }]);
  const rows = Object.fromEntries(cmp.rows.map((r) => [r.name, r.values[0]]));
  for (const col of ['val_f1_macro', 'val_accuracy', 'val_loss'])
    assert.equal(rows[`train.${col}`], registered.metrics[col], `train.${col}: the registered version's ${col}`);
});

test('the validation scores a manifest records are those of the exported weights: early stopping best step, else the last evaluation', () => {
  const val = (loss: number) => ({ loss, accuracy: 1 - loss, f1_macro: 1 - loss });
  const history = [1, 2, 3, 4].map((step) => ({ step, ...(step % 2 === 0 ? { val: val(step / 10) } : {}) }));
  assert.deepEqual(exportedValidation(history), { step: 4, ...val(0.4) });
  assert.deepEqual(exportedValidation(history, 2), { step: 2, ...val(0.2) });
  assert.equal(exportedValidation(history.slice(0, 1)), undefined);
});

test("a causal LM's version carries its final validation loss (its only validation score)", async () => {
  const model = tinyGpt2Dir(join(root, 'gpt2'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const rows = await store.putFile(writeRepeatTable(join(root, 'lm.arrow')), { mediaType: MEDIA.arrow });
  const cfg = tinyLoraTrainConfig(model, rows, { validation: rows, evalEvery: 4, checkpointEvery: 0, seed: 3 });
  const lm = await trainAndRegister('lm', 'run-lm', cfg, { loss: 2.5, perplexity: 12 });
  assert.deepEqual(Object.keys(lm.validation), ['val_loss'], 'the history has the evaluations too (steps 4 and 6)');
  const reg = await openRegistry(join(root, 'registry.db'));
  try {
    const v = await reg.getVersion('lm', lm.version);
    assert.equal(v.metrics.val_loss, lm.validation.val_loss);
    assert.equal(v.metrics.val_accuracy, undefined);
    assert.equal(v.metrics.loss, 2.5);
  } finally {
    await reg.close();
  }
});
