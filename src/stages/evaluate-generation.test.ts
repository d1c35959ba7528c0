/**
 * The evaluate stage's generative scores for a causal LM, on the tiny LLaMA GGUF fixture (64 embeddings, so the
 * data is capitals only): a model fine-tuned to answer "XYZ" with "X" is scored by response loss, exact match,
 * ROUGE-L and chrF against the base model and the version the production alias holds, with side-by-side samples,
 * and gates pass or fail on those names. Validation names the fields it refuses before any run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';
import { evaluateGate } from '../eval/gates.ts';
import { NoAnswerTokensError } from '../eval/metrics.ts';
import { trainCausalLm } from '../finetune/causal-lm.ts';
import { readPromptResponses } from '../finetune/generative-eval.ts';
import { resolveModelSource } from '../models/sources.ts';
import { loadSpecText } from '../spec/load.ts';
import { ArtifactStore } from '../store/artifact-store.ts';
import { deployStage } from './deploy.ts';
import { evaluateStage } from './evaluate.ts';
import { registerStage } from './register.ts';
import { kindRegistry, loadStageKinds } from './stage-kinds.ts';
import { testStageContext } from './stage-context.testing.ts';
import type { StageContext } from './types.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;
const TEMPLATE =
  "{% for m in messages %}{% if m.role == 'user' %}Q:{% else %}A:{% endif %}{{ m.content }}<|endoftext|>{% endfor %}{% if add_generation_prompt %}A:{% endif %}";

const root = mkdtempSync(join(tmpdir(), 'eval-gen-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

/** Prompt: three capitals; reply: the first one. */
function table(path: string, n: number, seed: number): string {
  const rng = new Rng(seed);
  const prompts: string[] = [],
    responses: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = Array.from({ length: 3 }, () => 'BCDFGHJK'[rng.int(8)]!);
    prompts.push(w.join(''));
    responses.push(w[0]!);
  }
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: prompts, response: responses });
  wr.close();
  return path;
}

