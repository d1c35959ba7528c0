/**
 * The train stage's progress at a step that evaluated carries the validation loss, as the history does: a causal LM's
 * step was reported before its evaluation ran, so `status` and `submit --wait` showed no val_loss at it. Real tiny
 * GPT-2, real onnxruntime training.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { progressText } from '../cli/format.ts';
import { tinyGpt2Dir } from '../src/models/tiny.testing.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { trainStage } from '../src/stages/train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from '../src/stages/train-config.testing.ts';
import { testStageContext } from '../src/stages/stage-context.testing.ts';

test("causal-lm: the progress of a step that evaluated has its val_loss, once per step, and status's line shows it", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'tempered-train-progress-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const store = new ArtifactStore(join(root, 'store'));
  const table = await store.putFile(writeRepeatTable(join(root, 'lm.arrow')), { mediaType: 'application/vnd.apache.arrow.file' });
  const model = tinyGpt2Dir(join(root, 'gpt2'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const steps: { step: number; metrics: Record<string, number>; message: string }[] = [];
  const ctx = testStageContext({
    root,
    store,
    baseDir: root,
    cacheKey: 'p'.repeat(64),
    signal: new AbortController().signal,
    progress: (p: { message?: string; metrics?: Record<string, number> }) => {
      if (p.metrics?.step !== undefined) steps.push({ step: p.metrics.step, metrics: p.metrics, message: p.message ?? '' });
    },
  });
  const out = await trainStage.run(
    tinyLoraTrainConfig(model, table, { validation: table, evalEvery: 2, checkpointEvery: 0, stepsPerRun: 6 }),
    ctx,
  );
  assert.ok(out.history);
  // Each step once (progress points keep the first of a step), the evaluated ones (2, 4, 6) with their validation loss.
  assert.deepEqual(
    steps.map((s) => s.step),
    [1, 2, 3, 4, 5, 6],
  );
  assert.deepEqual(
    steps.filter((s) => s.metrics.val_loss !== undefined).map((s) => s.step),
    [2, 4, 6],
  );
  // A causal LM's validation is its loss: no accuracy or F1 key, which status would show as a number.
  assert.ok(steps.every((s) => !('val_accuracy' in s.metrics) && !('val_f1_macro' in s.metrics)));
  const line = progressText({ progress: steps[1] } as unknown as Parameters<typeof progressText>[0]);
  assert.match(line, /^step 2\/6 epoch \d+ loss=\S+ lr=\S+ .*val_loss=\d/);
});
