/**
 * The train stage's history output (step, loss, lr, …: what the dashboard's curves and a registered model
 * version show) of a stage stopped after a checkpoint and resumed on another worker from the shared store is
 * byte for byte that of an uninterrupted run: the checkpoint carries the steps before it. Real tiny models,
 * real onnxruntime training, a shared folder as the store's remote.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter, columnValues, readArrowBatches } from '../data/arrow-io.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir, tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { FolderBackend } from '../store/folder-backend.ts';
import type { ArtifactRef } from '../types.ts';
import { trainStage, type TrainConfig } from './train.ts';
import { tinyClassifierTrainConfig, tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import { testStageContext } from './stage-context.testing.ts';
import type { StageContext } from './types.ts';

const dir = mkdtempSync(join(tmpdir(), 'tempered-train-history-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const remote = new FolderBackend(join(dir, 'shared'));

/** A worker's state folder and store; `shared`: with the common remote. */
function home(name: string, shared: boolean) {
  const root = join(dir, name);
  return { root, store: new ArtifactStore(join(root, 'store'), { remote: shared ? remote : undefined }) };
}

function ctx(h: ReturnType<typeof home>, cacheKey: string, signal: AbortSignal, onProgress = (_: unknown) => {}): StageContext {
  return testStageContext({ ...h, baseDir: dir, cacheKey, signal, progress: onProgress });
}

async function historyColumns(store: ArtifactStore, ref: ArtifactRef): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for await (const b of readArrowBatches(await store.localPath(ref.uri)))
    for (const f of b.schema.fields) (out[f.name] ??= []).push(...columnValues(b, f.name));
  return out;
}

async function stoppedResumedAndWhole(
  name: string,
  table: string,
  cfgOf: (train: ArtifactRef) => TrainConfig,
  stopAt: number,
  steps: number,
) {
  const a = home(`${name}-a`, true);
  const cfg = cfgOf(await a.store.putFile(table, { mediaType: 'application/vnd.apache.arrow.file' }));
  const key = name.padEnd(64, '0');
  // Worker A: stopped (cancelled, or its attempt timed out) right after a mid-run checkpoint was reported.
  const stop = new AbortController();
  await assert.rejects(
    trainStage.run(
      cfg,
      ctx(a, key, stop.signal, (p) => {
        if ((p as { resume?: { latest?: string } }).resume?.latest?.endsWith(`step-${String(stopAt).padStart(8, '0')}`)) stop.abort();
      }),
    ),
    (e: unknown) => (e as Error).name === 'AbortError',
  );
  // Worker B: nothing local; the same work resumes from A's checkpoint in the shared store.
  const b = home(`${name}-b`, true);
  const resumed = await trainStage.run(cfg, ctx(b, key, new AbortController().signal));
  assert.equal((resumed.baseModel as { resumedFromStep: number | null }).resumedFromStep, stopAt);
  // An uninterrupted run on a third, local-only home.
  const c = home(`${name}-c`, false);
  await c.store.putFile(table, { mediaType: 'application/vnd.apache.arrow.file' });
  const whole = await trainStage.run(cfg, ctx(c, name.padEnd(64, '1'), new AbortController().signal));
  assert.equal((whole.baseModel as { resumedFromStep: number | null }).resumedFromStep, null);

  const hr = resumed.history as ArtifactRef,
    hw = whole.history as ArtifactRef;
  const cols = await historyColumns(b.store, hr);
  assert.deepEqual(
    cols.step,
    Array.from({ length: steps }, (_, i) => i + 1),
    'the resumed run records every step, those before the checkpoint included',
  );
  assert.deepEqual(cols, await historyColumns(c.store, hw));
  assert.equal(hr.sha256, hw.sha256, 'the history artifact is byte for byte the uninterrupted run’s');
  assert.equal((resumed.model as ArtifactRef).sha256, (whole.model as ArtifactRef).sha256, 'and so is the model');
}

test('causal-lm: a stage stopped after a checkpoint and resumed on another worker has the uninterrupted history artifact', async () => {
  const model = tinyGpt2Dir(join(dir, 'gpt2'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const table = join(dir, 'lm.arrow');
  writeRepeatTable(table);
  await stoppedResumedAndWhole('causal', table, (train) => tinyLoraTrainConfig(model, train, { checkpointEvery: 2, seed: 3 }), 4, 6);
});

test('classification: a stage stopped after a checkpoint and resumed on another worker has the uninterrupted history artifact', async () => {
  const model = tinyBertDir(join(dir, 'bert'), 7, TINY_MINILM);
  const table = writeTextTable(join(dir, 'cls.arrow'), syntheticRows(80, 5));
  await stoppedResumedAndWhole(
    'classifier',
    table,
    (train) => tinyClassifierTrainConfig(model, train, { task: 'classification', maxSteps: 10, checkpointEvery: 3, seed: 3 }),
    6,
    10,
  );
});

test('causal-lm: rows cut to fit maxLength are a warnings output (shown by status), not only a worker log line at info level', async () => {
  const model = tinyGpt2Dir(join(dir, 'gpt2-warn'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const table = join(dir, 'lm-long.arrow');
  const w = new ArrowTableWriter(table, { prompt: 'utf8', response: 'utf8' });
  const prompts = Array.from({ length: 16 }, (_, i) => (i < 3 ? `a long prompt ${'word '.repeat(40)}${i}` : `short ${i}`));
  w.writeBatch({ prompt: prompts, response: prompts.map((_, i) => String(i)) });
  w.close();
  const h = home('warnings', false);
  const cfg = {
    model,
    task: 'causal-lm',
    train: await h.store.putFile(table, { mediaType: 'application/vnd.apache.arrow.file' }),
    method: 'lora',
    lora: { r: 2, alpha: 4 },
    lr: 1e-2,
    maxSteps: 1,
    batchSize: 8,
    maxLength: 48,
    threads: 1,
    seed: 3,
  } as TrainConfig;
  const out = await trainStage.run(cfg, ctx(h, 'warnings'.padEnd(64, '0'), new AbortController().signal));
  assert.match(String(out.warnings), /^3 of 16 rows of the train table are longer than maxLength 48: cut to fit$/);
  // Nothing cut: no such output.
  const short = join(dir, 'lm-short.arrow');
  const s = new ArrowTableWriter(short, { prompt: 'utf8', response: 'utf8' });
  s.writeBatch({ prompt: prompts.slice(3), response: prompts.slice(3).map((_, i) => String(i)) });
  s.close();
  const clean = await trainStage.run(
    { ...cfg, train: await h.store.putFile(short, { mediaType: 'application/vnd.apache.arrow.file' }) },
    ctx(h, 'warnings'.padEnd(64, '1'), new AbortController().signal),
  );
  assert.equal(clean.warnings, undefined);
});
