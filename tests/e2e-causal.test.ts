/**
 * Instruction tuning through the pipeline: real instruction data (self-instruct seed tasks) →
 * ingest (prompt template) → split → train (causal LM, LoRA on a tiny GPT-2) → evaluate
 * (response-token perplexity against the base model) → register → deploy behind a perplexity gate.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { submitRun, waitForRun } from '../client/runs.ts';
import { datasetsDir } from '../src/data/datasets-dir.ts';
import { Rng } from '../src/engine/prng.ts';
import { tinyGpt2Dir } from '../src/models/tiny.testing.ts';
import { loadSpec } from '../src/spec/index.ts';
import { kindRegistry, loadStageKinds } from '../src/stages/stage-kinds.ts';
import { instructionPipelineHead } from './helpers/instruction-pipeline.ts';
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
      instructionPipelineHead({
        name: 'sft',
        path: 'seed_tasks.jsonl',
        promptTemplate: '{instruction}[[\\n\\n{input}]]',
        model: 'tiny-gpt2',
      }) +
        `      method: lora
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
    const metrics = JSON.parse((await import('node:fs')).readFileSync(env.store.pathOf(ev.metrics as never), 'utf8')) as {
      perplexity: number;
      baseline: { perplexity: number };
    };
    assert.ok(metrics.perplexity < metrics.baseline.perplexity, `perplexity ${metrics.perplexity} vs base ${metrics.baseline.perplexity}`);
    assert.equal(st.stages.find((s) => s.id === 'deploy')!.outputs!.promoted, true);
  });

  it('instruction-tunes a LLaMA GGUF with its chat template and packed rows, scored against the base on the same rendering', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'e2e-chat-'));
    // The tiny fixture model has 64 embeddings: capitals and the template's "Q:"/"A:" stay below that.
    copyFileSync(new URL('../src/formats/fixtures/tiny-llama.gguf', import.meta.url).pathname, join(dir, 'tiny-llama.gguf'));
    const rng = new Rng(7);
    const rows = Array.from({ length: 100 }, () => {
      const w = Array.from({ length: 3 }, () => 'BCDFGHJK'[rng.int(8)]!);
      return JSON.stringify({ instruction: w.join(''), output: [...w].reverse().join('') });
    });
    writeFileSync(join(dir, 'reverse.jsonl'), rows.join('\n') + '\n');
    const file = join(dir, 'pipeline.yaml');
    writeFileSync(
      file,
      instructionPipelineHead({ name: 'sft-chat', path: 'reverse.jsonl', promptTemplate: '{instruction}', model: 'tiny-llama.gguf' }) +
        `      chat:
        template: "{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}"
      pack: true
      method: lora
      lora:
        r: 4
        alpha: 8
      lr: 0.03
      epochs: 8
      batchSize: 8
      maxLength: 32
      seed: 2
      checkpointEvery: 20
  evaluate:
    uses: evaluate
    needs: [train, split]
    with:
      model: \${{ stages.train.outputs.model }}
      test: \${{ stages.split.outputs.test }}
      baseline:
        model: tiny-llama.gguf
        maxLength: 32
      generation:
        maxNewTokens: 4
        samples: 2
`,
    );
    const reg = kindRegistry(env.kinds);
    const res = await loadSpec(file, { kinds: reg.kinds, knownButUnavailable: reg.knownButUnavailable });
    assert.ok(res.ok, JSON.stringify(!res.ok && res.errors));
    const h = await submitRun(env.client, { plan: res.plan, options: { baseDir: dirname(file), actor: 'sft' } }, { taskQueue: TEST_QUEUE });
    const st = await waitForRun(env.client, h.workflowId);
    assert.equal(st.state, 'succeeded', JSON.stringify(st.stages.map((s) => [s.id, s.state, s.error?.message])));
    const ev = st.stages.find((s) => s.id === 'evaluate')!.outputs!;
    const metrics = JSON.parse(readFileSync(env.store.pathOf(ev.metrics as never), 'utf8')) as {
      perplexity: number;
      tokens: number;
      baseline: { perplexity: number; tokens: number };
    };
    // 20 test records × (3 reply tokens + <|endoftext|>), the same tokens for the base model.
    assert.deepEqual([metrics.tokens, metrics.baseline.tokens], [80, 80]);
    // Generated answers (in the stage's own process, as a worker runs it): every row, scores in [0, 1], two samples.
    const m = metrics as unknown as Record<string, number> & { baseline: Record<string, number> };
    for (const s of [m, m.baseline]) {
      assert.equal(s.generated, 20);
      for (const k of ['exact_match', 'rouge_l', 'chrf']) assert.ok(s[k]! >= 0 && s[k]! <= 1, `${k} ${s[k]}`);
    }
    const report = JSON.parse(readFileSync(env.store.pathOf(ev.report as never), 'utf8')) as { samples: Record<string, unknown>[] };
    assert.deepEqual(
      report.samples.map((s) => Object.keys(s)),
      [0, 1].map(() => ['prompt', 'reference', 'baseline', 'baseline_exact', 'output', 'exact']),
    );
    assert.ok(
      metrics.perplexity < metrics.baseline.perplexity * 0.8,
      `perplexity ${metrics.perplexity} vs base ${metrics.baseline.perplexity}`,
    );
  });
});
