/**
 * The evaluate stage's comparison with the production version, when the candidate's test split holds rows production
 * was trained on (a scheduled retrain re-splits the whole table): production is scored only on the test rows whose
 * input is not one of its training rows' inputs (its registered lineage's `train` data), the fine-tuned model again
 * on those same rows as production.candidate.*, the counts are in the metrics and the report, and a production version
 * whose training data cannot be read is scored on all rows and says so. On the tiny LLaMA GGUF fixture (a production
 * model that memorised random one-letter answers: perfect on its training rows, chance elsewhere) and on the tiny BERT
 * classifier.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ArrowTableWriter } from '../data/arrow-io.ts';
import { Rng } from '../engine/prng.ts';
import { evaluateGate } from '../eval/gates.ts';
import { tuneTinyChat } from '../finetune/reversal-task.testing.ts';
import { trainClassifier } from '../finetune/classifier.ts';
import { syntheticRows, writeTextTable } from '../finetune/synthetic-text.testing.ts';
import { TINY_MINILM, tinyBertDir } from '../models/tiny.testing.ts';
import { resolveModelSource } from '../models/sources.ts';
import { loadSpecText } from '../spec/load.ts';
import type { ArtifactRef } from '../types.ts';
import { evaluateStage } from './evaluate.ts';
import { kindRegistry, loadStageKinds } from './stage-kinds.ts';
import { stageTestbed } from './stage-context.testing.ts';

const TINY_GGUF = new URL('../formats/fixtures/tiny-llama.gguf', import.meta.url).pathname;
const ARROW = 'application/vnd.apache.arrow.file';
const INSTRUCT_GATE = (readFileSync(new URL('../../pipelines/instruct.yaml', import.meta.url), 'utf8').match(/^ {6}gate: "(.*)"$/m) ??
  [])[1]!;

const root = mkdtempSync(join(tmpdir(), 'eval-prod-'));
process.on('exit', () => rmSync(root, { recursive: true, force: true }));

function promptTable(path: string, rows: readonly (readonly [string, string])[]): string {
  const wr = new ArrowTableWriter(path, { prompt: 'utf8', response: 'utf8' });
  wr.writeBatch({ prompt: rows.map((r) => r[0]), response: rows.map((r) => r[1]) });
  wr.close();
  return path;
}

type Metrics = Record<string, any>;

const setup = (name: string) => stageTestbed(root, name);

/** The gate-visible scores of a model's own evaluation, without production.* (what production.candidate must equal). */
function own(m: Metrics): Metrics {
  const { production: _p, baseline: _b, ...rest } = m;
  return rest;
}

/** production.* without what says which rows they are over. */
function scores(p: Metrics): Metrics {
  const { version: _v, rows: _r, contaminated_rows: _c, decontaminated: _d, candidate: _k, same_model: _s, ...rest } = p;
  return rest;
}

// 64 distinct three-letter prompts, each with a random one-letter answer: nothing to generalise, only to memorise.
const LETTERS = 'BCDFGHJK';
const rng = new Rng(5);
const pairs = new Map<string, string>();
while (pairs.size < 64) pairs.set(Array.from({ length: 3 }, () => LETTERS[rng.int(8)]!).join(''), LETTERS[rng.int(8)]!);
const all = [...pairs];
const trainRows = all.slice(0, 32);
const fresh = all.slice(32);

async function tune(name: string, train: string, o: { epochs?: number; maxSteps?: number }) {
  const base = await resolveModelSource(TINY_GGUF, { cacheDir: join(root, 'models') });
  return tuneTinyChat(base.dir, train, join(root, `${name}-model`), o.epochs ? { epochs: o.epochs } : { maxSteps: o.maxSteps! });
}