test('evaluate: a fine-tuned LLaMA is scored by exact_match, rouge_l and chrf beside the base and production, with samples and gates', async () => {
  const base = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'models') });
  const outDir = join(root, 'tuned');
  await trainCausalLm({
    modelDir: base.dir,
    train: table(join(root, 'train.arrow'), 64, 1),
    chat: { template: TEMPLATE },
    method: 'full',
    lr: 0.01,
    epochs: 12,
    batchSize: 8,
    schedule: 'constant',
    weightDecay: 0,
    clipNorm: 1,
    seed: 3,
    maxLength: 32,
    device: 'cpu',
    threads: 2,
    checkpointEvery: 0,
    checkpointDir: join(root, 'ck'),
    outDir,
  });

  const state = join(root, 'state');
  mkdirSync(state, { recursive: true });
  copyFileSync(TINY_GGUF, join(root, 'tiny-llama.gguf'));
  const store = new ArtifactStore(join(state, 'store'));
  const ctx = (stageId: string, runId = 'r1'): StageContext =>
    testStageContext({ root: state, store, baseDir: root, stageId, runId, workDir: mkdtempSync(join(root, 'work-')) });
  const model = await store.putTree(outDir);
  const testRef = await store.putFile(table(join(root, 'test.arrow'), 16, 2), { mediaType: 'application/vnd.apache.arrow.file' });
  // The same model already serves as production: its scores must equal the candidate's.
  const v1 = await registerStage.run({ name: 'first-letter', model, metrics: await store.putJson({ loss: 1 }) }, ctx('register', 'r0'));
  await deployStage.run({ name: 'first-letter', version: v1.version as number }, ctx('deploy', 'r0'));

  const evalCtx = ctx('evaluate');
  const out = await evaluateStage.run(
    {
      model,
      test: testRef,
      baseline: { model: 'tiny-llama.gguf' },
      production: { name: 'first-letter' },
      maxRows: 12,
      generation: { maxNewTokens: 4, batchSize: 5, samples: 3, exactMatch: { caseFold: true } },
      threads: 2,
    },
    evalCtx,
  );
  // The models it scored were linked into its scratch folder (no copies), not left in the state folder.
  const onnx = readdirSync(join(evalCtx.workDir, 'models', model.sha256)).find((f) => f.endsWith('.onnx'))!;
  assert.ok(statSync(join(evalCtx.workDir, 'models', model.sha256, onnx)).nlink >= 2, 'a hard link to the stored file');
  assert.equal(existsSync(join(state, 'serving')), false);
  const metrics = JSON.parse(readFileSync(store.pathOf(out.metrics as never), 'utf8')) as Record<string, any>;
  const report = JSON.parse(readFileSync(store.pathOf(out.report as never), 'utf8')) as Record<string, any>;

  // 12 rows (maxRows) × (the letter + <|endoftext|>) response tokens, for every model.
  for (const m of [metrics, metrics.baseline, metrics.production]) assert.deepEqual([m.tokens, m.generated], [24, 12]);
  assert.ok(metrics.exact_match >= 0.9, `fine-tuned exact_match ${metrics.exact_match}`);
  assert.ok(metrics.baseline.exact_match <= 0.25, `base exact_match ${metrics.baseline.exact_match}`);
  for (const k of ['exact_match', 'rouge_l', 'chrf']) {
    assert.ok(metrics[k] >= 0 && metrics[k] <= 1, `${k} ${metrics[k]}`);
    assert.equal(metrics.production[k], metrics[k], `production ${k}`);
  }
  assert.ok(metrics.perplexity < metrics.baseline.perplexity);
  assert.equal(metrics.production.version, 'first-letter@1');
  assert.equal(out.perplexity, metrics.perplexity);

  // Side by side: the first `samples` rows of the test split, each model's answer, in the split's order.
  assert.equal(report.samples.length, 3);
  const first3 = await readPromptResponses(join(root, 'test.arrow'), { maxRows: 3 });
  assert.deepEqual(
    report.samples.map((s: { prompt: string; reference: string }) => [s.prompt, s.reference]),
    first3.prompts.map((p, i) => [p, first3.references[i]]),
  );
  for (const s of report.samples) {
    assert.deepEqual(Object.keys(s), [
      'prompt',
      'reference',
      'baseline',
      'baseline_exact',
      'production',
      'production_exact',
      'output',
      'exact',
    ]);
    assert.equal(s.reference, s.prompt[0]);
    assert.equal(s.output, s.production);
    assert.equal(s.exact, s.output.toLowerCase() === s.reference.toLowerCase());
  }
  assert.equal(report.generation.rows, 12);
  // Per reference answer (the first letters), for every model: rows add up to the test rows, and the recalls average to
  // the balanced exact match in the metrics.
  for (const [who, m] of [
    ['model', metrics],
    ['baseline', metrics.baseline],
    ['production', metrics.production],
  ] as const) {
    const answers = report.answers[who] as { answer: string; rows: number; exact_match: number }[];
    assert.equal(
      answers.reduce((s, a) => s + a.rows, 0),
      12,
      who,
    );
    const mean = answers.reduce((s, a) => s + a.exact_match, 0) / answers.length;
    assert.ok(Math.abs(mean - m.balanced_exact_match) < 1e-12, `${who}: ${mean} vs ${m.balanced_exact_match}`);
    assert.ok(m.answer_f1_macro >= 0 && m.answer_f1_macro <= 1, `${who} answer_f1_macro ${m.answer_f1_macro}`);
  }

  // Whether the answers are labels is asked of the whole test split: its first 2 rows answer two different letters,
  // yet the split's 16 rows repeat them, so the class scores are measured on those 2 rows, not left out as free-form.
  const first2 = await readPromptResponses(join(root, 'test.arrow'), { maxRows: 2 });
  assert.notEqual(first2.references[0], first2.references[1], 'the case needs two different first answers');
  const two = await evaluateStage.run(
    { model, test: testRef, maxRows: 2, generation: { maxNewTokens: 4, exactMatch: { caseFold: true } }, threads: 2 },
    ctx('evaluate', 'r3'),
  );
  const twoMetrics = JSON.parse(readFileSync(store.pathOf(two.metrics as never), 'utf8')) as Record<string, any>;
  assert.deepEqual([twoMetrics.generated, twoMetrics.reference_answers], [2, 2]);
  assert.equal(typeof twoMetrics.balanced_exact_match, 'number');
  assert.equal(typeof twoMetrics.answer_f1_macro, 'number');

  // An empty test split has nothing to answer: an input error naming the field, before any model loads.
  const empty = await store.putFile(table(join(root, 'empty.arrow'), 0, 3), { mediaType: 'application/vnd.apache.arrow.file' });
  await assert.rejects(
    evaluateStage.run({ model, test: empty, generation: {} }, ctx('evaluate', 'r2')),
    /evaluate\.test: the test table has no rows to generate answers for/,
  );

  // Gates read the names as the deploy stage would.
  assert.equal(evaluateGate('exact_match > baseline.exact_match + 0.05', metrics).passed, true);
  assert.equal(evaluateGate('exact_match > production.exact_match + 0.05', metrics).passed, false);
  assert.equal(evaluateGate('chrf >= baseline.chrf && rouge_l >= baseline.rouge_l', metrics).passed, true);
  assert.equal(evaluateGate('balanced_exact_match > baseline.balanced_exact_match + 0.2', metrics).passed, true);
});

