/**
 * "With what": the train stage's audit record says where and with what the model was trained (device, threads,
 * onnxruntime's version, the machine's CPUs, a resume's step), which its config does not say and its bytes may depend
 * on (16 threads gave other bytes than 1, 2 or 8: README, Reproducing a model). Real tiny model, real onnxruntime.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { env } from 'onnxruntime-node';
import { tinyGpt2Dir } from '../models/tiny.testing.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { trainStage } from './train.ts';
import { tinyLoraTrainConfig, writeRepeatTable } from './train-config.testing.ts';
import { testStageContext } from './stage-context.testing.ts';

test("train's audit record names the device, threads, onnxruntime and CPUs it trained with", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'train-audit-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const store = new ArtifactStore(join(root, 'store'));
  const model = tinyGpt2Dir(join(root, 'gpt2'), 5, { hidden: 32, layers: 2, maxPositions: 64 });
  const train = await store.putFile(writeRepeatTable(join(root, 'lm.arrow')), { mediaType: 'application/vnd.apache.arrow.file' });
  const cfg = tinyLoraTrainConfig(model, train, { maxSteps: 2, threads: 1 });
  const outputs = await trainStage.run(cfg, testStageContext({ root, store, baseDir: root, cacheKey: 'a'.repeat(64) }));
  const audit = await trainStage.audit!(cfg, outputs, { store });
  const runtime = audit.details?.runtime as Record<string, unknown>;
  assert.equal(audit.details?.device, 'cpu');
  assert.equal(runtime.onnxruntime, env.versions.node);
  assert.equal(runtime.threads, 1);
  assert.equal(runtime.cpus, availableParallelism());
  assert.equal(runtime.platform, `${process.platform}-${process.arch}`);
  // Not resumed: no step to name.
  assert.equal('resumedFromStep' in audit.details!, false);
  // Unset, the thread count is onnxruntime's choice: said as such, not as a number it did not use.
  const { threads: _, ...unset } = cfg;
  const defaults = await trainStage.run(unset, testStageContext({ root, store, baseDir: root, cacheKey: 'b'.repeat(64) }));
  assert.equal(((await trainStage.audit!(unset, defaults, { store })).details?.runtime as Record<string, unknown>).threads, null);
});