test('causal LM: production is scored only on the test rows it was not trained on, beside the fine-tuned model on those rows', async () => {
  const { store, ctx, read, promote, logs } = setup('lm');
  copyFileSync(TINY_GGUF, join(root, 'tiny-llama.gguf'));
  const trainPath = promptTable(join(root, 'lm-train.arrow'), trainRows);
  // Production memorised its 32 training rows; the candidate took a few steps on all 64 rows.
  const prod = await store.putTree(await tune('prod', trainPath, { epochs: 40 }));
  const cand = await store.putTree(await tune('cand', promptTable(join(root, 'lm-all.arrow'), all), { maxSteps: 4 }));
  const trainRef = await store.putFile(trainPath, { mediaType: ARROW });
  await promote('letters', prod, { train: trainRef });

  // The re-split test split: production's training rows (even) and rows it never saw (odd), alternating.
  const mixed = trainRows.slice(0, 16).flatMap((r, i) => [r, fresh[i]!]);
  const test = await store.putFile(promptTable(join(root, 'lm-test.arrow'), mixed), { mediaType: ARROW });
  const freshOnly = await store.putFile(promptTable(join(root, 'lm-fresh.arrow'), fresh.slice(0, 16)), { mediaType: ARROW });
  const generation = { maxNewTokens: 2, samples: 6 };
  const evaluate = async (model: ArtifactRef, t: ArtifactRef, more: Record<string, unknown> = {}) => {
    const said: string[] = [];
    const out = await evaluateStage.run(
      { model, test: t, generation, threads: 2, ...more },
      ctx('evaluate', 'r1', (p) => void said.push(p.message ?? '')),
    );
    return { metrics: read(out.metrics), report: read(out.report), comparison: out.comparison, said };
  };
  // Each model alone on the rows production never saw: what production.* and production.candidate.* must be.
  const prodOnFresh = await evaluate(prod, freshOnly);
  const candOnFresh = await evaluate(cand, freshOnly);

  // The production model itself as the candidate (a rerun from the stage cache): its score on all test rows is half
  // memory; production is not scored again, its scores are the candidate's on the rows it was not trained on.
  const self = await evaluate(prod, test, { production: { name: 'letters' } });
  assert.equal(self.metrics.production.same_model, true);
  assert.deepEqual(
    self.said.filter((m) => /^letters@1 \(current production\): (response-token loss|generated)/.test(m)),
    [],
    'production, the same model bytes, was not scored a second time',
  );
  assert.equal(self.metrics.exact_match, (16 + 16 * prodOnFresh.metrics.exact_match) / 32, 'perfect on the rows it was trained on');
  assert.ok(prodOnFresh.metrics.exact_match < 0.5, `chance on the others: ${prodOnFresh.metrics.exact_match}`);
  assert.equal(self.metrics.generated, 32);
  const p = self.metrics.production;
  assert.deepEqual([p.version, p.rows, p.contaminated_rows, p.decontaminated], ['letters@1', 16, 16, true]);
  assert.deepEqual(scores(p), own(prodOnFresh.metrics), 'production.* are over the 16 rows it was not trained on');
  assert.deepEqual(p.candidate, own(prodOnFresh.metrics), 'the candidate on the same rows');
  assert.deepEqual(self.report.contamination, {
    decontaminated: true,
    training_data: { name: 'train', sha256: trainRef.sha256, rows: 32 },
    columns: ['prompt'],
    rows: 16,
    contaminated_rows: 16,
    near_duplicate_rows: 0,
    near_duplicate_examples: [],
    near_duplicate_matches: [],
    near_duplicates: { shingles: '3 words', estimated_jaccard_at_least: 0.8 },
    near_duplicate_checks_cut: 0,
  });
  assert.ok(
    logs.some((m) =>
      /letters@1 \(current production\): 16 test rows are in its training data and left out; it is scored on 16 rows/.test(m),
    ),
    logs.join('\n'),
  );

  // Another candidate: production.* the same, production.candidate.* its scores on those rows, its own over all 32.
  const other = await evaluate(cand, test, { production: { name: 'letters' } });
  assert.deepEqual(scores(other.metrics.production), own(prodOnFresh.metrics));
  assert.equal(other.metrics.production.same_model, undefined, 'another model');
  assert.deepEqual(other.metrics.production.candidate, own(candOnFresh.metrics));
  assert.equal(other.metrics.generated, 32);
  // Samples: production's answer on the rows it was scored on, none on those it was trained on.
  assert.equal(other.report.samples.length, 6);
  other.report.samples.forEach((s: Metrics, i: number) => {
    assert.equal(s.prompt, mixed[i]![0]);
    if (i % 2 === 0) {
      assert.deepEqual([s.production, s.production_exact, s.production_trained_on], [null, null, true]);
    } else {
      const mine = prodOnFresh.report.samples[(i - 1) / 2];
      assert.deepEqual([s.production, s.production_exact], [mine.output, mine.exact]);
      assert.equal(s.production_trained_on, undefined);
    }
  });
  assert.equal(
    other.report.answers.production.reduce((n: number, a: { rows: number }) => n + a.rows, 0),
    16,
  );

  // maxRows bounds every model's rows: production gets the first 6 test rows it was not trained on (rows 1, 3, … 11),
  // not the 3 among the first 6, so a gate's minimum stays within reach without raising maxRows for all models.
  const head = await evaluate(cand, test, { production: { name: 'letters' }, maxRows: 6 });
  assert.equal(head.metrics.generated, 6);
  const freshHead = await evaluate(prod, freshOnly, { maxRows: 6 });
  const candHead = await evaluate(cand, freshOnly, { maxRows: 6 });
  assert.deepEqual([head.metrics.production.rows, head.metrics.production.contaminated_rows], [6, 6]);
  assert.deepEqual(scores(head.metrics.production), own(freshHead.metrics));
  assert.deepEqual(head.metrics.production.candidate, own(candHead.metrics));

  // A test split production was trained on entirely: no comparison is possible, and the gates refuse without an error.
  const trainedOn = await store.putFile(promptTable(join(root, 'lm-seen.arrow'), trainRows.slice(0, 8)), { mediaType: ARROW });
  const none = await evaluate(cand, trainedOn, { production: { name: 'letters' } });
  assert.deepEqual(none.metrics.production, { version: 'letters@1', rows: 0, contaminated_rows: 8, decontaminated: true });
  // What `status` prints of the comparison, in each case.
  assert.equal(none.comparison, 'letters@1 (current production) not scored: it was trained on the input of every test row (8)');
  assert.equal(
    other.comparison,
    'letters@1 (current production) scored on 16 test rows it was not trained on, beside the fine-tuned model on the same rows; 16 left out',
  );
  assert.equal(
    self.comparison,
    "letters@1 (current production) is the fine-tuned model itself (the same model bytes), not scored again: production.* are the fine-tuned model's scores on the 16 test rows it was not trained on; 16 left out",
  );
  assert.equal(prodOnFresh.comparison, undefined, 'no comparison without evaluate.production');
  const gate = '!has(production) || (production.rows >= 1 && production.candidate.exact_match >= production.exact_match)';
  assert.equal(evaluateGate(gate, none.metrics).passed, false);
  assert.equal(evaluateGate(gate, other.metrics).passed, other.metrics.production.candidate.exact_match >= prodOnFresh.metrics.exact_match);

  // Without any contamination the numbers are what they always were: production on the candidate's rows.
  const clean = await evaluate(cand, freshOnly, { production: { name: 'letters' } });
  assert.deepEqual(scores(clean.metrics.production), own(prodOnFresh.metrics));
  assert.deepEqual(clean.metrics.production.candidate, own(clean.metrics));
  assert.deepEqual([clean.metrics.production.rows, clean.metrics.production.contaminated_rows], [16, 0]);
});