test('evaluate: test rows whose prompt + reply exceed the training maxLength are left out and reported; if all are, the error says what to change', async () => {
  const base = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'models') });
  // One step is enough: what is checked is which rows are scored, not how well.
  const tune = async (name: string, maxLength: number) => {
    const outDir = join(root, `${name}-tuned`);
    await trainCausalLm({
      modelDir: base.dir,
      train: table(join(root, 'short-train.arrow'), 8, 4),
      chat: { template: TEMPLATE },
      method: 'lora',
      lora: { r: 2, alpha: 4 },
      lr: 0.01,
      maxSteps: 1,
      batchSize: 8,
      schedule: 'constant',
      weightDecay: 0,
      seed: 3,
      maxLength,
      device: 'cpu',
      threads: 2,
      checkpointEvery: 0,
      checkpointDir: join(root, `${name}-ck`),
      outDir,
    });
    return outDir;
  };
  const outDir = await tune('short', 16);
  // The first two test rows have a reply that alone overflows the 16 tokens the model was trained with.
  const path = join(root, 'long-first.arrow');
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: ['BCD', 'FGH', 'JKB', 'CDF'], response: ['BCDFGHJKBCDFGHJKBCDF', 'FGHJKBCDFGHJKBCDFGHJ', 'J', 'C'] });
  wr.close();
  const store = new ArtifactStore(join(root, 'short-store'));
  const messages: string[] = [];
  const ctx = (): StageContext =>
    testStageContext({
      root: join(root, 'short-state'),
      store,
      baseDir: root,
      stageId: 'evaluate',
      workDir: mkdtempSync(join(root, 'work-')),
      progress: (p) => void (p.message && messages.push(p.message)),
      log: (m) => void messages.push(m),
    });
  const model = await store.putTree(outDir);
  const test = await store.putFile(path, { mediaType: 'application/vnd.apache.arrow.file' });
  const generation = { maxNewTokens: 2 };
  for (const withGeneration of [true, false]) {
    const cfg = { model, test, threads: 2, ...(withGeneration ? { generation } : {}) };
    // evalRows 2: both rows lost their answer; the error names the model, the rows, maxLength and the way out.
    await assert.rejects(evaluateStage.run({ ...cfg, maxRows: 2 }, ctx()), (e: unknown) => {
      assert.ok(e instanceof NoAnswerTokensError, String(e));
      assert.equal(e.where, 'evaluate.test');
      assert.match(e.message, /fine-tuned model: none of the 2 test rows keeps an answer token within maxLength 16/);
      assert.match(e.hint!, /raise maxLength in the train stage \(the model was trained with 16\).*prompt template.*more rows \(maxRows\)/);
      return true;
    });
    // evalRows 4: the two rows that fit are scored, the two others counted in the report and the progress messages.
    messages.length = 0;
    const out = await evaluateStage.run({ ...cfg, maxRows: 4 }, ctx());
    const metrics = JSON.parse(readFileSync(store.pathOf(out.metrics as never), 'utf8')) as Record<string, any>;
    const report = JSON.parse(readFileSync(store.pathOf(out.report as never), 'utf8')) as Record<string, any>;
    assert.equal(metrics.tokens, 4, 'one letter + <|endoftext|> for each of the two rows that fit');
    assert.equal(metrics.scored_rows, 2, 'a gate can see the rows the loss is over');
    assert.ok(Number.isFinite(metrics.loss) && metrics.loss > 0);
    assert.equal(report.testRows, 4);
    assert.deepEqual(report.unscoredRows, { model: 2 });
    if (withGeneration) assert.equal(metrics.generated, 4, 'every row is still answered');
    assert.ok(
      messages.some((m) =>
        /fine-tuned model: response-token loss over 2 of 4 test rows; 2 left out \(prompt \+ reply exceed maxLength 16/.test(m),
      ),
      messages.join('\n'),
    );
  }
  // The short model as production, a candidate trained with room to spare: the advice is about production, not the train stage.
  const roomy = await tune('roomy', 64);
  const v1 = await registerStage.run({ name: 'short-prod', model, metrics: await store.putJson({ loss: 1 }) }, ctx());
  await deployStage.run({ name: 'short-prod', version: v1.version as number }, ctx());
  await assert.rejects(
    evaluateStage.run({ model: await store.putTree(roomy), test, maxRows: 2, production: { name: 'short-prod' }, threads: 2 }, ctx()),
    (e: unknown) => {
      assert.ok(e instanceof NoAnswerTokensError, String(e));
      assert.match(e.message, /short-prod@1 \(current production\): none of the 2 test rows keeps an answer token within maxLength 16/);
      assert.match(
        e.hint!,
        /short-prod@1 \(current production\) was trained with maxLength 16, which no test row fits: remove evaluate\.production/,
      );
      return true;
    },
  );
});

