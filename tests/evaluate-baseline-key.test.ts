/**
 * An evaluate stage with a baseline is looked up under the files its baseline model source resolves to, as a train
 * stage is under its model's: the baseline was in the key only as the source string, so a local baseline folder whose
 * weights were exported again reused an evaluation scored with the old baseline. Real tiny BERT folder, real stage
 * cache and the lookup the workflow's cache-lookup activity runs.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MockActivityEnvironment } from '@temporalio/testing';
import { lookupStage, type StageLookup } from '../activities/cache.ts';
import { TINY_MINILM, tinyBertDir } from '../src/models/tiny.testing.ts';
import { evaluateStage } from '../src/stages/evaluate.ts';
import type { AnyStageKind } from '../src/stages/types.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { StageCache } from '../src/store/stage-cache.ts';

test("a local baseline model folder with other weights misses evaluate's cache; the same bytes written again hit it", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-baseline-key-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const stateDir = join(root, 'w');
  const store = new ArtifactStore(join(stateDir, 'store'));
  const cache = new StageCache(join(stateDir, 'cache'), store);
  const kind = evaluateStage as AnyStageKind;
  tinyBertDir(join(root, 'base'), 7, TINY_MINILM);
  const model = await store.putJson({ model: 'a fine-tune' });
  const testTable = await store.putJson({ rows: 'test' });
  const train = await store.putJson({ rows: 'train' });
  // Relative to the pipeline file's folder, as a spec names it.
  const config = { model, test: testTable, baseline: { model: 'base', train }, threads: 1 };
  // Inside an activity, as the workflow's cache lookup runs it (it records a hit or miss metric there).
  const lookup = (): Promise<StageLookup> =>
    new MockActivityEnvironment().run(() => lookupStage(kind, cache, stateDir, { kind: 'evaluate', config, baseDir: root }));

  const first = await lookup();
  assert.equal(first.hit, undefined);
  const report = await store.putJson({ baseline: { accuracy: 0.5 } });
  await cache.put({
    key: first.key,
    kind: 'evaluate',
    outputs: { report },
    producedBy: { runId: 'r1', stageId: 'evaluate' },
    createdAt: new Date().toISOString(),
  });
  assert.deepEqual((await lookup()).hit?.outputs, { report });

  // The folder exported again with other weights: the evaluation recorded was scored against the old baseline.
  tinyBertDir(join(root, 'base'), 8, TINY_MINILM);
  const changed = await lookup();
  assert.notEqual(changed.key, first.key);
  assert.equal(changed.hit, undefined, 'the evaluation scored against the old baseline weights was reused');

  // The key is of the bytes, not of when they were written.
  tinyBertDir(join(root, 'base'), 7, TINY_MINILM);
  assert.deepEqual((await lookup()).hit?.outputs, { report });

  // Without a baseline nothing is resolved and nothing added: those keys are what they were.
  assert.deepEqual(await kind.externalInputs!({ model, test: testTable }, { baseDir: root, stateDir }), []);
});