test('causal LM: a production version whose training data cannot be read is scored on all the test rows, and says why', async () => {
  const { store, ctx, read, promote, logs } = setup('fallback');
  const trainPath = promptTable(join(root, 'fb-train.arrow'), trainRows);
  const prod = await store.putTree(await tune('fb-prod', trainPath, { maxSteps: 2 }));
  const test = await store.putFile(promptTable(join(root, 'fb-test.arrow'), [...trainRows.slice(0, 4), ...fresh.slice(0, 4)]), {
    mediaType: ARROW,
  });
  // Registered without lineage; and with a train split the store no longer has (collected, or another host's store).
  await promote('no-lineage', prod, { test });
  const gone = await store.putFile(promptTable(join(root, 'fb-gone.arrow'), [...trainRows].reverse()), { mediaType: ARROW });
  await promote('gone', prod, { train: gone });
  rmSync(store.pathOf(gone));

  for (const [name, reason] of [
    ['no-lineage', /its registered lineage records no 'train' data \(it records 'test'\)/],
    [
      'gone',
      new RegExp(`its training data \\(${gone.sha256.slice(0, 12)}…\\) is not available: artifact ${gone.sha256} is not in the store`),
    ],
  ] as const) {
    logs.length = 0;
    const out = await evaluateStage.run(
      { model: prod, test, production: { name }, generation: { maxNewTokens: 2 }, threads: 2 },
      ctx('evaluate'),
    );
    const metrics = read(out.metrics);
    const report = read(out.report);
    const p = metrics.production;
    assert.deepEqual([p.rows, p.contaminated_rows, p.decontaminated], [8, 0, false], name);
    // All 8 rows, the 4 it was trained on too: the figures are the candidate's own (it is the same model).
    assert.deepEqual(scores(p), own(metrics), name);
    assert.deepEqual(p.candidate, own(metrics), name);
    assert.equal(p.same_model, true, name);
    assert.equal(report.contamination.decontaminated, false);
    assert.match(report.contamination.reason, reason);
    assert.match(
      String(out.comparison),
      new RegExp(
        `^${name}@1 \\(current production\\) is the fine-tuned model itself \\(the same model bytes\\), not scored again: production\\.\\* are the fine-tuned model's scores on all 8 test rows, some of which it may have been trained on: ${reason.source}`,
      ),
    );
    assert.ok(
      logs.some((m) =>
        m.startsWith(`${name}@1 (current production) is scored on all the test rows, some of which it may have been trained on: `),
      ),
      logs.join('\n'),
    );
    // A gate can insist on a decontaminated comparison.
    assert.equal(evaluateGate('!has(production) || production.decontaminated', metrics).passed, false);
  }
});

