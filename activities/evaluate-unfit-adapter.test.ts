/**
 * A test row the model cannot take (a token id past its embedding rows: another model's tokenizer beside the weights),
 * through the real activity adapter and the real evaluate stage in its child process: a non-retryable InputError failure
 * naming the row as the pipeline's field (`stages.eval.with.test: row 8`), not a transient failure retried.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { writeTextTable } from '../src/finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../src/models/tiny.testing.ts';
import { exportTinyClassifier } from '../src/serve/tiny-classifier.testing.ts';
import { evaluateStage } from '../src/stages/evaluate.ts';
import { ArtifactStore } from '../src/store/artifact-store.ts';
import { StageCache } from '../src/store/stage-cache.ts';
import type { StageRequest } from '../workflows/types.ts';
import { stageActivity } from './stage-adapter.ts';

const root = mkdtempSync(join(tmpdir(), 'tempered-eval-unfit-adapter-'));
after(() => rmSync(root, { recursive: true, force: true }));

test('a test row the model cannot take fails the evaluate activity as a non-retryable input error naming the row', async () => {
  const store = new ArtifactStore(join(root, 'store'));
  const small = tinyBertDir(join(root, 'small'), 7, { tokenizer: 'tiny', hidden: 32, heads: 4, layers: 1 });
  const exported = await exportTinyClassifier(join(root, 'a'), { modelDir: small });
  // MiniLM's tokenizer (30522 entries) beside weights of 119 rows: 'ꙮ' is [CLS] [UNK] [SEP], 'a great day' is not.
  const miniLm = tinyBertDir(join(root, 'minilm'), 7, TINY_MINILM);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(miniLm, f), join(exported, f));
  const model = await store.putTree(exported);
  const rows = Array.from({ length: 12 }, (_, i) => ({ text: i === 8 ? 'a great day' : 'ꙮ', label: i % 2 ? 'positive' : 'negative' }));
  const table = await store.putFile(writeTextTable(join(root, 'test.arrow'), rows), { mediaType: 'application/vnd.apache.arrow.file' });
  const act = stageActivity(evaluateStage, {
    store,
    cache: new StageCache(join(root, 'cache'), store),
    stateDir: root,
    isolation: { mode: 'process', limits: {} },
    heartbeatEveryMs: 50,
  });
  const request: StageRequest = {
    runId: 'run-1',
    stageId: 'eval',
    kind: 'evaluate',
    config: { model, test: table, threads: 1 },
    baseDir: root,
    specHash: 'spec',
    actor: 'test',
    cacheKey: 'key-1',
    writeCache: true,
  };
  const err = await new MockActivityEnvironment().run(act, request).then(
    () => undefined,
    (e: unknown) => e,
  );
  assert.ok(err instanceof ApplicationFailure, `got ${String(err)}`);
  assert.equal(err.type, 'InputError');
  assert.equal(err.nonRetryable, true);
  const details = err.details?.[0] as { where?: string; hint?: string };
  // Before: 'stages.eval (evaluate.test: row 8)', as if the row were no field of the stage.
  assert.equal(details.where, 'stages.eval.with.test: row 8');
  assert.match(
    err.message,
    /^stages\.eval\.with\.test: row 8: the text is one evaluate\.model cannot take: the text holds token id \d{3,}/,
  );
  assert.match(String(details.hint), /put back the ones trainClassifier wrote/);
});
