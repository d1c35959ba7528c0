/**
 * Instruction tuning through the pipeline: real instruction data (self-instruct seed tasks) →
 * ingest (prompt template) → split → train (causal LM, LoRA on a tiny GPT-2) → evaluate
 * (response-token perplexity against the base model) → register → deploy behind a perplexity gate.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import { datasetsDir } from '../src/data/datasets-dir.ts';
import { tinyGpt2Dir } from '../src/models/tiny.testing.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { startTestEnv, TEST_QUEUE, type TestEnv } from './helpers/temporal-env.ts';

let env: TestEnv;
before(async () => {
  env = await startTestEnv(await loadStageKinds());
  await env.startWorker();
});
after(async () => env?.close());

describe('instruction tuning end to end', () => {
  it('fine-tunes a tiny GPT-2 on real instructions and lowers response perplexity', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e2e-lm-'));
    tinyGpt2Dir(join(dir, 'tiny-gpt2'), 3, { maxPositions: 128, hidden: 32 });
    copyFileSync(join(datasetsDir(), 'self_instruct_seed', 'seed_tasks.jsonl'), join(dir, 'seed_tasks.jsonl'));
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      `name: sft
stages:
  ingest:
    uses: ingest
    with:
      path: seed_tasks.jsonl
      task: instruction
      promptTemplate: "{instruction}[[\\n\\n{input}]]"
      fields:
        response: output
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
      ratios:
        train: 0.8
        validation: 0
        test: 0.2
      seed: 1
  train:
    uses: train
    needs: split
    with:
      task: causal-lm
      model: tiny-gpt2
      train: \${{ stages.split.outputs.train }}
      method: lora
      lora:
        r: 8
        alpha: 16
      lr: 0.01
      epochs: 4
      batchSize: 8
      maxLength: 96
      seed: 2
      checkpointEvery: 20
  evaluate:
    uses: evaluate
    needs: [train, split]
    with:
      model: \${{ stages.train.outputs.model }}
      test: \${{ stages.split.outputs.test }}
      baseline:
        model: tiny-gpt2
        train: \${{ stages.split.outputs.train }}
        maxLength: 96
  register:
    uses: register
    needs: [train, evaluate]
    with:
      name: sft-gpt2
      model: \${{ stages.train.outputs.model }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
  deploy:
    uses: deploy
    needs: [register, evaluate]
    with:
      name: sft-gpt2
      version: \${{ stages.register.outputs.version }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
      gate: "perplexity < baseline.perplexity"
`,
    );
    const reg = kindRegistry(env.kinds);
    const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
    assert.ok(res.ok, JSON.stringify(!res.ok && res.errors));
    const h = await submitRun(env.client, { plan: res.plan, options: { baseDir: dirname(file), actor: 'sft' } }, { taskQueue: TEST_QUEUE });
    const st = await waitForRun(env.client, h.workflowId);
    assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => [s.id, s.state, s.error?.message])));
    const ev = st.stages.find((s) => s.id === 'evaluate')!.outputs!;
    const metrics = JSON.parse(
      (await import('node:fs')).readFileSync(env.store.pathOf(ev.metrics as never), 'utf8'),
    ) as { perplexity: number; baseline: { perplexity: number } };
    assert.ok(metrics.perplexity < metrics.baseline.perplexity, `perplexity ${metrics.perplexity} vs base ${metrics.baseline.perplexity}`);
    assert.equal(st.stages.find((s) => s.id === 'deploy')!.outputs!.promoted, true);
  });
});