test('classifier: production is scored on the test rows whose text, normalised as dedupe does, it was not trained on, nor a near duplicate of it', async () => {
  const { store, ctx, read, promote } = setup('cls');
  const modelDir = tinyBertDir(join(root, 'bert'), 7, TINY_MINILM);
  const labels = ['negative', 'positive'];
  const trainTexts = syntheticRows(120, 1);
  const trainPath = writeTextTable(join(root, 'cls-train.arrow'), trainTexts);
  const classifier = async (name: string, steps: number) => {
    const outDir = join(root, `${name}-cls`);
    await trainClassifier({
      modelDir,
      train: trainPath,
      labels,
      method: 'lora',
      lora: { r: 4, alpha: 8 },
      lr: 2e-2,
      maxSteps: steps,
      batchSize: 16,
      schedule: 'constant',
      weightDecay: 0.01,
      seed: 3,
      maxLength: 32,
      pooling: 'mean',
      device: 'cpu',
      threads: 2,
      checkpointDir: join(root, `${name}-cls-ck`),
      checkpointEvery: 0,
      outDir,
    });
    return store.putTree(outDir);
  };
  const prod = await classifier('prod', 12);
  const cand = await classifier('cand', 4);
  await promote('sentiment', prod, { train: await store.putFile(trainPath, { mediaType: ARROW }) });
  // 10 of production's training texts, as a re-ingest might give them back (other case, spacing, a zero-width
  // space, full-width letters), among 20 texts it never saw.
  const seen = trainTexts.slice(0, 10).map((r, i) => ({
    text: [r.text.toUpperCase(), `  ${r.text.replaceAll(' ', '   ')} `, r.text.replace(' ', ' \u200B'), r.text.replace('a', '\uFF41')][
      i % 4
    ]!,
    label: r.label,
  }));
  // And 2 near duplicates of its training texts (a word added), as dedupe's defaults would find them.
  const nearSources = trainTexts.filter((r) => r.text.split(' ').length >= 12).slice(0, 2);
  const near = nearSources.map((r) => ({ text: `${r.text} indeed`, label: r.label }));
  assert.equal(near.length, 2);
  const unseen = syntheticRows(20, 9).filter((r) => !trainTexts.some((t) => t.text === r.text));
  const rows = [...seen, ...near, ...unseen];
  const test = await store.putFile(writeTextTable(join(root, 'cls-test.arrow'), rows), { mediaType: ARROW });
  const freshOnly = await store.putFile(writeTextTable(join(root, 'cls-fresh.arrow'), unseen), { mediaType: ARROW });
  const evaluate = async (model: ArtifactRef, t: ArtifactRef, more: Record<string, unknown> = {}) =>
    read((await evaluateStage.run({ model, test: t, threads: 2, ...more }, ctx('evaluate'))).metrics);

  const out = await evaluateStage.run({ model: cand, test, threads: 2, production: { name: 'sentiment' } }, ctx('evaluate'));
  const metrics = read(out.metrics);
  const p = metrics.production;
  // The report says how many were near duplicates, and quotes them.
  const { contamination } = read(out.report);
  assert.deepEqual([contamination.near_duplicate_rows, contamination.near_duplicate_examples], [2, near.map((r) => [r.text])]);
  // And beside each, the training row it was found near.
  assert.deepEqual(
    contamination.near_duplicate_matches,
    nearSources.map((r) => [r.text]),
  );
  assert.equal(metrics.n, rows.length, "the candidate's own scores are over every test row");
  assert.deepEqual([p.rows, p.contaminated_rows, p.decontaminated], [unseen.length, 12, true]);
  assert.deepEqual(scores(p), await evaluate(prod, freshOnly));
  assert.deepEqual(p.candidate, await evaluate(cand, freshOnly));
  assert.equal(p.n, unseen.length);
  assert.equal(p.same_model, undefined);

  // Production itself as the candidate (a rerun from the stage cache): not scored again, its scores are the candidate's.
  const said: string[] = [];
  const self = await evaluateStage.run(
    { model: prod, test, threads: 2, production: { name: 'sentiment' } },
    ctx('evaluate', 'r1', (m) => void said.push(m.message ?? '')),
  );
  const sp = read(self.metrics).production;
  assert.equal(sp.same_model, true);
  assert.deepEqual(
    said.filter((m) => m.startsWith('evaluating sentiment@1')),
    [],
    'production, the same model bytes, was not scored a second time',
  );
  assert.deepEqual(scores(sp), await evaluate(prod, freshOnly));
  assert.deepEqual(sp.candidate, scores(sp));
  assert.deepEqual([sp.rows, sp.contaminated_rows, sp.version], [unseen.length, 12, 'sentiment@1']);
  assert.match(
    String(self.comparison),
    /^sentiment@1 \(current production\) is the fine-tuned model itself \(the same model bytes\), not scored again/,
  );
});