const PIPELINE = (evaluateWith: string, gate: string, task = 'causal-lm') => `name: g
stages:
  ingest:
    uses: ingest
    with:
      path: rows.jsonl
      task: instruction
      promptTemplate: "{instruction}"
      fields:
        response: output
  split:
    uses: split
    needs: ingest
    with:
      table: \${{ stages.ingest.outputs.table }}
      ratios: { train: 0.8, validation: 0, test: 0.2 }
      seed: 1
  train:
    uses: train
    needs: split
    with:
      task: ${task}
      model: tiny-llama.gguf
      train: \${{ stages.split.outputs.train }}
      method: full
      lr: 0.01
      epochs: 1
  evaluate:
    uses: evaluate
    needs: [train, split]
    with:
      model: \${{ stages.train.outputs.model }}
      test: \${{ stages.split.outputs.test }}
      baseline:
        model: tiny-llama.gguf
${evaluateWith}
  register:
    uses: register
    needs: [train, evaluate]
    with:
      name: g
      model: \${{ stages.train.outputs.model }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
  deploy:
    uses: deploy
    needs: [register, evaluate]
    with:
      name: g
      version: \${{ stages.register.outputs.version }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
      gate: "${gate}"
`;

test('validation: generation adds exact_match, rouge_l, chrf (and baseline.*) to the names gates may read; bad fields are named', async () => {
  const reg = kindRegistry(await loadStageKinds());
  const check = (text: string) => loadSpecText(text, join(root, 'pipeline.yaml'), { ...reg, baseDir: root });
  copyFileSync(TINY_GGUF, join(root, 'tiny-llama.gguf'));
  const gate =
    'exact_match > baseline.exact_match + 0.05 && rouge_l > 0 && chrf > 0 && (!has(production) || exact_match >= production.exact_match)';
  const withGen = '      maxRows: 100\n      generation:\n        maxNewTokens: 4\n        exactMatch: { caseFold: true, extract: gsm8k }';
  const ok = check(PIPELINE(withGen, gate));
  assert.ok(ok.ok, JSON.stringify(!ok.ok && ok.errors));

  const errors = (text: string) => {
    const r = check(text);
    assert.equal(r.ok, false, 'expected the pipeline to be rejected');
    const msgs = (r as { errors: { path: string; message: string }[] }).errors.map((e) => `${e.path}: ${e.message}`).join('\n');
    if (process.env.SHOW) console.log(msgs);
    return msgs;
  };
  // Without generation the names do not exist: a typo-proof gate language refuses them before the run.
  assert.match(errors(PIPELINE('', gate)), /stages\.deploy\.with\.gate: .*exact_match/);
  assert.match(
    errors(PIPELINE('      generation:\n        exactMatch: { extract: { regex: "answer: (" } }', 'exact_match > 0')),
    /stages\.evaluate\.with\.generation\.exactMatch\.extract\.regex.*not a valid regular expression/,
  );
  assert.match(
    errors(PIPELINE('      generation:\n        exactMatch: { extract: { regex: "a(b)", group: 3 } }', 'exact_match > 0')),
    /generation\.exactMatch\.extract\.group.*from 0 to 1/,
  );
  assert.match(errors(PIPELINE('      generation:\n        maxNewTokens: 0', 'exact_match > 0')), /maxNewTokens/);
  assert.match(errors(PIPELINE('      generation:\n        exactMatch: { whitespace: trim }', 'exact_match > 0')), /whitespace/);
  // A classifier has no generation, and its baseline needs train rows.
  const cls = errors(PIPELINE('      generation: {}', 'f1_macro > 0', 'classification'));
  assert.match(cls, /stages\.evaluate\.with\.generation: stage 'train' trains a classifier; generation scores causal LMs/);
  assert.match(cls, /stages\.evaluate\.with\.baseline\.train: .*needs the rows to fit it on/);
});
