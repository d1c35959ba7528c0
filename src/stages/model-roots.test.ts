/**
 * A pipeline's local base model is a path its submitter names (relative ones against RunOptions.baseDir, their own
 * folder): on a worker that lists its data roots, a local model folder or file must lie under them as ingest's inputs
 * do, or a submitter could train on any model-shaped folder of the worker (another team's under TEMPERED_HOME/serving)
 * and get its weights into the shared store. Real folders, the stage kinds' own resolution (train's run and cache key,
 * evaluate's baseline key); unset, as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { DATA_ROOTS_ENV } from '../data/roots.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { evaluateStage } from './evaluate.ts';
import { stageWhere } from './stage-where.ts';
import { testStageContext } from './stage-context.testing.ts';
import { trainStage } from './train.ts';

function modelFolder(dir: string, weights = 'weights'): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), '{"model_type":"bert"}\n');
  writeFileSync(join(dir, 'model.safetensors'), weights);
  return dir;
}

/** `TEMPERED_DATA_ROOTS` (and TEMPERED_HOME) as the worker process has them, for the length of `body`. */
async function asWorker(env: Record<string, string | undefined>, body: () => Promise<void>): Promise<void> {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (vars: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(vars)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  set(env);
  try {
    await body();
  } finally {
    set(saved);
  }
}

test('a worker with TEMPERED_DATA_ROOTS set reads a local base model only under those folders', async () => {
  const top = realpathSync(mkdtempSync(join(tmpdir(), 'model-roots-')));
  const allowed = join(top, 'data');
  const submitted = join(top, 'submitter');
  const state = join(top, 'state');
  const served = modelFolder(join(state, 'serving', 'other-team', 'model'), 'their weights');
  modelFolder(join(submitted, 'model'));
  const own = modelFolder(join(allowed, 'models', 'base'));
  // A folder under the roots that leads out: itself a link, or its weights one.
  symlinkSync(served, join(allowed, 'models', 'linked'));
  const borrowed = join(allowed, 'models', 'borrowed');
  mkdirSync(borrowed);
  writeFileSync(join(borrowed, 'config.json'), '{"model_type":"bert"}\n');
  symlinkSync(join(served, 'model.safetensors'), join(borrowed, 'model.safetensors'));
  // A GGUF model folder whose one file is a link to a GGUF file outside (links to .gguf files are allowed anywhere).
  writeFileSync(join(state, 'serving', 'other-team', 'model.gguf'), 'GGUF');
  mkdirSync(join(allowed, 'models', 'gguf'));
  symlinkSync(join(state, 'serving', 'other-team', 'model.gguf'), join(allowed, 'models', 'gguf', 'model.gguf'));
  // A folder of safetensors layout whose config.json names a GGUF file beside it (the weights are read from that file,
  // as in the model cache's GGUF folders), the file a link to one outside.
  const named = join(allowed, 'models', 'named-gguf');
  modelFolder(named);
  writeFileSync(join(named, 'config.json'), '{"model_type":"llama","gguf_file":"w.gguf"}\n');
  symlinkSync(join(state, 'serving', 'other-team', 'model.gguf'), join(named, 'w.gguf'));
  const store = new ArtifactStore(join(state, 'store'));
  const ctx = () => testStageContext({ root: state, store, baseDir: submitted, workDir: mkdtempSync(join(top, 'work-')) });
  const keyCtx = { baseDir: submitted, stateDir: state };
  const refusal = (field: string, real: string) => (e: unknown) => {
    assert.ok(e instanceof InputError, String(e));
    assert.equal(e.where, field);
    assert.ok(e.message.includes(`resolves to ${real}, which is outside the allowed data roots (${allowed}`), e.message);
    assert.match(e.message, /reads local inputs only from the folders TEMPERED_DATA_ROOTS names/);
    assert.match(e.hint ?? '', /add a folder that holds .* to TEMPERED_DATA_ROOTS on the workers .* or use an hf: or pypi: model source/);
    return true;
  };
  const train = (model: string) => ({ model, train: { uri: 'artifact://sha256/x', sha256: 'x' } }) as never;
  const baseline = (model: string) => ({ model: {}, test: {}, baseline: { model } }) as never;
  try {
    await asWorker({ [DATA_ROOTS_ENV]: allowed, TEMPERED_HOME: state }, async () => {
      // The submitter's folder (a relative path) and the worker's state folder are not roots.
      await assert.rejects(trainStage.externalInputs!(train('model'), keyCtx), refusal('train.model', join(submitted, 'model')));
      await assert.rejects(trainStage.run(train('model'), ctx()), refusal('train.model', join(submitted, 'model')));
      await assert.rejects(trainStage.externalInputs!(train(served), keyCtx), refusal('train.model', served));
      await assert.rejects(trainStage.run(train(served), ctx()), refusal('train.model', served));
      await assert.rejects(trainStage.run(train(`file:${served}`), ctx()), refusal('train.model', served));
      await assert.rejects(evaluateStage.externalInputs!(baseline(served), keyCtx), refusal('evaluate.baseline.model', served));
      // A path outside that does not exist is refused the same way, folder, onnx: or gguf:, so that the answer does not
      // tell whether a path outside the roots exists (it said "not a directory" for one and "outside" for the other).
      const missing = join(state, 'serving', 'no-such-model');
      await assert.rejects(trainStage.run(train(missing), ctx()), refusal('train.model', missing));
      await assert.rejects(trainStage.run(train(`onnx:${missing}.onnx`), ctx()), refusal('train.model', `${missing}.onnx`));
      await assert.rejects(trainStage.run(train(`gguf:${missing}.gguf`), ctx()), refusal('train.model', `${missing}.gguf`));
      // One missing under the roots is still "not found".
      await assert.rejects(
        trainStage.run(train(join(allowed, 'models', 'none')), ctx()),
        (e: unknown) => e instanceof InputError && /not a directory/.test(e.message),
      );
      // Links are judged by where they lead.
      await assert.rejects(trainStage.run(train(join(allowed, 'models', 'linked')), ctx()), refusal('train.model', served));
      await assert.rejects(
        trainStage.externalInputs!(train(borrowed), keyCtx),
        (e: unknown) =>
          e instanceof InputError && /model\.safetensors is a symlink to .*serving.*, outside the model folder/.test(e.message),
      );
      const ggufLink = (e: unknown) =>
        e instanceof InputError && /\.gguf is a symlink to .*serving.*model\.gguf, outside the model folder/.test(e.message);
      await assert.rejects(trainStage.externalInputs!(train(join(allowed, 'models', 'gguf')), keyCtx), ggufLink);
      await assert.rejects(trainStage.run(train(named), ctx()), ggufLink);
      await assert.rejects(
        trainStage.run(train(`gguf:${join(allowed, 'models', 'gguf', 'model.gguf')}`), ctx()),
        refusal('train.model', join(state, 'serving', 'other-team', 'model.gguf')),
      );
      // The stage's failure names the field in the pipeline.
      assert.equal(stageWhere('train.model', { id: 'tune', kind: 'train', withSchema: trainStage.withSchema }), 'stages.tune.with.model');
      assert.equal(
        stageWhere('evaluate.baseline.model', { id: 'eval', kind: 'evaluate', withSchema: evaluateStage.withSchema }),
        'stages.eval.with.baseline.model',
      );
      // What the operator listed is read, whichever folder the pipeline file came from.
      assert.equal((await trainStage.externalInputs!(train(own), keyCtx)).length, 1);
      assert.equal((await evaluateStage.externalInputs!(baseline(own), keyCtx)).length, 1);
    });
    // Unset (one machine: the pipeline folders are its user's), a model folder is read wherever it lies, as before.
    await asWorker({ [DATA_ROOTS_ENV]: undefined, TEMPERED_HOME: state }, async () => {
      assert.equal((await trainStage.externalInputs!(train('model'), keyCtx)).length, 1);
      assert.equal((await trainStage.externalInputs!(train(served), keyCtx)).length, 1);
      assert.equal((await evaluateStage.externalInputs!(baseline(served), keyCtx)).length, 1);
    });
  } finally {
    rmSync(top, { recursive: true, force: true });
  }
});