test('validation: gates may read production.rows, .contaminated_rows, .decontaminated and production.candidate.*', async () => {
  const reg = kindRegistry(await loadStageKinds());
  copyFileSync(TINY_GGUF, join(root, 'tiny-llama.gguf'));
  const pipeline = (gate: string) => `name: g
stages:
  ingest:
    uses: ingest
    with: { path: rows.jsonl, task: instruction, promptTemplate: "{instruction}", fields: { response: output } }
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
      task: causal-lm
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
      baseline: { model: tiny-llama.gguf }
      production: { name: g }
      generation: { maxNewTokens: 4 }
  register:
    uses: register
    needs: [train, evaluate, split]
    with:
      name: g
      model: \${{ stages.train.outputs.model }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
      data:
        train: \${{ stages.split.outputs.train }}
  deploy:
    uses: deploy
    needs: [register, evaluate]
    with:
      name: g
      version: \${{ stages.register.outputs.version }}
      metrics: \${{ stages.evaluate.outputs.metrics }}
      gate: "${gate}"
`;
  const check = (gate: string) => loadSpecText(pipeline(gate), join(root, 'pipeline.yaml'), { ...reg, baseDir: root });
  for (const gate of [
    INSTRUCT_GATE,
    '!has(production) || (production.decontaminated && production.contaminated_rows < production.rows && production.candidate.loss <= production.loss)',
  ]) {
    const r = check(gate);
    assert.ok(r.ok, `${gate}: ${JSON.stringify(!r.ok && r.errors)}`);
  }
  const bad = check('!has(production) || production.candidate.exact_macth > 0');
  assert.equal(bad.ok, false);
  const unguarded = check('production.rows >= 100');
  assert.equal(unguarded.ok, false, 'production is absent while no version holds the alias');
  assert.match(JSON.stringify(!unguarded.ok && unguarded.errors), /'production.rows' may be missing/);
  assert.match(JSON.stringify(!bad.ok && bad.errors), /unknown name 'production.candidate.exact_macth'/);
});
