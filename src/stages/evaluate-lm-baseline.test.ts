/**
 * A causal LM's base model is scored once for the same base model, test rows, rendering and generation settings: the
 * trials of a hyperparameter sweep each asked it every test row again (its loss and greedy answers), although they do
 * not depend on the fine-tuned model. The report of a trial that reuses them is the one scoring again would give,
 * side-by-side samples included. Real tiny LLaMA GGUF fixture, real training, the real evaluate stage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tuneTinyChat, writeReversalTable } from '../finetune/reversal-task.testing.ts';
import { resolveModelSource } from '../models/sources.ts';
import { evaluateStage, type GenerationConfig } from './evaluate.ts';
import { stageTestbed } from './stage-context.testing.ts';
import type { ArtifactRef } from '../types.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;

test("a causal LM's base model is asked the test rows once per base model, rows and settings; the report is the same", async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'eval-lm-baseline-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const testbed = stageTestbed(root, 'w');
  const { store, read } = testbed;
  const base = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'models') });
  const train = writeReversalTable(join(root, 'train.arrow'), 16, 1);
  // Two trials of a sweep: the same chat rendering, other weights.
  const trial = async (name: string, seed: number) =>
    store.putTree(await tuneTinyChat(base.dir, train, join(root, name), { epochs: 1, seed, threads: 1 }));
  const test1 = await store.putFile(writeReversalTable(join(root, 'test.arrow'), 12, 2), {
    mediaType: 'application/vnd.apache.arrow.file',
  });
  const generation: GenerationConfig = { maxNewTokens: 3, batchSize: 4, samples: 3 };
  const evaluate = async (model: ArtifactRef, o: { generation?: GenerationConfig; maxRows?: number; seed?: number } = {}) => {
    const messages: string[] = [];
    const ctx = testbed.ctx('evaluate', 'r1', (p) => void (p.message && messages.push(p.message)));
    const out = await evaluateStage.run(
      {
        model,
        test: test1,
        baseline: { model: base.dir, seed: o.seed },
        maxRows: o.maxRows ?? 10,
        generation: o.generation ?? generation,
        threads: 1,
      },
      ctx,
    );
    return { metrics: read(out.metrics), report: read(out.report), messages };
  };
  // The base model ran: its loss or its answers were in the progress.
  const asked = (messages: string[]) => messages.some((m) => /^base model: (response-token loss|generated)/.test(m));
  /** What the report says of the base model. */
  const baseline = (r: Record<string, any>) => ({
    metrics: r.baseline,
    unscoredRows: r.unscoredRows.baseline,
    truncatedPrompts: r.generation.truncatedPrompts.baseline,
    answers: r.answers.baseline,
    samples: r.samples.map((s: Record<string, unknown>) => [s.prompt, s.reference, s.baseline, s.baseline_exact]),
  });

  const [a, b] = [await trial('a', 3), await trial('b', 4)];
  const first = await evaluate(a);
  assert.ok(asked(first.messages), first.messages.join('\n'));
  const second = await evaluate(b);
  assert.ok(!asked(second.messages), `the second trial asked the base model again:\n${second.messages.join('\n')}`);
  assert.ok(second.messages.some((m) => /^base model: the same as scored before/.test(m)));
  assert.deepEqual(second.metrics.baseline, first.metrics.baseline);
  assert.deepEqual(baseline(second.report), baseline(first.report));
  // The report names the base model as evaluate resolved it, scored or from the memo: its scores alone do not.
  assert.deepEqual(first.report.baseline_model, base.identity);
  assert.deepEqual(second.report.baseline_model, base.identity);
  assert.equal(second.report.samples.length, 3);
  assert.equal(typeof second.report.samples[0].baseline, 'string');
  // The fine-tuned model is scored in every trial: b's own answers, not a's.
  assert.notDeepEqual(second.metrics.loss, first.metrics.loss);

  // More samples shown is the same base model's answers (all of them were kept): not asked again.
  const more = await evaluate(b, { generation: { ...generation, samples: 5 } });
  assert.ok(!asked(more.messages));
  assert.deepEqual(baseline(more.report).samples.slice(0, 3), baseline(first.report).samples);
  assert.equal(more.report.samples.length, 5);
  // Nor is another baseline seed: the loss is teacher-forced and the answers greedy, the seed is the classifier's.
  assert.ok(!asked((await evaluate(b, { seed: 5 })).messages), 'asked again for another baseline.seed');

  // What the base model's answers depend on changes: it is asked again, and kept beside the first.
  assert.ok(asked((await evaluate(b, { generation: { ...generation, maxNewTokens: 2 } })).messages));
  assert.ok(asked((await evaluate(b, { maxRows: 8 })).messages));
  assert.equal(readdirSync(join(root, 'w', 'baselines')).length, 3);

  // The second trial's report and metrics are, to the last figure and sample, those of scoring its base model again.
  rmSync(join(root, 'w', 'baselines'), { recursive: true });
  const fresh = await evaluate(b);
  assert.ok(asked(fresh.messages));
  assert.deepEqual(fresh.report, second.report);
  assert.deepEqual(fresh.metrics, second.metrics);
});
